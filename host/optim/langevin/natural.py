"""Thermodynamic natural Langevin (DESIGN §6, "Beyond both seeds"; docs/algorithms.md).

The TNGD circuit at finite temperature. Overdamped cells with coupling F = G + λI (G the GGN of
the mini-batch, uploaded low-rank as J, H; λ in the DIAG memory) and bias ∇ℓ relax to

    x ~ N(F⁻¹∇ℓ, κ F⁻¹),

and one such sample gives the step θ' = θ − h x: drift −h F⁻¹∇ℓ (the natural-gradient step) and
noise of covariance h²κ F⁻¹ = 2τh F⁻¹ when κ = 2τ/h — a Langevin step preconditioned by F at
temperature τ (F's dependence on θ neglected, as in most Riemannian SGLD approximations). Drift
and noise come from one physical sample; the host only draws the curvature and reads one state.

Each iteration is TNGD's ONE packet (this class only sets κ; TNGDDirection writes κ/s² when s
or κ changes): the low-rank curvature, the bias ∇ℓ/s, COMMIT, RESET_STATE (``init="zero"``, the default: each
sample independent of the last), RUN t, WAIT, read the instantaneous state. t should be several
times the slowest relaxation time 1/λ_min(F) (at most 1/λ): after a run t from x = 0 the state is
exactly N((I − e^{−Ft}) F⁻¹∇ℓ, κ (I − e^{−2Ft}) F⁻¹), so a mode of F of eigenvalue f moves (1 − e^{−ft}) of
its natural-gradient step and runs at temperature τ (1 + e^{−ft}) (docs/algorithms.md).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from host.optim.base import Schedule, as_schedule
from host.optim.composed import Composed
from host.optim.langevin.device import sample_scale
from host.optim.langevin.schemes import check_value, checked_schedule
from host.optim.rules import SGDRule
from host.optim.tngd import TNGDDirection



class NaturalLangevinDirection(TNGDDirection):
    """d = s·x with x one equilibrium sample of the device at temperature κ/s², κ = 2τ/h; the
    update rule θ ← θ − h d (SGD with step h) makes it a preconditioned Langevin step.
    Reuses TNGDDirection's curvature upload, scaling and saturation retries."""
    name = "natural-langevin"
    INITS = ("zero", "warm")

    def __init__(self, device: Any, h: float | Schedule, tau: float | Schedule, lam: float = 0.1,
                 t: float = 50.0, init: str = "zero", form: str = "lowrank",
                 stability: float | None = 0.1, headroom: float = 0.5) -> None:
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
        super().__init__(device, lam=lam, t=t, t_delay=0.0, kappa=0.0, readout="state", form=form,
                         init=init, stability=stability, headroom=headroom)
        self.h = checked_schedule("step size h", h, 0.0, True)
        self.tau = checked_schedule("temperature τ", tau, 0.0, False)
        self._step_h, self._step_tau = 1.0, 0.0

    def __call__(self, state: Any, X: np.ndarray, y: np.ndarray, objective: Any, grad: np.ndarray) -> np.ndarray:
        n = state.step
        self._step_h = check_value("step size h", self.h(n), 0.0, True, f" (step {n})")
        self._step_tau = check_value("temperature τ", self.tau(n), 0.0, False, f" (step {n})")
        self.kappa = self.kappa_physical  # TNGD writes κ/s² into TEMPERATURE when it changes
        d = super().__call__(state, X, y, objective, grad)
        self.info["kappa"] = self.kappa_physical
        self.info["temperature"] = self.kappa_physical / self.scale**2
        return d

    @property
    def kappa_physical(self) -> float:
        """κ = 2τ/h in the units of the direction (before the signal scale)."""
        return 2.0 * self._step_tau / self._step_h

    def _choose_scale(self, grad: np.ndarray) -> float:
        need = sample_scale(grad, self.kappa_physical, self.lam, self.headroom * self.dev.vmax)
        if self.scale is None or need > self.scale or need < self.scale / 64:
            return need
        return self.scale


def natural_langevin(device: Any, h: float | Schedule = 0.05, tau: float | Schedule = 1e-4, lam: float = 0.1,
                     t: float = 50.0, init: str = "zero", form: str = "lowrank",
                     stability: float | None = 0.1) -> Composed:
    """θ ← θ − h·x, x one device sample of N(F⁻¹∇ℓ, (2τ/h) F⁻¹), F = G + λI."""
    direction = NaturalLangevinDirection(device, h, tau, lam, t, init, form, stability)
    return Composed("natural-langevin", direction, SGDRule(as_schedule(h)), uses_device=True)


__all__ = ["NaturalLangevinDirection", "natural_langevin"]
