"""A ``torch.nn.Module`` as the optimizers see a model: θ one float64 vector.

The module's parameters, in ``named_parameters`` order, are flattened into θ. Every product is
computed on a float64 copy of the module with ``torch.func.functional_call`` — the user's
module (float32 is fine) is only read at construction and written by ``init``. Groups: one
per module that owns parameters directly (an ``nn.Linear``, a ``nn.Conv2d``: a layer, weights
and biases together), in order.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, jacrev, jvp, vjp

from host.nn.mlp import ParamGroup


class TorchModel:
    def __init__(self, module: torch.nn.Module) -> None:
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"TorchModel takes a torch.nn.Module, got {type(module).__name__}")
        self.module = module
        self._f64 = copy.deepcopy(module).to(torch.float64)
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the module has no trainable parameters")
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.n_params = int(self.offsets[-1])
        self.groups = self._groups(module)

    def _groups(self, module: torch.nn.Module) -> list[ParamGroup]:
        index = {n: i for i, n in enumerate(self.names)}
        groups = []
        for path, sub in module.named_modules():
            own = [f"{path}.{n}" if path else n for n, p in sub.named_parameters(recurse=False)
                   if p.requires_grad]
            if own:
                first, last = min(index[n] for n in own), max(index[n] for n in own)
                if last - first + 1 != len(own):
                    raise ValueError(f"module {path!r}: its parameters are not contiguous in "
                                     "named_parameters order")
                groups.append(ParamGroup(path or "module", slice(int(self.offsets[first]),
                                                                 int(self.offsets[last + 1])), len(groups)))
        return groups

    def __repr__(self) -> str:
        return f"TorchModel({type(self.module).__name__}, {self.n_params} parameters)"

    # ------------------------------------------------------------------ θ ↔ parameters
    def params_of(self, theta: Any) -> dict[str, torch.Tensor]:
        t = theta if isinstance(theta, torch.Tensor) else torch.as_tensor(np.asarray(theta, dtype=np.float64))
        if t.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {tuple(t.shape)}")
        return {n: t[a:b].reshape(s) for n, s, a, b in zip(self.names, self.shapes, self.offsets[:-1],
                                                          self.offsets[1:])}

    def flatten(self) -> np.ndarray:
        """The module's current parameters as θ (float64)."""
        return np.concatenate([p.detach().to(torch.float64).reshape(-1).numpy()
                               for n, p in self.module.named_parameters() if p.requires_grad])

    def load(self, theta: np.ndarray) -> None:
        """Write θ back into the user's module (its own dtype)."""
        with torch.no_grad():
            for n, p in self.module.named_parameters():
                if p.requires_grad:
                    p.copy_(self.params_of(theta)[n].to(p.dtype))

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """Fresh parameters from torch's own initialisers (``reset_parameters``), seeded from
        ``rng``; the module keeps them."""
        with torch.random.fork_rng():
            torch.manual_seed(int(rng.integers(2**31)))
            for sub in self.module.modules():
                if hasattr(sub, "reset_parameters"):
                    sub.reset_parameters()
        return self.flatten()

    # ------------------------------------------------------------------ outputs and products
    def _inputs(self, X: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(X, dtype=np.float64))

    def _fn(self, X: Any):
        x = self._inputs(X)

        def f(t: torch.Tensor) -> torch.Tensor:
            out = functional_call(self._f64, self.params_of(t), (x,))
            return out.reshape(out.shape[0], -1)
        return f

    def apply(self, theta: np.ndarray, X: Any) -> np.ndarray:
        with torch.no_grad():
            return self._fn(X)(torch.as_tensor(np.asarray(theta, dtype=np.float64))).numpy()

    def linearize(self, theta: np.ndarray, X: Any) -> "TorchLinearization":
        return TorchLinearization(self, theta, X)


class TorchLinearization:
    """The module linearized at (θ, X): outputs (B, K), VJPs, JVPs and the Jacobian (B, K, P)."""

    def __init__(self, model: TorchModel, theta: np.ndarray, X: Any) -> None:
        self.model = model
        self._t = torch.as_tensor(np.asarray(theta, dtype=np.float64))
        self._f = model._fn(X)
        out, self._vjp = vjp(self._f, self._t)
        self.out: np.ndarray = out.detach().numpy()

    @property
    def batch_size(self) -> int:
        return self.out.shape[0]

    def vjp(self, g_out: np.ndarray) -> np.ndarray:
        g = np.asarray(g_out, dtype=np.float64)
        if g.shape != self.out.shape:
            raise ValueError(f"g_out must have shape {self.out.shape}, got {g.shape}")
        return self._vjp(torch.as_tensor(g))[0].numpy()

    def jvp(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (self.model.n_params,):
            raise ValueError(f"v must have shape ({self.model.n_params},), got {v.shape}")
        return jvp(self._f, (self._t,), (torch.as_tensor(v),))[1].detach().numpy()

    def jacobian(self) -> np.ndarray:
        return jacrev(self._f)(self._t).detach().numpy()
