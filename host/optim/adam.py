"""Adam, and the scaling it is made of (reused by TNGD-Adam)."""
from __future__ import annotations

from typing import Any

import numpy as np

from host.optim.checks import check_value
from host.optim.schedules import Schedule
from host.optim.signature import default
from host.optim.transform import Transform, chain, scale_by_learning_rate


def adam(lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """Adam (Kingma & Ba 2015), with bias correction:

        m ← β1 m + (1 − β1) ∇ℓ,   v ← β2 v + (1 − β2) ∇ℓ²,
        θ ← θ − η m̂ / (√v̂ + ε),   m̂ = m/(1 − β1ⁿ), v̂ = v/(1 − β2ⁿ)

    Args:
        lr: step size η
        b1: β1, the gradient's moving average
        b2: β2, the squared gradient's moving average
        eps: ε, added to √v̂
    """
    return chain(scale_by_adam(b1, b2, eps), scale_by_learning_rate(lr))


def scale_by_adam(b1: float = default(adam, "b1"), b2: float = default(adam, "b2"),
                  eps: float = default(adam, "eps")) -> Transform:
    """u ← m̂/(√v̂ + ε) with bias-corrected moments of u (β1 = β2 = 0: u/(|u| + ε))."""
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
        raise ValueError(f"Adam needs 0 <= b1, b2 < 1, got {b1}, {b2}")
    check_value("eps", eps, 0.0, True)

    def init(params: np.ndarray) -> dict:
        return {"count": 0, "m": np.zeros_like(params, dtype=float), "v": np.zeros_like(params, dtype=float)}

    def update(u: np.ndarray, state: dict, params: Any, **extra: Any) -> tuple[np.ndarray, dict]:
        t = state["count"] + 1
        m = b1 * state["m"] + (1 - b1) * u
        v = b2 * state["v"] + (1 - b2) * u * u
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        return mhat / (np.sqrt(vhat) + eps), {"count": t, "m": m, "v": v}
    return Transform(init, update)
