"""Exact propagation of underdamped (RLC) cells with one friction: the 2N-dimensional version.

With x = M^½y, v = M^½u and S = M^½AM^½ = BΛBᵀ (device/analog/propagation.py), cells of one
friction γ obey dy = u dt, du = (M^½b − Sy − γu)dt + sqrt(2κγ) dW, so each eigenmode is a damped
oscillator (q, p) of ω² = λ. With the accumulator's integral I = ∫(q − q*) its state
z = (q − q*, p, I) is a 3-dimensional linear SDE, dz = Fz dt + noise of rate D:

    F = [[0, 1, 0], [−λ, −γ, 0], [1, 0, 0]],   D = diag(0, 2κγ, 0)

Its transition over t, z(t) = Φ z(0) + N(0, Q), comes from Van Loan's block exponential over
a short h (‖F‖h ≤ ½, where it is accurate) and doubling, Φ(2h) = Φ(h)², Q(2h) = Φ(h)Q(h)Φ(h)ᵀ +
Q(h), for all modes at once. The complement of a low-rank basis is one more such mode (λ = μ),
its noise vectors projected onto it.

Rails: the mean's energy ½(‖p‖² + qᵀΛq) (whitened, over all modes) never grows along the damped
path, so |x_i − x*_i| ≤ M_i^½‖q‖ ≤ M_i^½·sqrt((‖p0‖² + q0ᵀΛq0)/λmin) bounds it at O(N) cost;
a stretch that bound does not clear is EM's.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import expm

from device.analog.propagation import margin

if TYPE_CHECKING:
    from device.analog.propagation import Spectrum

F64 = NDArray[np.float64]


def transition(rates: F64, gamma: float, t: float) -> tuple[F64, F64]:
    """Per mode (k × 3 × 3): Φ(t) and a factor L of Q(t) = LLᵀ, for κ = 1."""
    k = rates.size
    F = np.zeros((k, 3, 3))
    F[:, 0, 1] = 1.0
    F[:, 1, 0] = -rates
    F[:, 1, 1] = -gamma
    F[:, 2, 0] = 1.0
    norm = float(np.max(np.abs(rates), initial=0.0)) + gamma + 2.0
    m = max(0, math.ceil(math.log2(max(t * norm / 0.5, 1.0))))
    h = t / 2.0**m
    block = np.zeros((k, 6, 6))
    block[:, :3, :3] = F * h
    block[:, 1, 4] = 2.0 * gamma * h
    block[:, 3:, 3:] = -np.transpose(F, (0, 2, 1)) * h
    E = expm(block)
    Phi = E[:, :3, :3]
    Q = E[:, :3, 3:] @ np.transpose(Phi, (0, 2, 1))
    for _ in range(m):
        Q = Phi @ Q @ np.transpose(Phi, (0, 2, 1)) + Q
        Phi = Phi @ Phi
    Q = 0.5 * (Q + np.transpose(Q, (0, 2, 1)))
    w, V = np.linalg.eigh(Q)
    return Phi, V * np.sqrt(np.maximum(w, 0.0))[:, None, :]


def _stretch(spec: Spectrum, t: float) -> tuple[F64, F64, F64 | None, F64 | None]:
    cache = spec.oscillator_stretches
    hit = cache.get(t)
    if hit is None:
        assert spec.friction is not None
        Phi, L = transition(spec.rates, spec.friction, t)
        rest = transition(np.array([spec.rest]), spec.friction, t) if spec.complement \
            else (None, None)
        hit = (Phi, L, rest[0], rest[1])
        if len(cache) > 64:
            cache.clear()
        cache[t] = hit
    return hit


def safe(spec: Spectrum, x0: F64, v0: F64, b: F64, t: float, vmax: float) -> bool:
    """Whether the damped mean path, widened by the margin's standard deviations, clears the
    rails (the energy bound of the module docstring; no finer check: otherwise EM)."""
    tg = spec.target(b)
    limit = vmax - margin(spec.active, t, math.sqrt(spec.fastest) + (spec.friction or 0.0)) \
        * spec.std
    if np.any(np.abs(x0) >= limit) or np.any(np.abs(tg.xstar) >= limit):
        return False
    d, u = x0 / spec.sqrt_m - tg.ystar, v0 / spec.sqrt_m
    c = spec.coords(d[:, None])[:, 0]
    energy = float(u @ u) + float(np.sum(spec.rates * c * c))
    if spec.complement:
        p = d - spec.expand(c[:, None])[:, 0]
        energy += spec.rest * float(p @ p)
    radius = math.sqrt(energy / spec.slowest)
    return bool(np.all(np.abs(tg.xstar) + spec.sqrt_m * radius < limit))


def propagate(spec: Spectrum, x: F64, v: F64, b: F64, t: float, rng: np.random.Generator,
              acc: F64 | None) -> None:
    """Draw (x, v)(t) and ∫x over the stretch exactly; write x and v, add to acc."""
    a, k, sm = spec.active, spec.k, spec.sqrt_m
    tg = spec.target(b)
    y0, u0 = x / sm, v / sm
    sk = math.sqrt(spec.kappa)
    noisy = sk > 0
    cols = [y0, u0]
    if spec.complement and noisy:
        cols += list(rng.standard_normal((3, a)))
    C = spec.coords(np.stack(cols, 1))
    Phi, L, Phi_r, L_r = _stretch(spec, t)
    z0 = np.stack([C[:, 0] - tg.cstar, C[:, 1], np.zeros(k)], 1)         # k × 3
    z = np.einsum("kij,kj->ki", Phi, z0)
    if noisy:
        z += sk * np.einsum("kij,kj->ki", L, rng.standard_normal((k, 3)))
    out = [z[:, 0], z[:, 1], z[:, 2]]
    if spec.complement:
        out += [C[:, 0], C[:, 1]] + ([C[:, 2], C[:, 3], C[:, 4]] if noisy else [])
    Y = spec.expand(np.stack(out, 1))
    yq, up, yi = tg.ystar + Y[:, 0], Y[:, 1], tg.ystar * t + Y[:, 2]
    if spec.complement:
        assert Phi_r is not None and L_r is not None
        w0 = np.stack([y0 - Y[:, 3] - tg.rest, u0 - Y[:, 4], np.zeros(a)], 1)  # a × 3
        w = w0 @ Phi_r[0].T
        if noisy:
            n = np.stack([cols[2 + j] - Y[:, 5 + j] for j in range(3)], 1)  # projected
            w += sk * n @ L_r[0].T
        yq, up, yi = yq + w[:, 0], up + w[:, 1], yi + w[:, 2]
    x[:] = sm * yq
    v[:] = sm * up
    if acc is not None:
        acc += sm * yi
