"""The sub-steps the Langevin family is split into, as functions of one group's arrays.

Notation: θ a group's parameters, p its momenta, g = ∇L restricted to the group, ξ its
thermostat, dt the (sub)step, R ~ N(0, I) drawn from the optimizer's own generator.

    A_dt: θ += dt·p                         (drift)
    B_dt: p −= dt·g                         (kick, the only sub-step that needs ∇L)
    O_dt: p  = e^{−γ dt} p + sqrt((1 − e^{−2γ dt}) τ) R      (exact Ornstein–Uhlenbeck solve)
    C_dt: p  = e^{−ξ dt} p                  (thermostat friction)
    D_dt: p += σ_A sqrt(dt) R               (AdL's fixed-size noise)
    E_dt: ξ += dt·ε (pᵀp − N_d τ)           (Nosé–Hoover–Langevin thermostat update)
    N_h:  θ −= h·x,  x ~ N(F⁻¹g, (2τ/h) F⁻¹), F = UᵀU + λI   (natural Langevin; U the group's
                                            columns of the GGN square root, G_gg = UᵀU)

These are the digital reference implementations; a device-assisted transform asks the device's
cells for O (and C with D) instead. Each returns new arrays (the state is never changed in place).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg

from host.optim.checks import at


def kick_sizes(h: Any, step: int) -> tuple[float, float]:
    """(h_n, k): the step and the kick B_k that precedes its drift, k = h_0/2 at the first step
    (the initial half kick from p = 0) and (h_{n−1} + h_n)/2 afterwards (= h at constant h: two
    merged half kicks of consecutive BAOAB steps)."""
    hn = at("step size h", h, step, 0.0, True)
    prev = at("step size h", h, step - 1, 0.0, True) if step else 0.0
    return hn, 0.5 * (prev + hn)


def ou_coefficients(gamma: float, tau: float, dt: float) -> tuple[float, float]:
    """(c, s) of the exact OU solve p ← c p + s R: c = e^{−γ dt}, s = sqrt((1 − c²) τ)."""
    c = math.exp(-gamma * dt)
    return c, math.sqrt(-math.expm1(-2.0 * gamma * dt) * tau)


def ou_O(p: np.ndarray, gamma: float, tau: float, dt: float, rng: np.random.Generator) -> np.ndarray:
    c, s = ou_coefficients(gamma, tau, dt)
    p = p * c
    return p + s * rng.standard_normal(p.size) if s else p


def friction_C(p: np.ndarray, xi: float, dt: float) -> np.ndarray:
    return p * math.exp(-xi * dt)


def noise_D(p: np.ndarray, sigma: float, dt: float, rng: np.random.Generator) -> np.ndarray:
    return p + sigma * math.sqrt(dt) * rng.standard_normal(p.size) if sigma else p


def thermostat_E(xi: float, pp: float, n: int, tau: float, eps: float, dt: float) -> float:
    """The new ξ, given pp = pᵀp of the group (N_d = n degrees of freedom)."""
    return xi + dt * eps * (pp - n * tau)


def exact_ou(p: np.ndarray, friction: float, noise_rate: float, t: float, rng: np.random.Generator) -> np.ndarray:
    """dp = −friction·p dt + sqrt(noise_rate) dW solved exactly over t; friction may be zero or
    negative (the variance of the added noise is noise_rate·(1 − e^{−2ft})/(2f))."""
    c = math.exp(-friction * t)
    x = 2.0 * friction * t
    var = noise_rate * t * (-math.expm1(-x) / x if abs(x) > 1e-12 else 1.0 - 0.5 * x)
    p = p * c
    return p + math.sqrt(var) * rng.standard_normal(p.size) if var > 0 else p


def natural_sample(U: np.ndarray, lam: float, b: np.ndarray, kappa: float,
                   rng: np.random.Generator) -> np.ndarray:
    """x ~ N(F⁻¹b, κF⁻¹) exactly, F = UᵀU + λI (U: r × n), in O(r²n): x = F⁻¹z with
    z = b + √κ(√λ R₁ + UᵀR₂), whose covariance κF makes Cov x = κF⁻¹; F⁻¹ by the push-through
    identity F⁻¹v = (v − Uᵀ(λI + UUᵀ)⁻¹Uv)/λ."""
    r, n = U.shape
    z = b.astype(float, copy=True)
    if kappa > 0:
        z += math.sqrt(kappa) * (math.sqrt(lam) * rng.standard_normal(n) + U.T @ rng.standard_normal(r))
    if r == 0:
        return z / lam
    small = scipy.linalg.cho_factor(lam * np.eye(r) + U @ U.T)
    return (z - U.T @ scipy.linalg.cho_solve(small, U @ z)) / lam
