"""Per-group integration schemes: what one parameter group does in one step of the partitioned
integrator (DESIGN §6). A scheme owns no arrays: it updates views of its group's slice of the
integrator's flat arrays (θ, p, the pending overdamped noise) and its group's thermostat ξ.

Every step of the integrator is, for every group, ``kick`` (the B sub-step, fed the one
gradient of the step) followed by ``drift`` (everything that needs no gradient):

============  ==========================  ==============================================
scheme        kick                        drift
============  ==========================  ==============================================
langevin      B: p −= k·g                 A_{h/2} O_h A_{h/2}
adl           B: p −= k·g                 A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}
overdamped    (none)                      θ −= (h²/2) g − (h/2)√τ (R_n + R_{n+1})
natural       (none)                      θ −= h x,  x ~ N(F⁻¹g, (2τ/h) F⁻¹), F = G_gg + λI
============  ==========================  ==============================================

with k = h/2 at the very first step (the initial half kick from p = 0) and (h_{n−1} + h_n)/2
afterwards (= h at constant h: two merged half kicks of consecutive BAOAB steps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from host.optim.base import Schedule, as_schedule
from host.optim.langevin.steps import (drift_A, friction_C, kick_B, natural_sample, noise_D, ou_O,
                                       thermostat_E)


@dataclass
class GroupState:
    """Views into the integrator's working arrays for one group (writes go through)."""
    name: str
    index: int             # position in the group list = index into the ξ array
    theta: np.ndarray      # θ[slice]
    p: np.ndarray          # p[slice] (unused by overdamped groups; stays 0)
    noise: np.ndarray      # pending R_{n+1}[slice] of an overdamped group (0 elsewhere)
    xi: np.ndarray         # ξ[index:index+1] (0 for groups without a thermostat)
    curvature: np.ndarray | None = None   # U_g (r × n): the group's columns of the GGN square root
                                          # (set each step for schemes with ``needs_curvature``)

    @property
    def n(self) -> int:
        return self.theta.size


def check_value(name: str, value: float, minimum: float, strict: bool, where: str = "") -> float:
    """``value`` as a float, or ValueError if it is not finite and ≥ (or > if strict) minimum."""
    v = float(value)
    ok = math.isfinite(v) and (v > minimum if strict else v >= minimum)
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {rel} {minimum:g}{where}, got {value!r}")
    return v


def checked_schedule(name: str, value: float | Schedule, minimum: float, strict: bool) -> Schedule:
    """A schedule; a constant is checked now, a callable at every step it is used."""
    if not callable(value):
        check_value(name, value, minimum, strict)
    return as_schedule(value)


class Scheme:
    """Base class. Subclasses set ``name``, ``momentum`` and ``params`` (constructor names)."""
    name: ClassVar[str] = "scheme"
    momentum: ClassVar[bool] = True
    params: ClassVar[tuple[str, ...]] = ()
    needs_curvature: ClassVar[bool] = False     # the integrator then sets GroupState.curvature

    def start(self, g: GroupState, rng: np.random.Generator) -> None:
        """Initial per-group values, set once when the groups become known (p is already 0)."""

    def kick(self, g: GroupState, grad: np.ndarray, dt: float) -> None:
        kick_B(g.p, grad, dt)

    def drift(self, g: GroupState, grad: np.ndarray, h: float, step: int,
              rng: np.random.Generator) -> dict[str, float]:
        """The gradient-free sub-steps; returns per-group scalars for ``info``."""
        raise NotImplementedError

    def tau(self, step: int) -> float:
        return check_value("temperature τ", self._tau(step), 0.0, False, f" (step {step})")

    def describe(self) -> str:
        vals = ", ".join(f"{k}={self.settings[k]!r}" for k in self.params)
        return f"{self.name}({vals})"

    __repr__ = describe


class LangevinScheme(Scheme):
    """Underdamped Langevin, BAOAB: per step B (merged) then A_{h/2} O_h A_{h/2}."""
    name = "langevin"
    params = ("gamma", "tau")

    def __init__(self, gamma: float = 0.1, tau: float | Schedule = 1e-4) -> None:
        self.gamma = check_value("friction γ", gamma, 0.0, False)
        self._tau = checked_schedule("temperature τ", tau, 0.0, False)
        self.settings = {"gamma": gamma, "tau": tau}

    def o_step(self, g: GroupState, h: float, step: int, rng: np.random.Generator) -> None:
        """O_h — the sub-step a device variant performs with its cells' own friction and noise."""
        ou_O(g.p, self.gamma, self.tau(step), h, rng)

    def drift(self, g: GroupState, grad: np.ndarray, h: float, step: int,
              rng: np.random.Generator) -> dict[str, float]:
        drift_A(g.theta, g.p, 0.5 * h)
        self.o_step(g, h, step, rng)
        drift_A(g.theta, g.p, 0.5 * h)
        return {"kinetic_temperature": float(g.p @ g.p) / g.n}


