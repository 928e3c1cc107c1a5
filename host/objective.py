"""The training objective as optimizers see it: a model, a loss, and the curvature of a batch.

    objective = Objective(model, loss)            # e.g. Objective(MLP([64, 32, 10]), SoftmaxCrossEntropy())
    value, grad = objective.value_and_grad(theta, X, y)

Every optimizer asks an objective the same questions: value and gradient, the GGN in low-rank
form G = Jᵀ H J (what TNGD uploads), its square root G = UᵀU (Woodbury), GGN-vector products
(CG), and the dense G for small models. ``model`` is anything with ``n_params``, ``groups``,
``init(rng) -> θ``, ``apply(θ, X) -> outputs (B, K)`` and ``linearize(θ, X)`` (outputs, VJP,
JVP, Jacobian): ``host.nn.MLP`` or ``host.torch.TorchModel``. ``loss`` is a host.nn loss (mean
value, gradient, per-example output Hessian and its square root, accuracy). A digital-only
optimizer (SGD, Adam, the Langevin family) needs only ``value_and_grad``: an objective of your
own with that one method trains with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from host.nn import curvature


@dataclass
class Objective:
    model: Any
    loss: Any

    def value_and_grad(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        return curvature.loss_and_grad(self.model, self.loss, theta, X, y)

    def ggn_factors(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return curvature.ggn_factors(self.model, self.loss, theta, X, y)

    def ggn_sqrt(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return curvature.ggn_sqrt(self.model, self.loss, theta, X, y)

    def ggn_matvec(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
        return curvature.ggn_matvec(self.model, self.loss, theta, X, y, v)

    def ggn_dense(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return curvature.ggn_dense(self.model, self.loss, theta, X, y)

    def evaluate(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        out = self.model.apply(theta, X)
        return float(self.loss.value(out, y)), float(self.loss.accuracy(out, y))
