"""A ``torch.nn.Module`` as the optimizers see a model: θ one float64 vector.

The module's parameters, in ``named_parameters`` order, are flattened into θ. Every product is
computed on a float64 copy of the module with ``torch.func.functional_call`` — the user's
module (float32 is fine) is only read at construction and written by ``init``. The copy runs in
eval mode: the optimizers need one deterministic function of θ, so dropout is off and batch norm
uses the running statistics it had (they are not updated); a module with such layers is told so
by a warning. Groups: one
per module that owns parameters directly (an ``nn.Linear``, a ``nn.Conv2d``: a layer, weights
and biases together), in order.

Per-example Jacobians come a chunk of examples at a time (``jacobian_blocks``), each example
through its own small graph (``vmap`` of ``jacrev`` of one example): the batch's J (B·K × N) is
never held twice, and the work is B times less than ``jacrev`` of the whole batch's outputs,
which backpropagates every row through every example. A module whose outputs couple the
examples of a batch (anything that reduces over the batch dimension) is detected — its
per-example outputs differ from the batch's — and gets the rows of the whole-batch Jacobian
instead, a chunk of rows at a time.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from host.nn.mlp import ParamGroup

JACOBIAN_CHUNK_MB = 64.0
"""Default size of one chunk of the per-example Jacobian (float64): at N = 10⁵ parameters and
10 outputs, 8 examples."""


_MODAL = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._NormBase)


def _say_modes(module: torch.nn.Module) -> None:
    """Warn about layers that behave differently in training mode (dropout, batch norm)."""
    found = sorted({type(m).__name__ for m in module.modules() if isinstance(m, _MODAL)})
    if found:
        warnings.warn(f"{', '.join(found)}: the library evaluates the module in eval mode (no dropout; "
                      "batch norm with its running statistics, not updated), so that gradient and "
                      "curvature are of one deterministic network", UserWarning, stacklevel=3)


def checked_chunk_mb(value: Any) -> float:
    if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"jacobian_chunk_mb must be a number > 0, got {value!r}")
    return float(value)


class TorchModel:
    """``jacobian_chunk_mb``: the per-example Jacobian is computed this many MB (float64) of it
    at a time; the host's memory for the curvature is the factor U plus about one chunk."""

    def __init__(self, module: torch.nn.Module, jacobian_chunk_mb: float = JACOBIAN_CHUNK_MB) -> None:
        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"TorchModel takes a torch.nn.Module, got {type(module).__name__}")
        self.jacobian_chunk_mb = checked_chunk_mb(jacobian_chunk_mb)
        self.per_example: bool | None = None
        """Whether the examples pass through the module independently (per-example Jacobians by
        vmap); None until the first Jacobian finds out."""
        self.output_shape: tuple[int, ...] | None = None
        """One example's output shape as the module returns it (outputs are flattened to (B, K)
        here; a generic loss gets them back in this shape); None before the first forward."""
        self.module = module
        # one deterministic function of θ: the gradient, J and the GGN must be of the same network
        self._f64 = copy.deepcopy(module).to(torch.float64).eval()
        _say_modes(module)
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
        self._f64.load_state_dict(self.module.state_dict())   # fresh buffers (batch norm) too
        return self.flatten()

    # ------------------------------------------------------------------ outputs and products
    def _inputs(self, X: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(X, dtype=np.float64))

    def _fn(self, X: Any):
        x = self._inputs(X)

        def f(t: torch.Tensor) -> torch.Tensor:
            out = functional_call(self._f64, self.params_of(t), (x,))
            self.output_shape = tuple(out.shape[1:])
            return out.reshape(out.shape[0], -1)
        return f

    def chunk_examples(self, n_outputs: int) -> int:
        """Examples per Jacobian chunk: ``jacobian_chunk_mb`` of float64 rows (at least one)."""
        per_example = max(n_outputs, 1) * self.n_params * 8
        return max(1, int(self.jacobian_chunk_mb * 2**20 // per_example))

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
        self._x = model._inputs(X)
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

    def jacobian(self, chunk: int | None = None) -> np.ndarray:
        """J (B, K, P), assembled from ``jacobian_blocks`` straight into one array."""
        return self.assemble(self.out.shape[1], chunk=chunk)

    def assemble(self, k: int, weights: Any = None, chunk: int | None = None) -> np.ndarray:
        """The rows of ``jacobian_blocks`` (J_b, or W_b J_b with ``weights`` (B, k, K)) written
        into one (B, k, P) array, a chunk at a time: the array plus one chunk in memory."""
        out = np.empty((self.out.shape[0], k, self.model.n_params))
        target = torch.from_numpy(out)
        for rows, blocks in self.jacobian_blocks(chunk, weights=weights):
            for name, a, b in self.columns():
                target[rows, :, a:b] = blocks[name].reshape(rows.stop - rows.start, k, b - a)
            del blocks
        return out

    def columns(self) -> Iterator[tuple[str, int, int]]:
        """(parameter name, first column, end column) of each parameter tensor in θ."""
        m = self.model
        return zip(m.names, (int(a) for a in m.offsets[:-1]), (int(b) for b in m.offsets[1:]))

    def jacobian_blocks(self, chunk: int | None = None, weights: Any = None
                        ) -> Iterator[tuple[slice, dict[str, torch.Tensor]]]:
        """Per-example Jacobians a chunk of examples at a time: (rows, {parameter name: (c, K,
        *shape)}), c ≤ ``chunk`` (default: ``model.chunk_examples``). With ``weights`` W (B, k,
        K), the rows are W_b J_b instead, (c, k, *shape): computed as the Jacobian of W_b f_b,
        not as a product afterwards. Only one chunk is alive if the caller keeps none."""
        B, K = self.out.shape
        W = None
        if weights is not None:
            W = torch.as_tensor(np.asarray(weights, dtype=np.float64))
            if W.ndim != 3 or W.shape[0] != B or W.shape[2] != K:
                raise ValueError(f"weights must have shape ({B}, k, {K}), got {tuple(W.shape)}")
        rows_per_example = K if W is None else max(K, W.shape[1])
        chunk = self.model.chunk_examples(rows_per_example) if chunk is None else int(chunk)
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 example, got {chunk}")
        params = self.model.params_of(self._t.detach())
        for start in range(0, B, chunk):
            rows = slice(start, min(start + chunk, B))
            yield rows, self._block(params, rows, None if W is None else W[rows])

    def _block(self, params: dict[str, torch.Tensor], rows: slice, W: torch.Tensor | None
               ) -> dict[str, torch.Tensor]:
        m = self.model
        if m.per_example is not False:
            try:
                if W is None:
                    jac, out = vmap(jacrev(self._single, has_aux=True), in_dims=(None, 0))(params, self._x[rows])
                else:
                    jac, out = vmap(jacrev(self._weighted, has_aux=True), in_dims=(None, 0, 0))(
                        params, self._x[rows], W)
                ref = torch.as_tensor(self.out[rows])
                top = float(ref.abs().max()) if ref.numel() else 0.0
                if torch.allclose(out, ref, rtol=1e-9, atol=1e-9 * (1.0 + top)):
                    m.per_example = True
                    return jac
            except RuntimeError:        # e.g. an in-place update of a buffer under vmap
                pass
            m.per_example = False
        # the examples interact: rows of the whole batch's Jacobian (each through the batch)
        x = self._x

        def rows_of(p: dict[str, torch.Tensor]) -> torch.Tensor:
            out = functional_call(m._f64, p, (x,))
            return out.reshape(out.shape[0], -1)[rows]
        jac = jacrev(rows_of)(params)
        if W is None:
            return jac
        return {n: torch.einsum("cjk,ck...->cj...", W, J) for n, J in jac.items()}

    def _single(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(self.model._f64, params, (x[None],)).reshape(-1)
        return out, out

    def _weighted(self, params: dict[str, torch.Tensor], x: torch.Tensor, w: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(self.model._f64, params, (x[None],)).reshape(-1)
        return w @ out, out
