"""The partitioned Langevin integrator: one gradient per step for the whole network, each
parameter group advanced by its own scheme (DESIGN §6; docs/algorithms.md, "The Langevin family").

Step n (θ_n, the momenta p, the thermostats ξ and the pending overdamped noise in the state):

1. one gradient g = ∇L_batch(θ_n) for the whole network (the loss reported is L_batch(θ_n));
2. kick phase — every momentum group: B_k, p −= k·g_group, with k = h_0/2 at n = 0 (the
   initial half kick from p = 0) and k = (h_{n−1} + h_n)/2 afterwards (= h at constant h);
3. drift phase — every group, in group order: its gradient-free sub-steps (A O A, A C D E D C A,
   or the overdamped or natural update, which use g itself; a natural group also gets its
   block of the mini-batch GGN, as the square-root factor's columns). Groups touch disjoint variables, so the order
   among groups changes only which random numbers each gets, never the distribution.

Read as one trajectory this is B_{h/2} (A O A B_h)(A O A B_h)… — the paper's per-step
A_{h/2} O_h A_{h/2} B_h with the initial half kick — with each call starting at the B_h that
the previous step's gradient-free part left pending.

State slots (ndarrays, so checkpoints keep them and ``--resume`` continues the same chain):
``p`` momenta (P), ``xi`` one thermostat per group (0 where there is none), ``noise`` the pending
R_{n+1} of overdamped groups (P; 0 elsewhere), ``rng`` the optimizer's own generator state.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from host.optim.base import Optimizer, Schedule, State, check_finite
from host.optim.langevin.partition import Partition
from host.optim.langevin.schemes import GroupState, Scheme, check_value, checked_schedule

_M64 = (1 << 64) - 1


def encode_rng(gen: np.random.Generator) -> np.ndarray:
    """A PCG64 generator's full state as 6 uint64 words (checkpointable)."""
    st = gen.bit_generator.state
    if st["bit_generator"] != "PCG64":
        raise ValueError(f"the Langevin integrators keep a PCG64 generator, got {st['bit_generator']}")
    s, inc = st["state"]["state"], st["state"]["inc"]
    return np.array([s >> 64, s & _M64, inc >> 64, inc & _M64, st["has_uint32"], st["uinteger"]],
                    dtype=np.uint64)


def decode_rng(words: np.ndarray) -> np.random.Generator:
    a = [int(w) for w in np.asarray(words, dtype=np.uint64).ravel()]
    if len(a) != 6:
        raise ValueError(f"bad generator state in the optimizer state: {len(a)} words, expected 6")
    bg = np.random.PCG64(0)
    bg.state = {"bit_generator": "PCG64", "state": {"state": (a[0] << 64) | a[1], "inc": (a[2] << 64) | a[3]},
                "has_uint32": a[4], "uinteger": a[5]}
    return np.random.Generator(bg)


@dataclass(frozen=True)
class Group:
    """One parameter group as the integrator sees it (cf. host.nn.mlp.ParamGroup)."""
    name: str
    slice: slice
    layer: int

    @property
    def size(self) -> int:
        return self.slice.stop - self.slice.start


