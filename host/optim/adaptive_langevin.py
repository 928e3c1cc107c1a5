"""Adaptive Langevin (Nosé–Hoover–Langevin, Jones & Leimkuhler), one thermostat ξ per group.

Per step, after the kick B_k: A_{h/2} C_{h/2} D_{h/2} E_h D_{h/2} C_{h/2} A_{h/2}, where

    C_dt: p ← e^{−ξ dt} p,   D_dt: p ← p + σ_A √dt R,   E_dt: ξ ← ξ + dt ε (pᵀp − N_d τ).

The thermostat ξ grows until the kinetic temperature is τ, whatever gradient noise the kicks
carry — the reason AdL exists. Given a device, (CD)_{h/2} is one run of h/2 of the group's cells
with friction Γ = ξ and temperature σ_A²/(2ξ) (noise amplitude σ_A: one OU of friction ξ and
noise σ_A, exactly); E needs the kinetic energy, which only the host turns into a new ξ, so a
step is two packets, in the digital order (CD)_{h/2} E_h (CD)_{h/2}. (The one-packet Strang
splitting E_{h/2} (CD)_h E_{h/2} was tried first and is unstable in training: the first E sees
the momenta right after the kick, before any friction, so when the kicks alone carry more than
2τ per degree of freedom ξ grows without bound.) A ξ that cannot be a friction (negative, or
below four steps of the friction DAC) is done on the host with the same exact OU formula.
"""
from __future__ import annotations

import math
from typing import Any, Generator

import numpy as np

from host.optim.backend.requests import Oscillate
from host.optim.backend.scaling import check_device_settings, momentum_scale
from host.optim.checks import at, check_finite, check_value, checked_schedule
from host.optim.schedules import Schedule
from host.optim.splitting import exact_ou, friction_C, kick_sizes, noise_D, thermostat_E
from host.optim.transform import Transform, with_device


def adl(h: float | Schedule = 0.25, tau: float | Schedule = 1e-4, sigma_a: float = 0.01, eps: float = 0.05,
        xi0: float = 1e-3, device: Any = None, stability: float | None = 0.002,
        headroom: float = 0.5) -> Transform:
    """Adaptive Langevin:

        p ← p − k∇ℓ,  θ ← θ + (h/2)p,  (C D)_{h/2},  ξ ← ξ + h ε (pᵀp − N τ),  (D C)_{h/2},  θ ← θ + (h/2)p

    Args:
        h: step size h
        tau: temperature τ
        sigma_a: AdL noise σ_A
        eps: AdL thermostat coupling ε
        xi0: initial thermostat ξ0
        stability: emulator fidelity: substep = stability / largest friction
    """
    h_of = checked_schedule("step size h", h, 0.0, True)
    tau_of = checked_schedule("temperature τ", tau, 0.0, False)
    sigma_a = check_value("AdL noise σ_A", sigma_a, 0.0, False)
    eps = check_value("AdL thermostat coupling ε", eps, 0.0, False)
    xi0 = check_value("initial thermostat ξ0", xi0, -math.inf, True)
    check_device_settings(stability, headroom)

    def init(params: np.ndarray) -> dict:
        return {"count": 0, "p": np.zeros(np.size(params)), "xi": xi0, "scale": 0.0}

    def steps(grad: np.ndarray, state: dict, params: Any, *, rng: np.random.Generator,
              info: dict | None = None, **extra: Any) -> Generator:
        n, xi, scale = state["count"], state["xi"], state["scale"]
        kept = scale
        hn, k = kick_sizes(h_of, n)
        temp = at("temperature τ", tau_of, n, 0.0, False)
        p = state["p"] - k * grad
        u = (0.5 * hn) * p
        half, on_host, pp = 0.5 * hn, 0.0, 0.0
        for second in (False, True):
            if device is None:
                p = friction_C(p, xi, half) if not second else noise_D(p, sigma_a, half, rng)
                p = noise_D(p, sigma_a, half, rng) if not second else friction_C(p, xi, half)
            else:
                thermal = max(math.sqrt(temp), sigma_a * math.sqrt(half))
                s = momentum_scale(p, thermal, half, headroom * device.vmax, kept or None)
                (res,) = yield [Oscillate(slice(0, p.size), xi, sigma_a**2, p, half, s, stability)]
                if res.ran:
                    p, scale, kept = res.value, res.scale, res.kept
                else:
                    p, on_host = exact_ou(p, xi, sigma_a**2, half, rng), 1.0
            if not second:
                pp = float(p @ p)
                xi = thermostat_E(xi, pp, p.size, temp, eps, hn)
        check_finite("momenta", p, n)
        check_finite("thermostats", np.array([xi]), n)
        if info is not None:
            info["kinetic_temperature"], info["xi"] = pp / p.size, float(xi)
            if device is not None:
                info["on_host"], info["scale"] = on_host, 0.0 if on_host else scale
        return u + (0.5 * hn) * p, {"count": n + 1, "p": p, "xi": xi, "scale": kept}

    return with_device(init, steps, device, rounds=2)
