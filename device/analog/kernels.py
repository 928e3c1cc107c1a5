"""Numba Euler–Maruyama kernels of the analog core.

Each kernel integrates ``nsteps = xi.shape[0]`` substeps of size ``dt`` in place, with the
standard normal noise ``xi`` drawn outside (numpy PCG64, in blocks), so a run is reproducible
and does not depend on which thread executes it. Kernels release the GIL (``nogil``) so the
firmware can serve register reads while the physics runs.

Per cell i, with the force f = b − A x evaluated once per step from the start-of-step x:

- overdamped (RC):  x_i += dt·M_i·f_i + sig_i·ξ
- underdamped (RLC, semi-implicit EM): v_i += dt·(M_i·f_i − Γ_i·v_i) + sig_i·ξ;  x_i += dt·v_i

``sig`` holds the precomputed noise amplitude per cell (sqrt(2κM dt) resp. sqrt(2κΓM dt)).

Capacitively coupled RLC cells (the published SPU; ``em_capacitive``) put the coupling in the
capacitance matrix C instead: node voltages x and inductor currents v follow
C dx = (b − G x − v) dt + sqrt(2κG) dW,  dv = L⁻¹ x dt.
After each step x is clamped to the rails ±vmax (``sat[i] = 1``, counted, outward velocity
killed; reaching a rail exactly, or the velocity bound, counts as a hit too) and
``acc += x·dt`` so the firmware can form the time average ∫x dt / T.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, fastmath=True, nogil=True)

BLAS_MIN_N = 512
"""From this many cells the matvecs go to BLAS (np.dot, which may use its own threads); below it
the plain loops win, as BLAS call overhead dominates."""

VLIM_STEPS = 2.0
"""Velocity bound in rail widths per substep: |v| ≤ VLIM_STEPS·vmax/dt keeps v finite."""


@njit(inline="always", **_JIT)  # IR-inlined into each kernel: 3x faster at N=8
def _update(x, v, ax, b, mob, fric, und, sig, xi, dt, vmax, sat, acc) -> int:
    """Advance every cell by one substep, given the coupling term A x in ``ax``; count clamps."""
    vlim = VLIM_STEPS * vmax / dt
    clamps = 0
    for i in range(x.shape[0]):
        force = mob[i] * (b[i] - ax[i])
        if und[i]:
            vi = v[i] + dt * (force - fric[i] * v[i]) + sig[i] * xi[i]
            vi = vi if vi < vlim else vlim  # ternaries: min/max compile to slow calls
            vi = vi if vi > -vlim else -vlim
            xn = x[i] + dt * vi
        else:
            vi = 0.0
            xn = x[i] + dt * force + sig[i] * xi[i]
        # landing exactly on a rail (e.g. jumping rail to rail) or at the velocity bound (an
        # unstable, too coarse substep) counts as a hit too
        if xn >= vmax or xn <= -vmax or vi == vlim or vi == -vlim:
            xn = xn if xn < vmax else vmax
            xn = xn if xn > -vmax else -vmax
            vi = 0.0  # the rail absorbs the current (inelastic wall)
            sat[i] = 1
            clamps += 1
        x[i] = xn
        v[i] = vi
        acc[i] += xn * dt
    return clamps


@njit(**_JIT)
def _matvec(A, x, out) -> None:
    """out = A @ x, two rows at a time: each x[j] load feeds two FMAs (~20 % faster at N=256)."""
    n, m = x.shape[0], A.shape[0]
    if n >= BLAS_MIN_N:
        out[:] = np.dot(A, x)
        return
    i = 0
    while i + 1 < m:
        s0 = 0.0
        s1 = 0.0
        for j in range(n):
            s0 += A[i, j] * x[j]
            s1 += A[i + 1, j] * x[j]
        out[i] = s0
        out[i + 1] = s1
        i += 2
    if i < m:
        s0 = 0.0
        for j in range(n):
            s0 += A[i, j] * x[j]
        out[i] = s0


@njit(**_JIT)
def _lowrank_matvec(J, H, lam, x, y, z, out) -> None:
    """out = Jᵀ H J x + lam∘x without forming the N×N matrix: O(rN + r²)."""
    if x.shape[0] >= BLAS_MIN_N:
        out[:] = np.dot(np.dot(H, np.dot(J, x)), J) + lam * x
        return
    _matvec(J, x, y)
    _matvec(H, y, z)
    for i in range(x.shape[0]):
        out[i] = lam[i] * x[i]
    for k in range(J.shape[0]):
        zk = z[k]
        for i in range(x.shape[0]):
            out[i] += J[k, i] * zk


@njit(**_JIT)
def em_dense(x, v, A, b, mob, fric, und, sig, xi, dt, vmax, sat, acc) -> int:
    """Integrate ``xi.shape[0]`` substeps with dense coupling A (n×n); return clamp events."""
    ax = np.empty_like(x)
    clamps = 0
    for k in range(xi.shape[0]):
        _matvec(A, x, ax)
        clamps += _update(x, v, ax, b, mob, fric, und, sig, xi[k], dt, vmax, sat, acc)
    return clamps


@njit(**_JIT)
def em_lowrank(x, v, J, H, lam, b, mob, fric, und, sig, xi, dt, vmax, sat, acc) -> int:
    """Integrate with A = Jᵀ H J + diag(lam), J (r×n), H (r×r); return clamp events."""
    ax = np.empty_like(x)
    y = np.empty(J.shape[0])
    z = np.empty(J.shape[0])
    clamps = 0
    for k in range(xi.shape[0]):
        _lowrank_matvec(J, H, lam, x, y, z, ax)
        clamps += _update(x, v, ax, b, mob, fric, und, sig, xi[k], dt, vmax, sat, acc)
    return clamps


@njit(**_JIT)
def em_dense_chains(x, v, A, b, mob, fric, und, sig, xi, dt, vmax, sat, acc) -> int:
    """K independent chains on one symmetric A: x, v, sat, acc are (K, n), xi is (nsteps, K, n).

    The coupling of all chains is one matrix product X·A (= (A Xᵀ)ᵀ as A is symmetric), which
    BLAS does faster than K matvecs at every size.
    """
    clamps = 0
    for k in range(xi.shape[0]):
        ax = np.dot(x, A)
        for c in range(x.shape[0]):
            clamps += _update(
                x[c], v[c], ax[c], b, mob, fric, und, sig, xi[k, c], dt, vmax, sat[c], acc[c]
            )
    return clamps


@njit(**_JIT)
def em_capacitive(x, v, Cinv, b, g, linv, sig, xi, dt, vmax, sat, acc) -> int:
    """Capacitively coupled RLC cells: x = node voltages, v = inductor currents, Cinv = C⁻¹ of
    the Maxwell capacitance matrix, g = 1/R and linv = 1/L per cell. Semi-implicit EM: the
    charge u = dt·(b − g∘x − v) + sig∘ξ arriving at the nodes moves them by C⁻¹u, then the
    inductors integrate the new voltages. Rails clamp x as in the other kernels."""
    n = x.shape[0]
    u = np.empty_like(x)
    dx = np.empty_like(x)
    clamps = 0
    for k in range(xi.shape[0]):
        for i in range(n):
            u[i] = dt * (b[i] - g[i] * x[i] - v[i]) + sig[i] * xi[k, i]
        _matvec(Cinv, u, dx)
        for i in range(n):
            xn = x[i] + dx[i]
            if xn >= vmax or xn <= -vmax:
                xn = xn if xn < vmax else vmax
                xn = xn if xn > -vmax else -vmax
                sat[i] = 1
                clamps += 1
            x[i] = xn
            v[i] += dt * linv[i] * xn
            acc[i] += xn * dt
    return clamps


@njit(**_JIT)
def ou_path(c, decay, integral, l11, l21, scale, noise, states, total) -> None:
    """Exact OU modes over ``states.shape[0]`` equal stretches: per mode q, the end value
    q' = decay·q + scale·l11·n and the part of the stretch's integral that is correlated with it,
    integral·q + scale·l21·n (``noise[j]``: the standard normals of stretch j). Writes each end
    value to ``states[j]``, adds the integrals to ``total``, leaves the last value in ``c``.
    (The integrals' independent parts add up to one Gaussian the caller draws once.)"""
    m = c.shape[0]
    for j in range(states.shape[0]):
        for i in range(m):
            q = c[i]
            n1 = scale * noise[j, i]
            total[i] += integral[i] * q + l21[i] * n1
            q = decay[i] * q + l11[i] * n1
            c[i] = q
            states[j, i] = q