class OverdampedScheme(Scheme):
    """The γ → ∞ limit of BAOAB (Leimkuhler–Matthews' "BAOAB limit"):
    θ_{n+1} = θ_n − (h²/2) ∇L(θ_n) + (h/2) √τ (R_n + R_{n+1}); R_{n+1} is kept for the next step."""
    name = "overdamped"
    momentum = False
    params = ("tau",)

    def __init__(self, tau: float | Schedule = 1e-4) -> None:
        self._tau = checked_schedule("temperature τ", tau, 0.0, False)
        self.settings = {"tau": tau}

    def start(self, g: GroupState, rng: np.random.Generator) -> None:
        g.noise[:] = rng.standard_normal(g.n)          # R_0

    def kick(self, g: GroupState, grad: np.ndarray, dt: float) -> None:
        pass                                            # no momentum: the gradient enters in drift

    def drift(self, g: GroupState, grad: np.ndarray, h: float, step: int,
              rng: np.random.Generator) -> dict[str, float]:
        r_next = rng.standard_normal(g.n)
        g.theta -= (0.5 * h * h) * grad
        g.theta += (0.5 * h * math.sqrt(self.tau(step))) * (g.noise + r_next)
        g.noise[:] = r_next
        return {}


class AdLScheme(Scheme):
    """Adaptive Langevin (Nosé–Hoover–Langevin), one thermostat ξ for the group:
    per step B (merged) then A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}."""
    name = "adl"
    params = ("tau", "sigma_a", "eps", "xi0")

    def __init__(self, tau: float | Schedule = 1e-4, sigma_a: float = 0.01, eps: float = 0.05,
                 xi0: float = 1e-3) -> None:
        self._tau = checked_schedule("temperature τ", tau, 0.0, False)
        self.sigma_a = check_value("AdL noise σ_A", sigma_a, 0.0, False)
        self.eps = check_value("AdL thermostat coupling ε", eps, 0.0, False)
        self.xi0 = check_value("initial thermostat ξ0", xi0, -math.inf, True)
        self.settings = {"tau": tau, "sigma_a": sigma_a, "eps": eps, "xi0": xi0}

    def start(self, g: GroupState, rng: np.random.Generator) -> None:
        g.xi[0] = self.xi0

    def thermostat(self, g: GroupState, h: float, step: int, rng: np.random.Generator) -> float:
        """C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2}; returns pᵀp as the thermostat saw it (at E)."""
        friction_C(g.p, g.xi[0], 0.5 * h)
        noise_D(g.p, self.sigma_a, 0.5 * h, rng)
        pp = float(g.p @ g.p)
        g.xi[0] = thermostat_E(g.xi[0], pp, g.n, self.tau(step), self.eps, h)
        noise_D(g.p, self.sigma_a, 0.5 * h, rng)
        friction_C(g.p, g.xi[0], 0.5 * h)
        return pp

    def drift(self, g: GroupState, grad: np.ndarray, h: float, step: int,
              rng: np.random.Generator) -> dict[str, float]:
        drift_A(g.theta, g.p, 0.5 * h)
        pp = self.thermostat(g, h, step, rng)
        drift_A(g.theta, g.p, 0.5 * h)
        return {"kinetic_temperature": pp / g.n, "xi": float(g.xi[0])}


class NaturalScheme(Scheme):
    """Thermodynamic natural Langevin on one group (DESIGN §6 "Beyond both seeds"): θ ← θ − h x,
    x ~ N(F⁻¹g, κF⁻¹), κ = 2τ/h, F = G_gg + λI with G_gg the group's diagonal block of the
    mini-batch GGN — a Langevin step preconditioned by F at temperature τ. The digital scheme
    draws x exactly; the device variant lets overdamped cells with coupling F and bias g relax
    for a run of t and reads one state."""
    name = "natural"
    momentum = False
    params = ("tau", "lam")
    needs_curvature = True

    def __init__(self, tau: float | Schedule = 1e-4, lam: float = 0.1) -> None:
        self._tau = checked_schedule("temperature τ", tau, 0.0, False)
        self.lam = check_value("natural damping λ", lam, 0.0, True)
        self.settings = {"tau": tau, "lam": lam}

    def kick(self, g: GroupState, grad: np.ndarray, dt: float) -> None:
        pass                                            # no momentum: the gradient enters in drift

    def kappa(self, h: float, step: int) -> float:
        """The sample's temperature 2τ/h (so that h²κ = 2τh)."""
        return 2.0 * self.tau(step) / h

    def drift(self, g: GroupState, grad: np.ndarray, h: float, step: int,
              rng: np.random.Generator) -> dict[str, float]:
        if g.curvature is None:
            raise RuntimeError("natural scheme: the integrator did not provide the group's curvature")
        x = natural_sample(g.curvature, self.lam, grad, self.kappa(h, step), rng)
        g.theta -= h * x
        return {}


SCHEMES: dict[str, type[Scheme]] = {s.name: s for s in (LangevinScheme, OverdampedScheme, AdLScheme,
                                                        NaturalScheme)}


def make_scheme(name: str, defaults: dict[str, Any] | None = None, **params: Any) -> Scheme:
    """A scheme by name. ``defaults`` are shared values, each used only by the schemes that take
    it; ``params`` are this scheme's own and must all be among its parameters."""
    cls = SCHEMES.get(str(name).strip().lower())
    if cls is None:
        raise ValueError(f"unknown scheme {name!r} in the partition; known schemes: {', '.join(SCHEMES)}")
    wrong = sorted(k for k in params if k not in cls.params)
    if wrong:
        raise ValueError(f"scheme {cls.name!r} takes no parameter(s) {', '.join(wrong)}; "
                         f"it takes: {', '.join(cls.params)}")
    kwargs = {k: v for k, v in (defaults or {}).items() if k in cls.params and v is not None}
    kwargs.update(params)
    return cls(**kwargs)
