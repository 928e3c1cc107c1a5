"""RMSprop: the example of a new optimizer (docs/algorithms.md, "Write your own transform")."""
from __future__ import annotations

from typing import Any

import numpy as np

from host.optim.checks import check_value
from host.optim.schedules import Schedule
from host.optim.transform import Transform, chain, scale_by_learning_rate


def rmsprop(lr: float | Schedule = 1e-3, decay: float = 0.9, eps: float = 1e-8) -> Transform:
    """RMSprop (Tieleman & Hinton 2012):

        v ← ρ v + (1 − ρ) ∇ℓ²,   θ ← θ − η ∇ℓ / (√v + ε)

    Args:
        lr: step size η
        decay: ρ, the squared gradient's moving average, in [0, 1)
        eps: ε, added to √v
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    check_value("eps", eps, 0.0, True)

    def init(params: np.ndarray) -> dict:
        return {"v": np.zeros_like(params, dtype=float)}

    def update(g: np.ndarray, state: dict, params: Any, **extra: Any) -> tuple[np.ndarray, dict]:
        v = decay * state["v"] + (1 - decay) * g * g
        return g / (np.sqrt(v) + eps), {"v": v}

    return chain(Transform(init, update), scale_by_learning_rate(lr))
