"""PyTorch models against the library's optimizers (digital and on the device).

``TorchModel(module)`` gives any ``torch.nn.Module`` the interface of ``host.nn.MLP`` — θ as one
float64 vector, outputs, JVPs, VJPs and per-example Jacobians (torch.func), parameter groups
per layer — so ``TorchObjective(module, loss)`` is an ``Objective`` with the GGN in every form
(G = JᵀHJ, G = UᵀU, Gv, dense G), never forming N × N unless asked.

Needs the optional extra: ``pip install 'thermohil[torch]'``.
"""
from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as e:        # pragma: no cover - exercised where torch is absent
    raise ImportError("host.torch needs PyTorch: pip install 'thermohil[torch]' (or pip install torch)") from e

from host.torch.model import TorchModel
from host.torch.objective import LOSSES, TorchObjective

__all__ = ["TorchModel", "TorchObjective", "LOSSES"]