def normalise_groups(groups: Sequence[Any] | None, n_params: int) -> list[Group]:
    """ParamGroup-likes (``.name``, ``.slice``, ``.layer``), slices or (start, stop) pairs → groups
    that tile θ exactly; None → one group holding every parameter."""
    if groups is None:
        return [Group("all", slice(0, n_params), 0)]
    out: list[Group] = []
    for i, g in enumerate(groups):
        if hasattr(g, "slice"):
            sl, name, layer = g.slice, str(getattr(g, "name", f"group{i}")), int(getattr(g, "layer", i))
        elif isinstance(g, slice):
            sl, name, layer = g, f"group{i}", i
        elif isinstance(g, (tuple, list)) and len(g) == 2:
            sl, name, layer = slice(int(g[0]), int(g[1])), f"group{i}", i
        else:
            raise ValueError(f"parameter group {i} must be a ParamGroup, a slice or a (start, stop) pair, got {g!r}")
        if sl.step not in (None, 1):
            raise ValueError(f"parameter group {name} must be a contiguous slice, got {sl}")
        start = 0 if sl.start is None else int(sl.start)
        stop = n_params if sl.stop is None else int(sl.stop)
        out.append(Group(name, slice(start, stop), layer))
    if not out:
        raise ValueError("no parameter groups given")
    pos = 0
    for g in sorted(out, key=lambda g: g.slice.start):
        if g.slice.start != pos or g.slice.stop <= g.slice.start:
            raise ValueError(f"parameter groups must tile θ (size {n_params}) without gaps or overlaps; "
                             f"group {g.name} is [{g.slice.start}, {g.slice.stop}) where [{pos}, …) was expected")
        pos = g.slice.stop
    if pos != n_params:
        raise ValueError(f"parameter groups cover [0, {pos}) but θ has {n_params} entries")
    if len({g.layer for g in out}) != len(out):
        raise ValueError("two parameter groups share a layer index")
    return out


