"""Natural gradient descent, digitally: the baselines TNGD is measured against."""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg

from host.optim.checks import check_choice
from host.optim.schedules import Schedule
from host.optim.signature import default
from host.optim.transform import Transform, chain, scale_by_learning_rate, stateless

SOLVERS = ("exact", "woodbury", "cg")


def ngd(lr: float | Schedule = 0.01, lam: float = 0.01, solver: str = "woodbury", cg_iters: int = 50) -> Transform:
    """Natural gradient descent with the damped mini-batch GGN:

        θ ← θ − η (G + λI)⁻¹ ∇ℓ,   G = Jᵀ H J

    Args:
        lr: step size η
        lam: damping λ
        solver: exact | woodbury | cg
        cg_iters: CG iterations (solver cg)
    """
    return chain(natural_direction(lam, solver, cg_iters), scale_by_learning_rate(lr))


def natural_direction(lam: float = default(ngd, "lam"), solver: str = default(ngd, "solver"),
                      cg_iters: int = default(ngd, "cg_iters"), cg_tol: float = 1e-6) -> Transform:
    """u ← (G + λI)⁻¹ u, G the mini-batch GGN (``extra['curvature']``), by ``solver``:

    - ``exact``: form G (P×P) and Cholesky-solve — O(P³), the reference;
    - ``woodbury``: with G = UᵀU (U r×P), (λI + UᵀU)⁻¹g = (g − Uᵀ(λI_r + UUᵀ)⁻¹Ug)/λ — O(r²P);
    - ``cg``: conjugate gradients on GGN-vector products, G never formed — O(iters·rP).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown NGD solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"damping lam must be a finite number > 0, got {lam}")
    if not (isinstance(cg_iters, int) and cg_iters >= 1):
        raise ValueError(f"cg_iters must be >= 1 (an int), got {cg_iters!r}")

    def solve(g: np.ndarray, params: Any, *, curvature: Any, info: dict | None = None, **extra: Any) -> np.ndarray:
        return natural_solve(curvature, lam, g, solver, cg_iters, cg_tol, info)
    return stateless(solve)


def natural_solve(curvature: Any, lam: float, g: np.ndarray, solver: str = "woodbury",
                  cg_iters: int = 50, cg_tol: float = 1e-6, info: dict | None = None) -> np.ndarray:
    """(G + λI)⁻¹ g for the curvature of one step (see ``natural_direction``); CG reports in
    ``info['cg_converged']`` whether it met its tolerance within ``cg_iters``."""
    check_choice("solver", solver, SOLVERS)
    if solver == "exact":
        G = curvature.dense()
        G[np.diag_indices_from(G)] += lam
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G), g)
    if solver == "woodbury":
        U = curvature.sqrt()
        small = U @ U.T
        small[np.diag_indices_from(small)] += lam
        return (g - U.T @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(small), U @ g)) / lam
    P = g.size
    op = scipy.sparse.linalg.LinearOperator((P, P), matvec=lambda v: curvature.matvec(v) + lam * v,
                                            dtype=np.float64)
    d, flag = scipy.sparse.linalg.cg(op, g, rtol=cg_tol, maxiter=cg_iters)
    if info is not None:
        info["cg_converged"] = float(flag == 0)
    return d
