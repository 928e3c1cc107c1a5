"""Digital update directions: the gradient, and natural-gradient solves (G + λI)⁻¹ ∇ℓ.

G is the generalised Gauss–Newton matrix of the mini-batch, G = Jᵀ H J = UᵀU (see
host.nn.curvature); the three NGD solvers are the digital baselines TNGD is measured against.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse.linalg


class GradientDirection:
    """d = ∇ℓ."""
    name = "gradient"

    def init(self, state: Any) -> None:
        pass

    def __call__(self, state: Any, X: np.ndarray, y: np.ndarray, objective: Any, grad: np.ndarray) -> np.ndarray:
        return grad


class NaturalGradientDirection:
    """d = (G + λI)⁻¹ ∇ℓ, by ``solver``:

    - ``exact``: form G (P×P) and Cholesky-solve — O(P³), the reference;
    - ``woodbury``: with G = UᵀU (U r×P), (λI + UᵀU)⁻¹g = (g − Uᵀ(λI_r + UUᵀ)⁻¹Ug)/λ — O(r²P);
    - ``cg``: conjugate gradients on GGN-vector products, G never formed — O(iters·rP).
    """
    SOLVERS = ("exact", "woodbury", "cg")

    def __init__(self, lam: float = 0.01, solver: str = "woodbury", cg_iters: int = 50,
                 cg_tol: float = 1e-6) -> None:
        if solver not in self.SOLVERS:
            raise ValueError(f"unknown NGD solver {solver!r}; choose one of {', '.join(self.SOLVERS)}")
        if not (np.isfinite(lam) and lam > 0):
            raise ValueError(f"damping lam must be a finite number > 0, got {lam}")
        if cg_iters < 1:
            raise ValueError(f"cg_iters must be >= 1, got {cg_iters}")
        self.lam, self.solver, self.cg_iters, self.cg_tol = lam, solver, cg_iters, cg_tol
        self.name = f"ngd-{solver}"

    def init(self, state: Any) -> None:
        pass

    def __call__(self, state: Any, X: np.ndarray, y: np.ndarray, objective: Any, grad: np.ndarray) -> np.ndarray:
        theta, lam = state.theta, self.lam
        if self.solver == "exact":
            G = objective.ggn_dense(theta, X, y)
            G[np.diag_indices_from(G)] += lam
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(G), grad)
        if self.solver == "woodbury":
            U = objective.ggn_sqrt(theta, X, y)
            small = U @ U.T
            small[np.diag_indices_from(small)] += lam
            return (grad - U.T @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(small), U @ grad)) / lam
        P = grad.size
        op = scipy.sparse.linalg.LinearOperator(
            (P, P), matvec=lambda v: objective.ggn_matvec(theta, X, y, v) + lam * v, dtype=np.float64)
        d, _ = scipy.sparse.linalg.cg(op, grad, rtol=self.cg_tol, maxiter=self.cg_iters)
        return d
