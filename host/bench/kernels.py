"""The Euler–Maruyama kernels (``device/analog/kernels.py``) per substep, noise draws included
(as ``AnalogCore`` runs them: one block of normals, then the kernel), against:

- the **floor**: one BLAS call for the coupling (``A @ x``; low rank ``J @ x`` and ``Jᵀ @ y``;
  K chains ``X @ A``) plus numpy's bulk time for the same number of normal draws — what any
  implementation that draws its noise with numpy must at least spend;
- the **peer**: a plain numpy loop ``x = x − dt·(A@x − b) + s·rng.standard_normal(N)``, the
  obvious pure-Python integrator (single chain, dense).

BLAS is pinned to one thread, as in the daemon (docs/performance.md "BLAS threads").
"""
from __future__ import annotations

import numpy as np

from device.analog import kernels
from host.bench.timing import per_call

DT, VMAX = 0.01, 10.0


def _system(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A well-conditioned SPD coupling (eigenvalues near 1) and a small bias: no clamps."""
    M = rng.standard_normal((n, n)) / np.sqrt(n)
    return np.eye(n) + 0.1 * (M + M.T) / 2, 0.1 * rng.standard_normal(n)


def _cells(shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    n = shape[-1]
    return (np.zeros(shape), np.zeros(shape), np.ones(n), np.ones(n), np.zeros(n, np.bool_),
            np.full(n, 0.05), np.zeros(shape, np.uint8), np.zeros(shape))


def _normals_per_draw(rng: np.random.Generator) -> float:
    """numpy's bulk time per standard normal (PCG64, ziggurat) from one large block."""
    buf = np.empty(1 << 20)
    return per_call(lambda: rng.standard_normal(out=buf), repeats=5) / buf.size


def dense(n: int, substeps: int, rng: np.random.Generator, per_normal: float) -> dict:
    A, b = _system(n, rng)
    x, v, mob, fric, und, sig, sat, acc = _cells((n,))
    xi = np.empty((substeps, n))

    def ours() -> None:
        rng.standard_normal(out=xi)
        kernels.em_dense(x, v, A, b, mob, fric, und, sig, xi, DT, VMAX, sat, acc)

    def numpy_loop() -> None:
        y = np.zeros(n)
        for _ in range(substeps):
            y = y - DT * (A @ y - b) + 0.05 * rng.standard_normal(n)

    x0 = rng.standard_normal(n)
    floor = per_call(lambda: A @ x0) + n * per_normal
    t_ours = per_call(ours) / substeps
    t_numpy = per_call(numpy_loop) / substeps
    return {"case": f"dense, 1 chain, N = {n}", "ours_s": t_ours, "floor_s": floor, "peer_s": t_numpy}


def chains(n: int, k: int, substeps: int, rng: np.random.Generator, per_normal: float) -> dict:
    A, b = _system(n, rng)
    x, v, mob, fric, und, sig, sat, acc = _cells((k, n))
    xi = np.empty((substeps, k, n))

    def ours() -> None:
        rng.standard_normal(out=xi)
        kernels.em_dense_chains(x, v, A, b, mob, fric, und, sig, xi, DT, VMAX, sat, acc)

    X = rng.standard_normal((k, n))
    floor = per_call(lambda: X @ A) + k * n * per_normal
    return {"case": f"dense, K = {k} chains, N = {n}", "ours_s": per_call(ours) / substeps, "floor_s": floor}


def lowrank(n: int, r: int, substeps: int, rng: np.random.Generator, per_normal: float) -> dict:
    J = rng.standard_normal((r, n)) / np.sqrt(n)
    H, lam, b = np.eye(r), np.ones(n), 0.1 * rng.standard_normal(n)
    x, v, mob, fric, und, sig, sat, acc = _cells((n,))
    xi = np.empty((substeps, n))

    def ours() -> None:
        rng.standard_normal(out=xi)
        kernels.em_lowrank(x, v, J, H, lam, b, mob, fric, und, sig, xi, DT, VMAX, sat, acc)

    x0, y0 = rng.standard_normal(n), rng.standard_normal(r)
    floor = per_call(lambda: J @ x0) + per_call(lambda: J.T @ y0) + n * per_normal
    t = per_call(ours) / substeps
    return {"case": f"low rank, r = {r}, N = {n}", "ours_s": t, "floor_s": floor,
            "gflops": 4 * r * n / t / 1e9}


def run(quick: bool = False) -> list[dict]:
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    with threadpool_limits(1):
        per_normal = _normals_per_draw(rng)
        rows = [dense(n, 2000 if n <= 32 else 200, rng, per_normal)
                for n in ((8, 32, 256) if quick else (8, 32, 256, 1024))]
        rows.append(chains(256, 16, 50, rng, per_normal))
        rows.append(lowrank(2000 if quick else 10_000, 64, 20, rng, per_normal))
    for row in rows:
        row["ours_over_floor"] = row["ours_s"] / row["floor_s"]
        if "peer_s" in row:
            row["peer_over_ours"] = row["peer_s"] / row["ours_s"]
    return rows
