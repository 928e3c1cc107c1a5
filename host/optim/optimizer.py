"""A transform made trainable: the gradient, the update, the new parameters, one step at a time.

``Optimizer`` is what ``host.training`` and a user's own loop call::

    opt = Optimizer("adam", host.optim.adam(lr=1e-3))     # the step around a Transform
    state = opt.init(theta, rng, groups=model.groups)
    state, info = opt.step(state, X, y, objective)   # info: batch_loss and diagnostics

``TrainState`` holds everything a run needs to continue: θ, the step count, the transform's
state and the optimizer's own random generator (as 6 words), all arrays and numbers — so a
checkpoint is the state, and a resumed run continues the same chain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from host.optim.backend.packet import backend_for, check_fits
from host.optim.checks import check_finite
from host.optim.curvature import Curvature
from host.optim.groups import normalise_groups
from host.optim.transform import Transform, apply_updates, init_of

_M64 = (1 << 64) - 1


def encode_rng(gen: np.random.Generator) -> np.ndarray:
    """A PCG64 generator's full state as 6 uint64 words (checkpointable)."""
    st = gen.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"the optimizers keep a PCG64 generator, got {st['bit_generator']}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([s >> 64, s & _M64, inc >> 64, inc & _M64, st["has_uint32"], st["uinteger"]],
                    dtype=np.uint64)


def decode_rng(words: np.ndarray) -> np.random.Generator:
    a = [int(w) for w in np.asarray(words, dtype=np.uint64).ravel()]
    if len(a) != 6:
        raise ValueError(f"bad generator state in the optimizer state: {len(a)} words, expected 6")
    bg = np.random.PCG64(0)
    bg.state = {"bit_generator": "PCG64", "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
                "has_uint32": a[4], "uinteger": a[5]}
    return np.random.Generator(bg)


@dataclass
class TrainState:
    theta: np.ndarray
    step: int
    opt: Any            # the transform's state
    rng: np.ndarray     # the optimizer's generator (encode_rng)
    groups: tuple = ()  # the parameter groups given to init (not saved: init rebuilds them)


class Optimizer:
    """A named transform plus the step around it (gradient, finiteness checks, θ + updates)."""

    def __init__(self, name: str, transform: Transform) -> None:
        self.name, self.transform = name, transform

    def __repr__(self) -> str:
        return f"Optimizer({self.name!r})"

    @property
    def uses_device(self) -> bool:
        return self.transform.device is not None

    @property
    def device(self) -> Any:
        return self.transform.device

    def init(self, theta: np.ndarray, rng: np.random.Generator,
             groups: Sequence[Any] | None = None) -> TrainState:
        """``groups``: the model's parameter groups (``model.groups``), what a partition splits
        over; without them a partition sees one group holding every parameter."""
        theta = np.array(theta, dtype=np.float64, copy=True)
        if self.uses_device:        # a new run sends the whole configuration, whatever came before
            check_fits(self.device, theta.size)
            backend_for(self.device).forget()
        gen = np.random.default_rng(int(rng.integers(2**63)))   # own stream, reproducible from the seed
        groups = tuple(normalise_groups(groups, theta.size)) if groups is not None else ()
        return TrainState(theta, 0, init_of(self.transform, theta, groups or None), encode_rng(gen), groups)

    def check_model(self, model: Any) -> None:
        """Refuse, before any training, settings that do not fit ``model`` (a partition naming a
        layer it lacks, more parameters than the device has cells)."""
        if self.uses_device:
            check_fits(self.device, model.n_params)
        init_of(self.transform, np.zeros(model.n_params), getattr(model, "groups", None))

    def step(self, state: TrainState, X: Any, y: Any, objective: Any) -> tuple[TrainState, dict]:
        n = state.step
        loss, grad = objective.value_and_grad(state.theta, X, y)
        check_finite("gradient", grad, n)
        gen = decode_rng(state.rng)
        info: dict[str, Any] = {"batch_loss": float(loss)}
        updates, opt = self.transform.update(
            grad, state.opt, state.theta, objective=objective, batch=(X, y), rng=gen, info=info,
            curvature=Curvature(objective, state.theta, X, y), step=n, groups=state.groups or None)
        check_finite("update", updates, n)
        theta = apply_updates(state.theta, updates)
        check_finite("parameters", theta, n)
        return TrainState(theta, n + 1, opt, encode_rng(gen), state.groups), info

