"""Exact reference solutions of the (noise-linear) core dynamics — for validation only.

Without rails the core is a linear SDE. For the all-overdamped case the OU transition is
mean  b* + e^{−MAt}(x0 − b*),  covariance  Σ∞ + e^{−MAt}(Σ0 − Σ∞)e^{−AMt},  Σ∞ = κA⁻¹.
:class:`LinearSDE` covers any overdamped/underdamped mix in the phase-space variables
z = (x, v_u) (v of the underdamped cells only), and also gives the exact stationary covariance
of the discrete Euler–Maruyama map the kernels implement, which measures the O(dt) bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import expm, solve_continuous_lyapunov, solve_discrete_lyapunov

F64 = NDArray[np.float64]


def _mob(A: F64, mob: ArrayLike | None) -> F64:
    return np.ones(A.shape[0]) if mob is None else np.asarray(mob, dtype=np.float64)


def ou_mean(A: ArrayLike, b: ArrayLike, x0: ArrayLike, t: float,
            mob: ArrayLike | None = None) -> F64:
    """⟨x_t⟩ = b* + e^{−MAt}(x0 − b*) with b* = A⁻¹b (overdamped cells, no rails)."""
    A = np.asarray(A, dtype=np.float64)
    bstar = np.linalg.solve(A, b)
    return bstar + expm(-t * _mob(A, mob)[:, None] * A) @ (np.asarray(x0) - bstar)


def ou_cov(A: ArrayLike, kappa: float, t: float, mob: ArrayLike | None = None,
           cov0: ArrayLike | None = None) -> F64:
    """Cov(x_t) from a start of covariance ``cov0`` (default: a fixed point): M-independent Σ∞."""
    A = np.asarray(A, dtype=np.float64)
    sinf = kappa * np.linalg.inv(A)
    P = expm(-t * _mob(A, mob)[:, None] * A)
    c0 = np.zeros_like(A) if cov0 is None else np.asarray(cov0)
    return sinf + P @ (c0 - sinf) @ P.T


def ou_sample(rng: np.random.Generator, A: ArrayLike, b: ArrayLike, x0: ArrayLike, t: float,
              kappa: float, mob: ArrayLike | None = None, size: int | None = None) -> F64:
    """Exact samples of x_t given x_0 = x0 (the OU transition as a Gaussian)."""
    mean = ou_mean(A, b, x0, t, mob)
    return rng.multivariate_normal(mean, ou_cov(A, kappa, t, mob), size=size, method="cholesky")


@dataclass(frozen=True)
class LinearSDE:
    """dz = −K(z − z*) dt + noise of covariance rate D, z = (x, v of underdamped cells)."""

    K: F64
    center: F64
    D: F64
    n: int
    """Number of cells (the first n coordinates of z are x)."""
    und: NDArray[np.bool_]

    @classmethod
    def from_core(cls, A: ArrayLike, b: ArrayLike, kappa: float | ArrayLike,
                  mob: ArrayLike | None = None, fric: ArrayLike | None = None,
                  und: ArrayLike | None = None) -> LinearSDE:
        """The core's equations of motion (docs/physics.md) written as one linear system."""
        A = np.asarray(A, dtype=np.float64)
        n = A.shape[0]
        m = _mob(A, mob)
        g = np.ones(n) if fric is None else np.asarray(fric, dtype=np.float64)
        u = np.zeros(n, bool) if und is None else np.asarray(und, dtype=bool)
        k = np.broadcast_to(np.asarray(kappa, dtype=np.float64), (n,))
        iu = np.flatnonzero(u)
        nu = iu.size
        K = np.zeros((n + nu, n + nu))
        D = np.zeros(n + nu)
        o = ~u
        K[:n][o, :n] = m[o, None] * A[o]
        D[:n][o] = 2 * k[o] * m[o]
        K[iu, n + np.arange(nu)] = -1.0
        K[n:, :n] = m[iu, None] * A[iu]
        K[n:, n:] = np.diag(g[iu])
        D[n:] = 2 * k[iu] * g[iu] * m[iu]
        center = np.concatenate([np.linalg.solve(A, b), np.zeros(nu)])
        return cls(K=K, center=center, D=np.diag(D), n=n, und=u)

    def stationary_cov(self) -> F64:
        """Σ solving KΣ + ΣKᵀ = D (for the core: blockdiag(κA⁻¹, κM_u))."""
        return solve_continuous_lyapunov(self.K, self.D)

    def propagator(self, t: float) -> F64:
        """e^{−Kt}: the mean map, and Cov(z_{s+t}, z_s) = e^{−Kt} Σ in equilibrium."""
        return expm(-t * self.K)

    def transition(self, z0: ArrayLike, t: float) -> tuple[F64, F64]:
        """Mean and covariance of z_t given z_0 = z0."""
        P, S = self.propagator(t), self.stationary_cov()
        return self.center + P @ (np.asarray(z0) - self.center), S - P @ S @ P.T

    def transition_with_integral(self, z0: ArrayLike, t: float) -> tuple[F64, F64]:
        """Mean and covariance of (z_t, ∫_0^t x ds) given z_0 = z0, by Van Loan's block
        exponential of the augmented system (accurate while e^{λmax t} stays far below 1e16)."""
        nz, n = self.K.shape[0], self.n
        m = nz + n
        F = np.zeros((m, m))             # d(z, I) = F (z, I) dt + c dt + noise
        F[:nz, :nz] = -self.K
        F[nz:, :n] = np.eye(n)
        c = np.concatenate([self.K @ self.center, np.zeros(n)])
        Dm = np.zeros((m, m))
        Dm[:nz, :nz] = self.D
        E = expm(t * np.block([[F, Dm], [np.zeros((m, m)), -F.T]]))
        Phi = E[:m, :m]
        cov = E[:m, m:] @ Phi.T
        # mean: the affine flow, by the same exponential of [[F, c], [0, 0]]
        G = np.zeros((m + 1, m + 1))
        G[:m, :m], G[:m, m] = F, c
        Eg = expm(t * G)
        mean = Eg[:m, :m] @ np.concatenate([np.asarray(z0, dtype=np.float64), np.zeros(n)]) \
            + Eg[:m, m]
        return mean, 0.5 * (cov + cov.T)

    def em_stationary_cov(self, dt: float) -> F64:
        """Exact stationary covariance of the kernels' EM map with substep dt (no rails).

        Overdamped x and all v take an explicit Euler step; underdamped x then moves by dt times
        the *new* v, so its noise is the same draw scaled by dt.
        """
        n, iu = self.n, np.flatnonzero(self.und)
        nz = self.K.shape[0]
        F = np.eye(nz) - dt * self.K
        s = np.sqrt(np.diag(self.D) * dt)
        L = np.diag(s)
        F[iu] = np.eye(nz)[iu] + dt * F[n:]
        L[iu, n + np.arange(iu.size)] = dt * s[n:]
        return solve_discrete_lyapunov(F, L @ L.T)
