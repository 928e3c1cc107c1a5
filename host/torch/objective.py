"""``TorchObjective(module, loss)``: a torch model and a loss as the optimizers' objective.

The loss is one of the closed forms of ``host.nn`` (its output-space Hessian and the Hessian's
square root are exact): ``"cross_entropy"`` (or ``torch.nn.CrossEntropyLoss()``), ``"mse"``
(``torch.nn.MSELoss()``), ``"bce"`` (``torch.nn.BCEWithLogitsLoss()``), each with the mean
reduction torch uses by default.
"""
from __future__ import annotations

from typing import Any

import torch

from host.nn import MSE, SigmoidBCE, SoftmaxCrossEntropy
from host.objective import Objective
from host.torch.model import TorchModel

LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "ce": SoftmaxCrossEntropy, "mse": MSE, "bce": SigmoidBCE}
_MODULES = {torch.nn.CrossEntropyLoss: SoftmaxCrossEntropy, torch.nn.MSELoss: MSE,
            torch.nn.BCEWithLogitsLoss: SigmoidBCE}


def loss_of(loss: Any) -> Any:
    """The library loss for a name, a torch loss module, or a host.nn loss."""
    if isinstance(loss, str):
        if loss.lower() not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        return LOSSES[loss.lower()]()
    for cls, ours in _MODULES.items():
        if isinstance(loss, cls):
            if getattr(loss, "reduction", "mean") != "mean" or getattr(loss, "weight", None) is not None \
                    or getattr(loss, "label_smoothing", 0.0) or getattr(loss, "pos_weight", None) is not None:
                raise ValueError(f"{type(loss).__name__}: only the default (mean, unweighted) form is "
                                 "supported")
            return ours()
    if hasattr(loss, "hessian") and hasattr(loss, "value"):
        return loss
    raise ValueError(f"loss {loss!r}: give 'cross_entropy', 'mse', 'bce' or the matching torch loss "
                     "module (CrossEntropyLoss, MSELoss, BCEWithLogitsLoss)")


def TorchObjective(module: Any, loss: Any) -> Objective:
    """Loss and gradient, the GGN as (J, H), as U with G = UᵀU, as products Gv and dense, for a
    torch module: the same questions every optimizer asks of ``host.objective.Objective``."""
    model = module if isinstance(module, TorchModel) else TorchModel(module)
    return Objective(model, loss_of(loss))
