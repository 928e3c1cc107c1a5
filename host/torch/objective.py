"""``TorchObjective(module, loss)``: a torch model and a loss as the optimizers' objective.

The loss is one of the closed forms of ``host.nn`` (its output-space Hessian and the Hessian's
square root are exact): ``"cross_entropy"`` (or ``torch.nn.CrossEntropyLoss()``), ``"mse"``
(``torch.nn.MSELoss()``), ``"bce"`` (``torch.nn.BCEWithLogitsLoss()``), each with the mean
reduction torch uses by default; or any callable ``loss_fn(outputs, targets) -> scalar tensor``
that is the mean of per-example losses, as torch's losses are (``TorchLoss``: its per-example
Hessians by torch.func). Torch loss modules in a form the closed forms do not cover (label
smoothing, ``pos_weight``, ``HuberLoss``, …) take the generic path.

The curvature is streamed: U (G = UᵀU) is filled a chunk of examples at a time from the
per-example Jacobians (``TorchLinearization.jacobian_blocks``), so the host holds U and one
chunk, never J and U together.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from torch.func import hessian as func_hessian
from torch.func import jacrev, vmap

from host.nn import MSE, SigmoidBCE, SoftmaxCrossEntropy
from host.objective import Objective
from host.nn.curvature import block_diagonal
from host.torch.model import TorchModel, checked_chunk_mb

LOSSES = {"cross_entropy": SoftmaxCrossEntropy, "ce": SoftmaxCrossEntropy, "mse": MSE, "bce": SigmoidBCE}
_MODULES = {torch.nn.CrossEntropyLoss: SoftmaxCrossEntropy, torch.nn.MSELoss: MSE,
            torch.nn.BCEWithLogitsLoss: SigmoidBCE}
MEAN_RTOL = 1e-9
"""How closely a generic loss's batch value must equal the mean of its per-example values."""


def _targets(y: Any) -> torch.Tensor:
    """Targets as torch takes them: integer labels as int64, everything else float64."""
    t = y if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    if t.dtype == torch.bool or t.is_floating_point():
        return t.to(torch.float64)
    if t.is_complex():
        raise ValueError("targets must be real")
    return t.to(torch.int64)


