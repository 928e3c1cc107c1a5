"""Underdamped Langevin dynamics, BAOAB (Leimkuhler & Matthews), on one parameter group.

Per step, after the kick B_k with the step's one gradient (k = h/2 at the first step, then the
two merged half kicks of consecutive steps): A_{h/2} O_h A_{h/2}, with the exact
Ornstein–Uhlenbeck step

    O_h: p ← e^{−γh} p + sqrt((1 − e^{−2γh}) τ) R.

BAOAB samples a harmonic potential's configurations at temperature τ with no discretisation
bias at any stable h. Given a device, O_h is done by the group's cells: underdamped, uncoupled,
friction Γ = γ and temperature τ, so their loop current obeys dv = −γv dt + sqrt(2τγ) dW — the
O-step itself, exactly (the emulator, by its integrator). The host writes p/s into the
VELOCITY window (s a power of two keeping it inside the rails) and reads v back.
"""
from __future__ import annotations

import math
from typing import Any, Generator

import numpy as np

from host.optim.backend.requests import Oscillate
from host.optim.backend.scaling import check_device_settings, momentum_scale
from host.optim.checks import at, check_finite, check_value, checked_schedule
from host.optim.schedules import Schedule
from host.optim.splitting import exact_ou, kick_sizes, ou_O
from host.optim.transform import Transform, with_device


def langevin(h: float | Schedule = 0.25, gamma: float = 0.1, tau: float | Schedule = 1e-4, device: Any = None,
             stability: float | None = 0.002, headroom: float = 0.5) -> Transform:
    """Langevin (BAOAB):

        p ← p − k ∇ℓ,  θ ← θ + (h/2) p,  p ← e^{−γh} p + √((1 − e^{−2γh}) τ) R,  θ ← θ + (h/2) p

    Args:
        h: step size h
        gamma: friction γ
        tau: temperature τ
        stability: emulator fidelity: substep = stability / largest friction (EM bias of the
            O-step ≈ stability/2)
    """
    h_of = checked_schedule("step size h", h, 0.0, True)
    gamma = check_value("friction γ", gamma, 0.0, False)
    tau_of = checked_schedule("temperature τ", tau, 0.0, False)
    check_device_settings(stability, headroom)

    def init(params: np.ndarray) -> dict:
        return {"count": 0, "p": np.zeros(np.size(params)), "scale": 0.0}

    def steps(grad: np.ndarray, state: dict, params: Any, *, rng: np.random.Generator,
              info: dict | None = None, rounds: int | None = None, **extra: Any) -> Generator:
        n = state["count"]
        hn, k = kick_sizes(h_of, n)
        temp = at("temperature τ", tau_of, n, 0.0, False)
        p = state["p"] - k * grad
        u = (0.5 * hn) * p
        kept = scale = state["scale"]
        on_host = 0.0
        if device is None:
            p = ou_O(p, gamma, temp, hn, rng)
        else:       # O_h as `rounds` runs, so it shares the packets of a partition's other groups
            parts = max(1, rounds or 1)
            for _ in range(parts):
                s = momentum_scale(p, math.sqrt(temp), hn / parts, headroom * device.vmax, kept or None)
                (res,) = yield [Oscillate(slice(0, p.size), gamma, 2.0 * gamma * temp, p, hn / parts, s, stability)]
                if res.ran:
                    p, scale, kept = res.value, res.scale, res.kept
                else:       # the converters cannot program γ or τ beside the others: same step, host
                    p, on_host = exact_ou(p, gamma, 2.0 * gamma * temp, hn / parts, rng), 1.0
            if info is not None:
                info["scale"], info["on_host"] = (0.0 if on_host else scale), on_host
        check_finite("momenta", p, n)
        if info is not None:
            info["kinetic_temperature"] = float(p @ p) / p.size
        return u + (0.5 * hn) * p, {"count": n + 1, "p": p, "scale": kept}

    return with_device(init, steps, device)
