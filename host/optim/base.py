"""The shared optimizer interface (cf. optax init/update, posteriors build/init/update).

An optimizer is ``init(theta, rng) -> state`` and ``step(state, batch, objective) -> (state,
info)``. Gradient-based methods are composed from two small parts: a *direction* (the raw
gradient, a natural-gradient solve, or the device's equilibrium state) and an *update rule*
(SGD with momentum, Adam) that turns directions into parameter steps — so TNGD-Adam is the TNGD
direction fed to Adam, exactly as in the paper.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

Schedule = Callable[[int], float]


def as_schedule(value: float | Schedule) -> Schedule:
    """A constant or a callable ``step -> value``."""
    if callable(value):
        return value
    v = float(value)
    return lambda _step: v


def exponential_decay(init: float, rate: float, every: int = 1) -> Schedule:
    return lambda step: init * rate ** (step / every)


def cosine_decay(init: float, total: int, final: float = 0.0) -> Schedule:
    return lambda step: final + 0.5 * (init - final) * (1 + math.cos(math.pi * min(step, total) / total))


@dataclass
class State:
    theta: np.ndarray
    step: int = 0
    slots: dict[str, Any] = field(default_factory=dict)  # per-algorithm state (momenta, ...)


class Batch(Protocol):
    X: np.ndarray
    y: np.ndarray


class Optimizer:
    """Base class: subclasses implement init and step. ``close`` frees a device if any."""
    name = "optimizer"
    uses_device = False

    def init(self, theta: np.ndarray, rng: np.random.Generator) -> State:
        return State(np.array(theta, dtype=np.float64, copy=True))

    def step(self, state: State, X: np.ndarray, y: np.ndarray, objective: Any) -> tuple[State, dict]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NonFiniteError(FloatingPointError):
    """A gradient or update is NaN/inf: training stops rather than corrupting the parameters."""


def check_finite(name: str, value: np.ndarray, step: int) -> None:
    if not np.all(np.isfinite(value)):
        raise NonFiniteError(f"non-finite {name} at step {step}: training stopped; the last good "
                             "checkpoint is kept (lower the step size?)")
