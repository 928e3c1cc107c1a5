"""Thermodynamic natural Langevin: the TNGD circuit at finite temperature.

Overdamped cells with coupling F = G + λI (G the mini-batch GGN, uploaded low-rank as U with
G = UᵀU; λ in the DIAG memory) and bias ∇ℓ relax to

    x ~ N(F⁻¹∇ℓ, κ F⁻¹),

and one such sample gives the step θ' = θ − h x: drift −h F⁻¹∇ℓ (the natural-gradient step) and
noise of covariance h²κ F⁻¹ = 2τh F⁻¹ when κ = 2τ/h — a Langevin step preconditioned by F at
temperature τ (F's dependence on θ neglected, as in most Riemannian SGLD approximations). Drift
and noise come from one physical sample; the host only draws the curvature and reads one state.
Without a device the sample is drawn exactly (push-through identity, O(r²n)).

t should be several times the slowest relaxation time 1/λ_min(F) (at most 1/λ): after a run t
from x = 0 the state is exactly N((I − e^{−Ft}) F⁻¹∇ℓ, κ (I − e^{−2Ft}) F⁻¹), so a mode of F of
eigenvalue f moves (1 − e^{−ft}) of its natural-gradient step and runs at temperature
τ (1 + e^{−ft}).
"""
from __future__ import annotations

import time
from typing import Any, Generator

import numpy as np

from host.optim.backend.requests import Relax
from host.optim.backend.scaling import check_device_settings, hysteresis, sample_scale
from host.optim.backend.drift import DRIFT_TOLERANCE, watch, watch_init
from host.optim.backend.packet import backend_for
from host.optim.checks import at, check_choice, check_count, check_value, checked_schedule
from host.optim.schedules import Schedule
from host.optim.splitting import natural_sample
from host.optim.tngd import uploaded_curvature
from host.optim.transform import Transform, with_device


def natural_langevin(h: float | Schedule = 0.05, tau: float | Schedule = 1e-4, lam: float = 0.1,
                     t: float = 50.0, init: str = "zero", form: str = "lowrank", device: Any = None,
                     stability: float | None = 0.1, drift_check: int = 8, headroom: float = 0.5) -> Transform:
    """Natural Langevin, one sample per step:

        θ ← θ − h x,   x ~ N(F⁻¹∇ℓ, (2τ/h) F⁻¹),   F = G + λI

    Args:
        h: step size h: θ ← θ − h·x
        tau: temperature τ (device temperature κ = 2τ/h)
        lam: damping λ of F = G + λI
        t: analog time per step (τ0): several times 1/λ_min(F) to decorrelate
        init: device state at each step: 'zero' (independent samples) or 'warm'
        form: curvature upload: 'lowrank' (J, H, λ) or 'dense' (G + λI)
        stability: emulator fidelity: substep = stability / stiffness bound
        drift_check: steps between the device's drift checks (as TNGD's; 0 = never)
    """
    h_of = checked_schedule("step size h", h, 0.0, True)
    tau_of = checked_schedule("temperature τ", tau, 0.0, False)
    lam = check_value("natural damping λ", lam, 0.0, True)
    t = check_value("t (the sample's run time)", t, 0.0, True)
    check_choice("init", init, ("zero", "warm"))
    check_choice("form", form, ("lowrank", "dense"))
    check_device_settings(stability, headroom)
    check_count("drift_check", drift_check)

    def init_state(params: np.ndarray) -> dict:
        return {"count": 0, "scale": 0.0, "last": np.zeros(np.size(params)), "warm": 0,
                **watch_init(drift_check)}

    def steps(grad: np.ndarray, state: dict, params: Any, *, curvature: Any, rng: np.random.Generator,
              info: dict | None = None, **extra: Any) -> Generator:
        n = state["count"]
        hn = at("step size h", h_of, n, 0.0, True)
        kappa = 2.0 * at("temperature τ", tau_of, n, 0.0, False) / hn      # so that h²κ = 2τh
        scale = kept = 0.0
        watched: dict = {}
        if device is None:
            x = natural_sample(curvature.sqrt(), lam, grad, kappa, rng)
        else:
            t0 = time.perf_counter()
            coupling = uploaded_curvature(curvature, lam, form)
            digital = time.perf_counter() - t0
            watched = watch(backend_for(device), state, drift_check,
                            DRIFT_TOLERANCE * lam * headroom * device.vmax)
            s = hysteresis(sample_scale(grad, kappa, lam, headroom * device.vmax), state["scale"] or None, 64)
            (res,) = yield [Relax(slice(0, grad.size), grad, lam, **coupling, kappa=kappa, t=t, start=init,
                                  initial=state["last"] if state["warm"] else None, scale=s,
                                  stability=stability)]
            x, scale, kept = res.value, res.scale, res.kept
            if info is not None:
                info.update(scale=scale, temperature=kappa / scale**2, curvature_time_s=digital,
                            rank=0 if form == "dense" else coupling["J"].shape[0])
        if info is not None:
            info["kappa"] = kappa
        return -(hn * x), {**state, **watched, "count": n + 1, "scale": kept, "last": x, "warm": 1}

    return with_device(init_state, steps, device)


natural_langevin.device_only = ("t", "init", "form", "drift_check")   # the digital sample is exact