class TorchLoss:
    """Any ``loss_fn(outputs, targets) -> scalar tensor``, the MEAN over the batch of per-example
    losses ℓ_b (what torch's losses with reduction='mean' return), with the interface of the
    losses of ``host.nn.losses`` on outputs (B, K):

    - ``value``: loss_fn itself; ``grad``: its gradient w.r.t. the outputs by autograd (the 1/B
      included);
    - ``hessian``: per-example Hessians H_b = ∂²ℓ_b/∂f_b² (B, K, K), NOT divided by B, with
      ℓ_b = loss_fn(f_b[None], y_b[None]), by torch.func (jacfwd of jacrev, vmapped over the
      batch, float64). Their negative eigenvalues are clipped to 0: for a non-convex loss the
      generalised Gauss–Newton matrix JᵀHJ must stay positive semi-definite (that is what makes
      it a usable curvature, and what the device's coupling needs); a convex loss's Hessian is
      returned as it is;
    - ``hessian_sqrt``: L_b = Q_b diag(√max(w, 0)) from H_b = Q_b diag(w) Q_bᵀ (eigh), so
      L_b L_bᵀ is ``hessian``;
    - ``accuracy``: ``accuracy(outputs, targets)`` if given; otherwise the argmax accuracy for
      integer labels and more than one output column, else NaN (no meaning for regression;
      training only logs it).

    ``loss_fn`` must be a mean of per-example losses: each ``hessian`` checks that its batch
    value is the mean of its single-example values (a class-weighted or summed loss is not) and
    raises ValueError otherwise. It gets the outputs in the shape the module returns them
    (``output_shape``, set by ``TorchObjective`` from the model: a regression module returning
    (B,) gets (B,), not (B, 1), which torch's losses would broadcast against (B,) targets).
    """

    name = "torch_loss"

    def __init__(self, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 accuracy: Callable[[torch.Tensor, torch.Tensor], Any] | None = None) -> None:
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable (outputs, targets) -> scalar tensor, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self._accuracy = accuracy
        self.model: Any = None
        """The TorchModel whose ``output_shape`` the outputs are given back in (None: (B, K))."""

    def __repr__(self) -> str:
        return f"TorchLoss({self.loss_fn!r})"

    # ------------------------------------------------------------------ helpers
    def _tensors(self, out: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        o = torch.as_tensor(np.asarray(out, dtype=np.float64))
        if o.ndim != 2:
            raise ValueError(f"outputs must have shape (B, K), got {tuple(o.shape)}")
        t = _targets(y)
        if t.ndim == 0 or t.shape[0] != o.shape[0]:
            raise ValueError(f"targets must have one entry per example ({o.shape[0]}), got shape {tuple(t.shape)}")
        return o, t

    def _shaped(self, o: torch.Tensor) -> torch.Tensor:
        """Outputs (…, K) in the module's own per-example shape, where it is known and fits."""
        shape = getattr(self.model, "output_shape", None)
        if shape is None or math.prod(shape) != o.shape[-1]:
            return o
        return o.reshape(*o.shape[:-1], *shape)

    def _scalar(self, v: Any) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.numel() != 1:
            raise ValueError(f"loss_fn must return a scalar torch tensor, got {type(v).__name__}"
                             + (f" of shape {tuple(v.shape)}" if isinstance(v, torch.Tensor) else ""))
        return v.reshape(())

    def _example(self, o: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._scalar(self.loss_fn(self._shaped(o[None]), t[None]))

    # ------------------------------------------------------------------ the interface
    def value(self, out: Any, y: Any) -> float:
        o, t = self._tensors(out, y)
        with torch.no_grad():
            return float(self._scalar(self.loss_fn(self._shaped(o), t)))

    def grad(self, out: Any, y: Any) -> np.ndarray:
        o, t = self._tensors(out, y)
        o = o.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self._scalar(self.loss_fn(self._shaped(o), t)), o)
        return g.detach().numpy()

    def raw_hessian(self, out: Any, y: Any) -> np.ndarray:
        """The per-example Hessians as they are (B, K, K), after checking the mean convention."""
        o, t = self._tensors(out, y)
        with torch.no_grad():
            batch = float(self._scalar(self.loss_fn(self._shaped(o), t)))
            each = vmap(self._example)(o, t)
        mean = float(each.mean())
        if abs(batch - mean) > MEAN_RTOL * max(1.0, abs(batch), abs(mean)):
            raise ValueError(f"loss_fn must be the mean of per-example losses (as torch's losses with "
                             f"reduction='mean' are): on this batch it gives {batch:.12g}, the mean of its "
                             f"values on single examples is {mean:.12g} (a summed or class-weighted loss?)")
        try:
            H = vmap(func_hessian(self._example))(o, t)
        except (RuntimeError, NotImplementedError):     # an op without forward-mode AD
            H = vmap(jacrev(jacrev(self._example)))(o, t)
        H = H.detach().numpy()
        return 0.5 * (H + H.transpose(0, 2, 1))

    def _eig(self, out: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        H = self.raw_hessian(out, y)
        w, Q = np.linalg.eigh(H)
        return H, w, Q

    def hessian(self, out: Any, y: Any) -> np.ndarray:
        H, w, Q = self._eig(out, y)
        negative = np.any(w < 0, axis=1)
        if negative.any():      # the positive semi-definite part, where there is a negative one
            wp = np.maximum(w[negative], 0.0)
            H[negative] = np.einsum("bik,bk,bjk->bij", Q[negative], wp, Q[negative])
        return H

    def hessian_sqrt(self, out: Any, y: Any) -> np.ndarray:
        _, w, Q = self._eig(out, y)
        return Q * np.sqrt(np.maximum(w, 0.0))[:, None, :]

    def accuracy(self, out: Any, y: Any) -> float:
        o, t = self._tensors(out, y)
        if self._accuracy is not None:
            return float(self._accuracy(self._shaped(o), t))
        if o.shape[1] > 1 and not t.is_floating_point() and t.numel() == o.shape[0]:
            return float((o.argmax(dim=1) == t.reshape(-1)).double().mean())
        return float("nan")


def _module_form(loss: torch.nn.Module) -> Any:
    """A torch loss module: the closed form in its default form, else the generic path."""
    reduction = getattr(loss, "reduction", "mean")
    if reduction != "mean":
        raise ValueError(f"{type(loss).__name__}(reduction={reduction!r}): only the default reduction "
                         "'mean' is supported (the optimizers minimise the mean over the batch)")
    if getattr(loss, "weight", None) is not None:
        raise ValueError(f"{type(loss).__name__}(weight=...): only the default (unweighted) form is "
                         "supported; a class-weighted mean is not a mean of per-example losses "
                         "(write the per-example weighting into a callable loss instead)")
    for cls, ours in _MODULES.items():
        if type(loss) is cls and not getattr(loss, "label_smoothing", 0.0) \
                and getattr(loss, "pos_weight", None) is None:
            return ours()
    return TorchLoss(loss)


def loss_of(loss: Any) -> Any:
    """The library loss for a name, a torch loss module, a host.nn loss, or a callable
    ``loss_fn(outputs, targets) -> scalar tensor`` (``TorchLoss``)."""
    if isinstance(loss, str):
        if loss.lower() not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)} (or give a callable "
                             "loss_fn(outputs, targets) -> scalar tensor)")
        return LOSSES[loss.lower()]()
    if isinstance(loss, torch.nn.Module):
        return _module_form(loss)
    if hasattr(loss, "hessian") and hasattr(loss, "value"):
        return loss
    if callable(loss):
        return TorchLoss(loss)
    raise ValueError(f"loss {loss!r}: give 'cross_entropy', 'mse', 'bce', a torch loss module, or a "
                     "callable loss_fn(outputs, targets) -> scalar tensor (the mean over the batch)")


