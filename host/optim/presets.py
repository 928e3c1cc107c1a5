"""The named partitions of the seed paper (Leimkuhler, Matthews & Vlaar 2019): AdLaLa, LOL and
LaLa, and ``every_layer``. Their defaults are the underlying transforms' own (the authors'
spiral settings: h = 0.25, τ = 1e-4, γ = 0.1, σ_A = 0.01, ε = 0.05, ξ0 = 1e-3), read from those
signatures, so a comparison changes the scheme and nothing else. ``split`` (AdLaLa, LOL) is how
many leading layers run the first scheme (the paper: 1, the input layer).
"""
from __future__ import annotations

from typing import Any, Sequence

from host.optim.adaptive_langevin import adl
from host.optim.langevin import langevin
from host.optim.overdamped import overdamped
from host.optim.partition import REST, partition
from host.optim.schedules import Schedule
from host.optim.signature import default
from host.optim.transform import Transform


def every_layer(transform: Transform) -> Transform:
    """The transform on every parameter group separately (one state each)."""
    return partition({REST: transform}, {REST: REST})


def _leading(split: int, name: str) -> tuple[int, ...]:
    if int(split) < 1:
        raise ValueError(f"{name}: split must be >= 1 (the number of leading layers running the first "
                         f"scheme), got {split}")
    return tuple(range(int(split)))


def adlala(h: float | Schedule = default(adl, "h"), tau1: float | Schedule = default(adl, "tau"),
           tau2: float | Schedule = default(langevin, "tau"), gamma: float = default(langevin, "gamma"),
           sigma_a: float = default(adl, "sigma_a"), eps: float = default(adl, "eps"),
           xi0: float = default(adl, "xi0"), split: int = 1, device: Any = None,
           stability: float | None = default(langevin, "stability")) -> Transform:
    """AdLaLa: Adaptive Langevin on the first layer(s), one thermostat per layer; Langevin on the rest

    Args:
        h: step size h (the same for every layer)
        tau1: temperature τ1 of the AdL layer(s)
        tau2: temperature τ2 of the Langevin layers
        gamma: friction γ
        sigma_a: AdL noise σ_A
        eps: AdL thermostat coupling ε
        xi0: initial thermostat ξ0
        split: how many leading layers run the first scheme (paper: 1)
        stability: emulator fidelity: substep = stability / largest friction
    """
    first = adl(h, tau1, sigma_a, eps, xi0, device, stability)
    return partition({"adl": first, "langevin": langevin(h, gamma, tau2, device, stability)},
                     {_leading(split, "adlala"): "adl", REST: "langevin"},
                     f"--split {split}: the first {split} layer(s) run AdL")


def lol(h: float | Schedule = default(langevin, "h"), tau1: float | Schedule = default(langevin, "tau"),
        tau2: float | Schedule = default(overdamped, "tau"), gamma: float = default(langevin, "gamma"),
        split: int = 1, device: Any = None, stability: float | None = default(langevin, "stability")) -> Transform:
    """LOL: Langevin on the first layer(s), overdamped Langevin on the rest

    Args:
        h: step size h (the same for every layer)
        tau1: temperature τ1 of the Langevin layer(s)
        tau2: temperature τ2 of the overdamped layers
        gamma: friction γ
        split: how many leading layers run the first scheme (paper: 1)
        stability: emulator fidelity: substep = stability / largest friction
    """
    return partition({"langevin": langevin(h, gamma, tau1, device, stability), "overdamped": overdamped(h, tau2)},
                     {_leading(split, "lol"): "langevin", REST: "overdamped"},
                     f"--split {split}: the first {split} layer(s) run Langevin")


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


def lala(h: float | Schedule = default(langevin, "h"), gammas: str | float | Sequence[float] = str(default(langevin, "gamma")),
         taus: str | float | Sequence[float] = str(default(langevin, "tau")), device: Any = None,
         stability: float | None = default(langevin, "stability")) -> Transform:
    """LaLa: Langevin on every layer with its own γ_i, τ_i

    Args:
        h: step size h (the same for every layer)
        gammas: per-layer frictions γ_i, comma-separated (one value: all)
        taus: per-layer temperatures τ_i, comma-separated (one value: all)
        stability: emulator fidelity: substep = stability / largest friction
    """
    g, t = _values("gammas", gammas), _values("taus", taus)
    if len(g) > 1 and len(t) > 1 and len(g) != len(t):
        raise ValueError(f"lala: {len(g)} values of gammas but {len(t)} of taus; give one per layer, "
                         "or one for all")
    k = max(len(g), len(t))
    g, t = (g * k if len(g) == 1 else g), (t * k if len(t) == 1 else t)
    if k == 1:
        return every_layer(langevin(h, g[0], t[0], device, stability))
    return partition({i: langevin(h, g[i], t[i], device, stability) for i in range(k)},
                     {i: i for i in range(k)}, f"--gammas/--taus: {k} per-layer values, one per layer")
