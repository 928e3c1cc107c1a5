"""The posterior-predictive average of a sampler's chain.

A Langevin-family optimizer samples θ from exp(−L(θ)/T); its prediction is the average of the
models' predictive distributions over the kept samples, p̄(y|x) = (1/S) Σ_s p(y|x, θ_s), not
the last sample's. ``PredictiveAverage`` keeps that running mean on a fixed set of inputs
(only the sum and the count, so memory does not grow with the chain) and scores it:
classification by the averaged probabilities (accuracy and −log p̄ of the label), regression by
the averaged prediction (MSE and R²).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from host.nn import LOSSES
from host.nn.losses import log_softmax, sigmoid


class PredictiveAverage:
    def __init__(self, loss: str, X: np.ndarray, y: np.ndarray) -> None:
        if loss not in LOSSES:
            raise ValueError(f"the posterior-predictive average needs loss {', '.join(LOSSES)}, not {loss!r}")
        self.loss, self.X, self.y = loss, X, y
        self.total: np.ndarray | None = None
        self.count = 0

    def _predictive(self, out: np.ndarray) -> np.ndarray:
        if self.loss == "ce":
            return np.exp(log_softmax(out))
        if self.loss == "bce":
            return sigmoid(out)
        return out

    def add(self, model, theta: np.ndarray) -> None:
        p = self._predictive(np.asarray(model.apply(theta, self.X), dtype=np.float64))
        self.total = p if self.total is None else self.total + p
        self.count += 1

    def scores(self) -> tuple[float, float]:
        """(loss, accuracy) of the averaged prediction, by the closed-form loss itself: it is
        given log p̄ as logits (softmax), the logit of q̄ (sigmoid), or the averaged output
        (MSE; the accuracy is then R²)."""
        if self.count == 0 or self.total is None:
            raise ValueError("no sample has been kept yet")
        p = self.total / self.count
        tiny = np.finfo(np.float64).tiny
        if self.loss == "ce":
            z = np.log(np.maximum(p, tiny))
        elif self.loss == "bce":
            z = np.log(np.maximum(p, tiny)) - np.log(np.maximum(1.0 - p, tiny))
        else:
            z = p
        loss = LOSSES[self.loss]()
        return float(loss.value(z, self.y)), float(loss.accuracy(z, self.y))

    def save(self, path: Path) -> None:
        """Atomically: a crash mid-write leaves the previous average."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, total=self.total if self.total is not None else np.zeros(0), count=self.count)
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        with np.load(path) as z:
            self.count = int(z["count"])
            self.total = np.array(z["total"]) if self.count else None


class Chain:
    """The kept samples of a sampler's chain: their predictive average (scored at evaluations)
    and the samples themselves, one file per epoch under DIR/samples/."""

    def __init__(self, every: int, burn_in: int, problem: Any, out: Path) -> None:
        self.every, self.burn_in = every, burn_in
        self.model = problem.objective.model
        self.average = PredictiveAverage(problem.loss, problem.data.X_test, problem.data.y_test)
        self.dir = out / "samples"
        self.pending: list[np.ndarray] = []

    def offer(self, epoch: int, state: Any) -> None:
        if epoch >= self.burn_in and state.step % self.every == 0:
            self.average.add(self.model, state.theta)
            self.pending.append(np.array(state.theta))

    def scores(self, score: str) -> dict:
        if self.average.count == 0:
            return {}
        loss, value = self.average.scores()
        return {"posterior_test_loss": loss, f"posterior_test_{score}": value,
                "posterior_samples": self.average.count}

    def save(self, epoch: int) -> None:
        """At a checkpoint: this epoch's samples and the running average (what a resume needs)."""
        self.dir.mkdir(exist_ok=True)
        if self.pending:
            tmp = self.dir / f"epoch-{epoch + 1:04d}.tmp.npy"
            np.save(tmp, np.stack(self.pending))
            os.replace(tmp, self.dir / f"epoch-{epoch + 1:04d}.npy")
        self.pending = []
        self.average.save(self.dir / "average.npz")

    def resume(self, count: int) -> None:
        """The average as of the checkpoint, which counted ``count`` samples; anything else (a
        crash between the two writes) is refused rather than averaged twice or lost."""
        if count:
            if not (self.dir / "average.npz").exists():
                raise ValueError(f"--resume: the checkpoint counts {count} samples of the chain, but "
                                 f"{self.dir} holds no average.npz")
            self.average.load(self.dir / "average.npz")
        if self.average.count != count:
            raise ValueError(f"--resume: {self.dir}/average.npz holds {self.average.count} samples, the "
                             f"checkpoint counts {count}: they were not written together; start afresh")