class PartitionedLangevin(Optimizer):
    """The general partitioned integrator; the named algorithms (``host.optim.langevin.presets``)
    are presets of it.

    ``h``: step size (constant or schedule ``step -> h``, > 0). ``partition``: which layer runs
    which scheme (see ``host.optim.langevin.partition``). ``groups``: the parameter groups; by
    default ``objective.model.groups`` (one per MLP layer) at the first step, or, for an
    objective without a model, one group holding every parameter.
    """
    uses_device = False

    def __init__(self, h: float | Schedule, partition: Any, groups: Sequence[Any] | None = None,
                 name: str = "partitioned") -> None:
        self.name = name
        self.h = checked_schedule("step size h", h, 0.0, True)
        self.partition = Partition.of(partition)
        self.groups = groups
        self.partition_source: str | None = None   # how a preset built the partition (for errors)
        self._layout: list[tuple[Group, Scheme]] | None = None
        self._rng_cache: tuple[Any, np.random.Generator] | None = None

    def __repr__(self) -> str:
        return f"PartitionedLangevin(name={self.name!r}, partition={self.partition.describe()!r})"

    # ------------------------------------------------------------------ set-up
    def layout(self, n_params: int, groups: Sequence[Any] | None = None) -> list[tuple[Group, Scheme]]:
        """(group, scheme) pairs for a θ of ``n_params`` entries; raises ValueError for a partition
        that names a missing layer or leaves a layer without a scheme."""
        gs = normalise_groups(self.groups if self.groups is not None else groups, n_params)
        if self._layout is None or [g for g, _ in self._layout] != gs:
            try:
                schemes = self.partition.assign([g.layer for g in gs], where=f"{self.name}: ")
            except ValueError as e:
                if self.partition_source is None:
                    raise
                raise ValueError(f"{e} (from {self.partition_source})") from None
            self._layout = list(zip(gs, schemes))
        return self._layout

    def check_model(self, model: Any) -> None:
        """Refuse, before any training, a partition that does not fit ``model``'s layers."""
        self.layout(model.n_params, getattr(model, "groups", None))

    def init(self, theta: np.ndarray, rng: np.random.Generator) -> State:
        state = super().init(theta, rng)
        gen = np.random.default_rng(int(rng.integers(2**63)))   # own stream, reproducible from the seed
        state.slots["p"] = np.zeros_like(state.theta)
        state.slots["rng"] = encode_rng(gen)
        if self.groups is not None:
            self._start(state, self.layout(state.theta.size))
        return state

    def _generator(self, state: State) -> np.random.Generator:
        words = state.slots["rng"]
        if self._rng_cache is None or self._rng_cache[0] is not words:
            self._rng_cache = (words, decode_rng(words))
        return self._rng_cache[1]

    def _start(self, state: State, layout: list[tuple[Group, Scheme]]) -> None:
        """Per-group slots (ξ, pending noise), once; checked against the layout when present
        (a resumed state brings its own)."""
        P, n_groups = state.theta.size, len(layout)
        if "xi" in state.slots and "noise" in state.slots:
            if state.slots["xi"].shape != (n_groups,) or state.slots["noise"].shape != (P,) \
                    or state.slots["p"].shape != (P,):
                raise ValueError(f"{self.name}: the optimizer state does not match the model "
                                 f"({n_groups} groups, {P} parameters)")
            return
        state.slots["xi"] = np.zeros(n_groups)
        state.slots["noise"] = np.zeros(P)
        gen = self._generator(state)
        for i, (g, scheme) in enumerate(layout):
            scheme.start(self._view(g, i, state.theta, state.slots), gen)
        state.slots["rng"] = encode_rng(gen)
        self._rng_cache = (state.slots["rng"], gen)

    @staticmethod
    def _view(g: Group, i: int, theta: np.ndarray, arrays: dict) -> GroupState:
        sl = g.slice
        return GroupState(g.name, i, theta[sl], arrays["p"][sl], arrays["noise"][sl], arrays["xi"][i:i + 1])

    # ------------------------------------------------------------------ one step
    def step(self, state: State, X: np.ndarray, y: np.ndarray, objective: Any) -> tuple[State, dict]:
        n = state.step
        model_groups = getattr(getattr(objective, "model", None), "groups", None)
        layout = self.layout(state.theta.size, model_groups)
        self._start(state, layout)
        h = check_value("step size h", self.h(n), 0.0, True, f" (step {n})")
        h_prev = check_value("step size h", self.h(n - 1), 0.0, True, f" (step {n - 1})") if n else 0.0

        loss, grad = objective.value_and_grad(state.theta, X, y)
        check_finite("gradient", grad, n)

        gen = self._generator(state)
        self._rng_cache = None       # re-read from the state if this step fails half-way
        theta = state.theta.copy()
        work = {k: state.slots[k].copy() for k in ("p", "xi", "noise")}
        views = [(self._view(g, i, theta, work), g, scheme) for i, (g, scheme) in enumerate(layout)]
        if any(scheme.needs_curvature for _, scheme in layout):   # natural groups: GGN blocks
            if not hasattr(objective, "ggn_sqrt"):
                raise ValueError(f"{self.name}: a natural group needs the GGN of the loss; the objective "
                                 f"{type(objective).__name__} has no ggn_sqrt")
            U = objective.ggn_sqrt(state.theta, X, y)
            for v, g, scheme in views:
                if scheme.needs_curvature:
                    v.curvature = U[:, g.slice]
        kick = 0.5 * (h_prev + h)
        for v, g, scheme in views:                       # kick phase: the one gradient
            scheme.kick(v, grad[g.slice], kick)
        info: dict[str, float] = {"batch_loss": float(loss)}
        info.update(self._drift_phase(views, grad, h, n, gen))   # drift phase: no gradient needed
        check_finite("momenta", work["p"], n)
        check_finite("thermostats", work["xi"], n)
        check_finite("parameters", theta, n)

        state.theta = theta
        state.slots.update(work)
        state.slots["rng"] = encode_rng(gen)
        self._rng_cache = (state.slots["rng"], gen)
        state.step = n + 1
        return state, info

    def _drift_phase(self, views: list[tuple[GroupState, Group, Scheme]], grad: np.ndarray, h: float,
                     n: int, gen: np.random.Generator) -> dict[str, float]:
        """Every group's gradient-free sub-steps, in group order; per-group ``info`` entries.
        The device variant (``host.optim.langevin.device``) overrides this to batch the O-steps
        of all groups into one device packet."""
        info: dict[str, float] = {}
        for v, g, scheme in views:
            for key, value in scheme.drift(v, grad[g.slice], h, n, gen).items():
                info[f"{g.name}.{key}"] = value
        return info
