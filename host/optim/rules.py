"""Update rules: how a direction d (gradient or preconditioned gradient) moves the parameters."""
from __future__ import annotations

import numpy as np

from host.optim.base import Schedule, State, as_schedule


def _check_lr(lr: float | Schedule) -> None:
    if not callable(lr) and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"step size lr must be a finite number > 0, got {lr}")


class SGDRule:
    """θ ← θ − η (μ m + d), m ← μ m + d (heavy ball; μ = 0 is plain SGD)."""

    def __init__(self, lr: float | Schedule, momentum: float = 0.0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        _check_lr(lr)
        self.lr, self.momentum = as_schedule(lr), momentum

    def init(self, state: State) -> None:
        if self.momentum:
            state.slots["m"] = np.zeros_like(state.theta)

    def apply(self, state: State, d: np.ndarray) -> np.ndarray:
        if self.momentum:
            state.slots["m"] = self.momentum * state.slots["m"] + d
            d = state.slots["m"]
        return state.theta - self.lr(state.step) * d


class AdamRule:
    """Adam (Kingma & Ba) with bias correction; β1 = β2 = 0 gives η·d/(|d| + ε), the paper's
    TNGD-Adam choice."""

    def __init__(self, lr: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"Adam needs 0 <= b1, b2 < 1, got {b1}, {b2}")
        _check_lr(lr)
        self.lr, self.b1, self.b2, self.eps = as_schedule(lr), b1, b2, eps

    def init(self, state: State) -> None:
        state.slots["m"] = np.zeros_like(state.theta)
        state.slots["v"] = np.zeros_like(state.theta)

    def apply(self, state: State, d: np.ndarray) -> np.ndarray:
        t = state.step + 1
        m = state.slots["m"] = self.b1 * state.slots["m"] + (1 - self.b1) * d
        v = state.slots["v"] = self.b2 * state.slots["v"] + (1 - self.b2) * d * d
        mhat, vhat = m / (1 - self.b1**t), v / (1 - self.b2**t)
        return state.theta - self.lr(state.step) * mhat / (np.sqrt(vhat) + self.eps)
