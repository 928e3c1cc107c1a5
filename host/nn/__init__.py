"""Small numpy models whose curvature TNGD uploads to the device.

    model = nn.MLP([2, 100, 1], activation="relu"); theta = model.init(rng)   # flat θ, (P,)
    loss = nn.SigmoidBCE()
    value, grad = nn.loss_and_grad(model, loss, theta, X, y)
    J, H = nn.ggn_factors(model, loss, theta, X, y)        # G = Jᵀ H J, never formed
"""
from __future__ import annotations

from host.nn.curvature import ggn_dense, ggn_factors, ggn_matvec, ggn_sqrt, loss_and_grad
from host.nn.losses import MSE, SigmoidBCE, SoftmaxCrossEntropy
from host.nn.mlp import MLP, Linearization, ParamGroup

LOSSES = {"ce": SoftmaxCrossEntropy, "bce": SigmoidBCE, "mse": MSE}

__all__ = ["MLP", "Linearization", "ParamGroup", "SoftmaxCrossEntropy", "SigmoidBCE", "MSE",
           "LOSSES", "loss_and_grad", "ggn_matvec", "ggn_factors", "ggn_sqrt", "ggn_dense"]