class TorchObjective(Objective):
    """Loss and gradient, the GGN as (J, H), as U with G = UᵀU, as products Gv and dense, for a
    torch module: the same questions every optimizer asks of ``host.objective.Objective``, the
    GGN factors filled a chunk of examples at a time.
    ``loss``: a name, a torch loss module, a host.nn loss or a callable (see the module
    docstring); ``jacobian_chunk_mb``: the size of one chunk of the per-example Jacobian."""

    def __init__(self, module: Any, loss: Any, jacobian_chunk_mb: float | None = None) -> None:
        if isinstance(module, TorchModel):
            model = module
            if jacobian_chunk_mb is not None:
                model.jacobian_chunk_mb = checked_chunk_mb(jacobian_chunk_mb)
        else:
            model = TorchModel(module, **({} if jacobian_chunk_mb is None else {"jacobian_chunk_mb": jacobian_chunk_mb}))
        ours = loss_of(loss)
        if isinstance(ours, TorchLoss):
            ours.model = model          # outputs back in the module's shape
        super().__init__(model, ours)

    def ggn_sqrt(self, theta: np.ndarray, X: Any, y: Any) -> np.ndarray:
        """U (B·k, P) with G = UᵀU, U_b = L_bᵀ J_b / √B, written chunk by chunk as the Jacobian
        of L_bᵀ f_b / √B: the host holds U and one chunk (``TorchModel.jacobian_chunk_mb``)."""
        lin = self.model.linearize(theta, X)
        B, K = lin.out.shape
        L = np.asarray(self.loss.hessian_sqrt(lin.out, y), dtype=np.float64)     # (B, K, k)
        if L.ndim != 3 or L.shape[:2] != (B, K):
            raise ValueError(f"hessian_sqrt must have shape ({B}, {K}, k), got {L.shape}")
        weights = np.ascontiguousarray(L.transpose(0, 2, 1)) / math.sqrt(B)        # (B, k, K)
        return lin.assemble(L.shape[2], weights=weights).reshape(B * L.shape[2], -1)

    def ggn_factors(self, theta: np.ndarray, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """(J, H) as ``host.nn.curvature.ggn_factors``, J assembled chunk by chunk in place."""
        lin = self.model.linearize(theta, X)
        B, K = lin.out.shape
        H = block_diagonal(np.asarray(self.loss.hessian(lin.out, y), dtype=np.float64) / B)
        return lin.jacobian().reshape(B * K, -1), H
