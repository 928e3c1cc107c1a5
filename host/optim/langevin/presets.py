"""The named algorithms of the Langevin family: presets of ``PartitionedLangevin``.

Defaults are the authors' spiral settings for AdLaLa (Leimkuhler, Matthews & Vlaar 2019; DESIGN
§6): h = 0.25, τ = 1e-4, γ = 0.1, σ_A = 0.01, ε = 0.05, ξ0 = 1e-3; the other presets share them so
that a comparison changes the scheme and nothing else. ``split`` (AdLaLa, LOL) is how many
leading layers run the first scheme (the paper: 1, the input layer).
"""
from __future__ import annotations

from typing import Any, Sequence

from host.optim.base import Schedule
from host.optim.langevin.integrator import PartitionedLangevin
from host.optim.langevin.partition import REST, Partition
from host.optim.langevin.schemes import AdLScheme, LangevinScheme, OverdampedScheme

H, TAU, GAMMA, SIGMA_A, EPS, XI0 = 0.25, 1e-4, 0.1, 0.01, 0.05, 1e-3


def _named(opt: PartitionedLangevin, source: str) -> PartitionedLangevin:
    """Say where a preset's partition comes from, for the error when it does not fit the model."""
    opt.partition_source = source
    return opt


def _split(split: int, first: Any, rest: Any, name: str) -> Partition:
    split = int(split)
    if split < 1:
        raise ValueError(f"{name}: split must be >= 1 (the number of leading layers running the first "
                         f"scheme), got {split}")
    return Partition([(tuple(range(split)), first), (None, rest)])


def langevin(h: float | Schedule = H, gamma: float = GAMMA, tau: float | Schedule = TAU,
             groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """Underdamped Langevin (BAOAB) on every parameter."""
    return PartitionedLangevin(h, LangevinScheme(gamma, tau), groups, name="langevin")


def overdamped(h: float | Schedule = H, tau: float | Schedule = TAU,
               groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """Overdamped Langevin (the BAOAB limit) on every parameter."""
    return PartitionedLangevin(h, OverdampedScheme(tau), groups, name="overdamped")


def adl(h: float | Schedule = H, tau: float | Schedule = TAU, sigma_a: float = SIGMA_A, eps: float = EPS,
        xi0: float = XI0, groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """Adaptive Langevin on every group, one thermostat per group (per layer for an MLP)."""
    return PartitionedLangevin(h, AdLScheme(tau, sigma_a, eps, xi0), groups, name="adl")


def adlala(h: float | Schedule = H, tau1: float | Schedule = TAU, tau2: float | Schedule = TAU,
           gamma: float = GAMMA, sigma_a: float = SIGMA_A, eps: float = EPS, xi0: float = XI0,
           split: int = 1, groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """AdL (τ1, σ_A, ε, ξ0) on the first ``split`` layers, one thermostat per layer; Langevin
    (γ, τ2) on the others."""
    part = _split(split, AdLScheme(tau1, sigma_a, eps, xi0), LangevinScheme(gamma, tau2), "adlala")
    return _named(PartitionedLangevin(h, part, groups, name="adlala"), f"--split {split}: the first {split} "
                  "layer(s) run AdL")


def lol(h: float | Schedule = H, tau1: float | Schedule = TAU, tau2: float | Schedule = TAU,
        gamma: float = GAMMA, split: int = 1, groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """Langevin (γ, τ1) on the first ``split`` layers, overdamped Langevin (τ2) on the others."""
    part = _split(split, LangevinScheme(gamma, tau1), OverdampedScheme(tau2), "lol")
    return _named(PartitionedLangevin(h, part, groups, name="lol"), f"--split {split}: the first {split} "
                  "layer(s) run Langevin")


def _values(name: str, value: Any) -> list[Any]:
    if isinstance(value, str):
        items = [v for v in value.replace(";", ",").split(",") if v.strip()]
        try:
            out = [float(v) for v in items]
        except ValueError:
            raise ValueError(f"lala: {name} takes comma-separated numbers, one per layer (or one for "
                             f"all), got {value!r}") from None
    elif isinstance(value, (int, float)) or callable(value):
        out = [value if callable(value) else float(value)]
    else:
        out = [v if callable(v) else float(v) for v in value]
    if not out:
        raise ValueError(f"lala: {name} is empty")
    return out


def lala(h: float | Schedule = H, gammas: str | float | Sequence[float] = GAMMA,
         taus: str | float | Sequence[float] = TAU, groups: Sequence[Any] | None = None) -> PartitionedLangevin:
    """Langevin on every layer with its own (γ_i, τ_i): ``gammas``/``taus`` give one value per
    layer (comma-separated string or sequence; a τ_i may be a schedule), or one value for every
    layer."""
    g, t = _values("gammas", gammas), _values("taus", taus)
    if len(g) > 1 and len(t) > 1 and len(g) != len(t):
        raise ValueError(f"lala: {len(g)} values of gammas but {len(t)} of taus; give one per layer, "
                         "or one for all")
    k = max(len(g), len(t))
    g, t = (g * k if len(g) == 1 else g), (t * k if len(t) == 1 else t)
    if k == 1:
        part = Partition([(None, LangevinScheme(g[0], t[0]))])
    else:
        part = Partition([((i,), LangevinScheme(g[i], t[i])) for i in range(k)])
    return _named(PartitionedLangevin(h, part, groups, name="lala"),
                  f"--gammas/--taus: {k} per-layer values, one per layer")


def partitioned(h: float | Schedule = H, partition: Any = "0:adl, *:langevin", tau: float = TAU,
                gamma: float = GAMMA, sigma_a: float = SIGMA_A, eps: float = EPS, xi0: float = XI0,
                groups: Sequence[Any] | None = None, lam: float = 0.1) -> PartitionedLangevin:
    """Any partition (see ``host.optim.langevin.partition``); the shared values apply to every
    scheme that takes them unless an entry sets its own, e.g. '0:adl(tau=1e-3), *:langevin'
    or '0:natural(lam=1), *:langevin'."""
    defaults = {"tau": tau, "gamma": gamma, "sigma_a": sigma_a, "eps": eps, "xi0": xi0, "lam": lam}
    return PartitionedLangevin(h, Partition.of(partition, defaults), groups, name="partitioned")


__all__ = ["langevin", "overdamped", "adl", "adlala", "lol", "lala", "partitioned", "REST"]
