"""Stochastic gradient descent with heavy-ball momentum."""
from __future__ import annotations

from host.optim.schedules import Schedule
from host.optim.transform import Transform, chain, scale_by_learning_rate, trace


def sgd(lr: float | Schedule = 0.05, momentum: float = 0.0) -> Transform:
    """SGD (heavy ball; μ = 0 is plain SGD):

        m ← μ m + ∇ℓ,   θ ← θ − η m

    Args:
        lr: step size η
        momentum: heavy-ball momentum μ, in [0, 1)
    """
    return chain(trace(momentum), scale_by_learning_rate(lr))
