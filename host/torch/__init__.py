"""PyTorch models against the library's optimizers (digital and on the device).

``TorchModel(module)`` gives any ``torch.nn.Module`` the interface of ``host.nn.MLP`` — θ as one
float64 vector, outputs, JVPs, VJPs and per-example Jacobians (torch.func), parameter groups
per layer — so ``TorchObjective(module, loss)`` is an ``Objective`` with the GGN in every form
(G = JᵀHJ, G = UᵀU, Gv, dense G), never forming N × N unless asked.

``optimizer(algo, module, loss, device=None, **hyper)`` runs any algorithm of host.optim on the
module (``.step(inputs, targets)``); ``TorchOptimizer(params, transform)`` is the
``torch.optim.Optimizer`` form of the gradient-only transforms.

Needs the optional extra: ``pip install 'thermohil[torch]'``.
"""
from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as e:        # pragma: no cover - exercised where torch is absent
    raise ImportError("host.torch needs PyTorch: pip install 'thermohil[torch]' (or pip install torch)") from e

from host.torch.model import TorchModel
from host.torch.objective import LOSSES, TorchObjective
from host.torch.optimizer import TorchOptimizer, TorchRun, optimizer

__all__ = ["TorchModel", "TorchObjective", "LOSSES", "optimizer", "TorchRun", "TorchOptimizer"]
