"""The splitting sub-steps of DESIGN §6, each an in-place update of ONE group's arrays.

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

These are the digital reference implementations. The O-step (and C/D, the AdL analogue) is the
part a device-assisted variant performs physically in its cells; schemes call it through an
overridable method (``LangevinScheme.o_step``), so a device twin replaces only that call.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg


def drift_A(theta: np.ndarray, p: np.ndarray, dt: float) -> None:
    theta += dt * p


def kick_B(p: np.ndarray, grad: np.ndarray, dt: float) -> None:
    p -= dt * grad


def ou_coefficients(gamma: float, tau: float, dt: float) -> tuple[float, float]:
    """(c, s) of the exact OU solve p ← c p + s R: c = e^{−γ dt}, s = sqrt((1 − c²) τ)."""
    c = math.exp(-gamma * dt)
    return c, math.sqrt(-math.expm1(-2.0 * gamma * dt) * tau)


def ou_O(p: np.ndarray, gamma: float, tau: float, dt: float, rng: np.random.Generator) -> None:
    c, s = ou_coefficients(gamma, tau, dt)
    p *= c
    if s:
        p += s * rng.standard_normal(p.size)


def friction_C(p: np.ndarray, xi: float, dt: float) -> None:
    p *= math.exp(-xi * dt)


def noise_D(p: np.ndarray, sigma: float, dt: float, rng: np.random.Generator) -> None:
    if sigma:
        p += sigma * math.sqrt(dt) * rng.standard_normal(p.size)


def thermostat_E(xi: float, pp: float, n: int, tau: float, eps: float, dt: float) -> float:
    """The new ξ, given pp = pᵀp of the group (N_d = n degrees of freedom)."""
    return xi + dt * eps * (pp - n * tau)


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
