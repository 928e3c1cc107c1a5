"""A direction plus an update rule = a gradient-based optimizer."""
from __future__ import annotations

from typing import Any

import numpy as np

from host.optim.base import Optimizer, State, check_finite


class Composed(Optimizer):
    def __init__(self, name: str, direction: Any, rule: Any, uses_device: bool = False) -> None:
        self.name, self.direction, self.rule, self.uses_device = name, direction, rule, uses_device

    def init(self, theta: np.ndarray, rng: np.random.Generator) -> State:
        state = super().init(theta, rng)
        self.direction.init(state)
        self.rule.init(state)
        return state

    def step(self, state: State, X: np.ndarray, y: np.ndarray, objective: Any) -> tuple[State, dict]:
        loss, grad = objective.value_and_grad(state.theta, X, y)
        check_finite("gradient", grad, state.step)
        d = self.direction(state, X, y, objective, grad)
        check_finite("update direction", d, state.step)
        theta = self.rule.apply(state, d)
        check_finite("parameters", theta, state.step)
        state.theta = theta
        state.step += 1
        return state, {"batch_loss": float(loss), **getattr(self.direction, "info", {})}
