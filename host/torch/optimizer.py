"""Every algorithm of host.optim on a torch model, two ways.

``optimizer(algo, module, loss, device=None, **hyper)``: the library runs the step — gradient,
curvature (TNGD, natural Langevin), the device's packet — and writes the new parameters back
into the module; ``.step(inputs, targets) -> loss``, ``.close()``.

``TorchOptimizer(module.parameters(), transform)``: a ``torch.optim.Optimizer`` for the
gradient-only transforms (SGD, Adam, RMSprop, the Langevin family) in a user's own loop:
``loss.backward(); opt.step()``.
"""
from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from host.nn.mlp import ParamGroup
from host.optim import ALGORITHMS
from host.optim.groups import normalise_groups
from host.optim.optimizer import decode_rng, encode_rng
from host.optim.transform import Transform, apply_updates, init_of
from host.torch.objective import TorchObjective


def _unsized_spawn(url: str) -> bool:
    from urllib.parse import parse_qs, urlparse
    parsed = urlparse(url)
    return parsed.scheme == "spawn" and not {"cells", "max_rank"} <= set(parse_qs(parsed.query))


def _array(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class TorchRun:
    """One algorithm training one torch module (see ``optimizer``)."""

    def __init__(self, algo: str, module: torch.nn.Module, loss: Any, device: Any = None,
                 seed: int = 0, groups: Any = None, **hyper: Any) -> None:
        spec = ALGORITHMS.get(algo)
        if spec is None:
            raise ValueError(f"unknown algorithm {algo!r}; known: {', '.join(sorted(ALGORITHMS))}")
        self.objective = TorchObjective(module, loss)
        self.model = self.objective.model
        self.groups = self.model.groups if groups is None else groups_of(self.model, groups)
        self._owned = None
        self._spec, self._hyper, self._seed = spec, hyper, seed
        self._unsized: str | None = None      # a spawn:// URL sized at the first batch
        self.optimizer: Any = None
        self.state: Any = None
        self.info: dict = {}
        if spec.needs_device(hyper):
            if device is None:
                raise ValueError(f"{algo} runs on a device: give device= (a URL such as 'spawn://', "
                                 "sized for the model at the first batch, or a connected device)")
            if isinstance(device, str) and _unsized_spawn(device):
                self._unsized = device
                return
        self._start(device)

    def _start(self, device: Any) -> None:
        """Connect (a URL), build the optimizer and its state from the module's weights."""
        if isinstance(device, str):
            import host
            from host.calibration import ensure_calibrated
            device = self._owned = host.connect(device)
        try:
            if self._owned is not None:     # as thermohil train does: trims of a non-ideal chip
                ensure_calibrated(device, say=lambda m: print(f"thermohil: {m}", file=sys.stderr))
            self.optimizer = self._spec.build(device, **self._hyper)
            self.optimizer.check_model(SimpleNamespace(n_params=self.model.n_params, groups=self.groups))
            self.state = self.optimizer.init(self.model.flatten(), np.random.default_rng(self._seed),
                                             groups=self.groups)
        except BaseException:
            self.close()
            raise

    def step(self, inputs: Any, targets: Any) -> float:
        """One step on a batch; the module holds the new parameters after it."""
        X, y = _array(inputs), _array(targets)
        if self._unsized is not None:
            self._start(self._sized(self._unsized, X))
            self._unsized = None
        self.state, self.info = self.optimizer.step(self.state, X, y, self.objective)
        self.model.load(self.state.theta)
        return float(self.info["batch_loss"])

    def _sized(self, url: str, X: np.ndarray) -> str:
        """The spawn:// URL with one cell per parameter and the rank of this batch's curvature
        (batch × outputs × curvature blocks): what thermohil train sizes its device by."""
        from host.training import MAX_EMULATED_RANK, device_url
        outputs = int(np.prod(np.shape(self.model.apply(self.model.flatten(), X[:1]))[1:]))
        blocks = self._spec.curvature_blocks(self._hyper, [g.layer for g in self.groups])
        rank = len(X) * outputs * blocks
        if rank > MAX_EMULATED_RANK:
            raise ValueError(f"the first batch's curvature has rank {len(X)} × {outputs} outputs"
                             f"{f' × {blocks} groups' if blocks > 1 else ''} = {rank}, above the emulator's "
                             f"limit {MAX_EMULATED_RANK}: use a smaller batch")
        return device_url(url, self.model.n_params, rank, self._seed)

    def close(self) -> None:
        """Disconnect a device this run connected itself (one given to it stays open)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> "TorchRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def optimizer(algo: str, module: torch.nn.Module, loss: Any, device: Any = None, *, seed: int = 0,
              groups: Any = None, **hyper: Any) -> TorchRun:
    """Any ``thermohil train --algo`` algorithm (partitions included) on a torch module.

    Parameter groups (what AdLaLa, LOL and partitions split over) are the module's layers; give
    ``groups`` to choose them: a list whose entries are submodules or lists of them, or lists
    of parameter names, each covering a contiguous run of ``named_parameters``. A ``spawn://``
    URL without cells or max_rank is sized at the first batch (one cell per parameter, rank
    batch × outputs), so later batches must not be larger than the first.
    """
    return TorchRun(algo, module, loss, device, seed=seed, groups=groups, **hyper)


def groups_of(model: Any, groups: Any) -> list[ParamGroup]:
    """Groups given as submodules / parameter names → contiguous slices of θ."""
    by_id = {id(p): n for n, p in model.module.named_parameters() if p.requires_grad}
    index = {n: i for i, n in enumerate(model.names)}
    out = []
    for k, g in enumerate(groups):
        names: list[str] = []
        for item in (g if isinstance(g, (list, tuple)) else [g]):
            if isinstance(item, torch.nn.Module):
                names += [by_id[id(p)] for p in item.parameters() if id(p) in by_id]
            elif isinstance(item, str) and item in index:
                names.append(item)
            else:
                raise ValueError(f"group {k}: {item!r} is neither a submodule of the model nor one of its "
                                 f"parameter names ({', '.join(model.names[:6])}, …)")
        if not names:
            raise ValueError(f"group {k} holds no trainable parameter")
        ids = sorted(index[n] for n in set(names))
        if ids != list(range(ids[0], ids[-1] + 1)):
            raise ValueError(f"group {k} ({', '.join(names)}) is not a contiguous run of the model's "
                             "parameters in named_parameters order")
        out.append(ParamGroup(f"group{k}", slice(int(model.offsets[ids[0]]), int(model.offsets[ids[-1] + 1])), k))
    return normalise_groups(out, model.n_params)


class _NoCurvature:
    def __getattr__(self, name: str) -> Any:
        raise ValueError("this transform needs the loss's curvature, which loss.backward() does not give: "
                         "use host.torch.optimizer(algo, module, loss) instead")


class TorchOptimizer(torch.optim.Optimizer):
    """A gradient-only transform as a ``torch.optim.Optimizer``: ``step()`` reads ``.grad``."""

    def __init__(self, params: Any, transform: Transform, seed: int = 0) -> None:
        super().__init__(params, {})
        if transform.device is not None:
            raise ValueError("a device-assisted transform needs the whole step: use host.torch.optimizer")
        self.transform = transform
        theta = self._theta()
        self._n = 0
        self._state = init_of(transform, theta)
        self._rng = encode_rng(np.random.default_rng(np.random.default_rng(seed).integers(2**63)))
        self.info: dict = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _theta(self) -> np.ndarray:
        return np.concatenate([p.detach().double().reshape(-1).cpu().numpy() for p in self._params()])

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self._params()
        if any(p.grad is None for p in params):
            raise ValueError("a parameter has no gradient: call loss.backward() before step()")
        grads = np.concatenate([p.grad.detach().double().reshape(-1).cpu().numpy() for p in params])
        theta = self._theta()
        gen = decode_rng(self._rng)
        self.info = {}
        updates, self._state = self.transform.update(grads, self._state, theta, rng=gen, info=self.info,
                                                     curvature=_NoCurvature(), step=self._n)
        self._rng, self._n = encode_rng(gen), self._n + 1
        new = apply_updates(theta, updates)
        pos = 0
        for p in params:
            k = p.numel()
            p.copy_(torch.as_tensor(new[pos:pos + k]).reshape(p.shape).to(p.dtype))
            pos += k
        return loss
