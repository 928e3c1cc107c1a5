"""How fast the installed dynamics can move: the rate that sets Euler–Maruyama's substep.

EM needs dt small against the stiffest rate of the linear generator. A guaranteed bound is cheap
(Gershgorin for a dense coupling; exact r×r norms for low rank). The low-rank one is tight for
the usual H; Gershgorin can overshoot λmax several times over — a dense SPD matrix with
eigenvalues 1…10 gets a bound near 40, so every run took 4× the substeps it needed. For dense
couplings ``rate`` instead estimates the spectral radius of the symmetric M^½ A M^½ (same
spectrum as M·A) with a few Lanczos steps, warm-started from the last commit's top eigenvector,
adds a safety margin, and never exceeds the bound. Should the estimate
still fall short, the integration degrades gracefully (the stiffest mode's bias grows from 1 %
to a few %, far from EM's instability at dt·λ = 2), and a mode that did blow up would be clamped
at the rails and flagged SATURATED.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

if TYPE_CHECKING:
    from device.analog.core import EffectiveParams

#: Lanczos Ritz values approach |λ|max from below; the estimate is raised by this factor
#: (measured: at most 0.4 % low at TOLERANCE, on dense N = 256 with a spectrum 1…10).
SAFETY = 1.02
#: Relative accuracy asked of ARPACK (its residual criterion).
TOLERANCE = 1e-3
#: Restarts ARPACK may take before the bound is used instead (COMMIT holds the firmware lock).
MAX_RESTARTS = 100
#: Up to this many active cells the symmetric matrix is formed and its spectrum computed exactly.
EXACT_UP_TO = 48


def bound(eff: EffectiveParams) -> float:
    """Cheap upper bound on the fastest rate (1/τ0) of the active dynamics.

    ρ bounds the spectral radius of M·A: dense by Gershgorin, max_i M_i Σ_j |A_ij|; low-rank via
    the similar matrix M^½AM^½, ‖H‖₂·λmax(J M Jᵀ) + max_i M_i|λ_i| (exact r×r norms, O(r²N)).
    Overdamped cells need dt·ρ small; underdamped ones dt·(sqrt(ρ) + Γmax) (ω² ≤ ρ).
    """
    if eff.active == 0:
        return 0.0
    if eff.coupling == "capacitive":
        return _capacitive(eff)
    return _with_cell_modes(_radius_bound(eff), eff)


def rate(eff: EffectiveParams, warm: np.ndarray | None = None) -> tuple[float, np.ndarray | None]:
    """The rate the automatic substep is scaled by: the estimated spectral radius of M·A with
    a SAFETY margin, capped by :func:`bound`. Also returns the top eigenvector (for the next
    call's warm start), or None when the bound was used."""
    if eff.active == 0 or eff.coupling != "dense":
        # low rank: the r×r bound is tight for the usual H (TNGD's is I) and one BLAS product,
        # cheaper than the iterations that would estimate it; capacitive: its own bound
        return bound(eff), None
    found = _spectral_radius(eff, warm)
    if found is None:
        return _with_cell_modes(_radius_bound(eff), eff), None
    radius, vector = found
    # a symmetric matrix's diagonal never exceeds its spectral radius: a cheap floor, should
    # Lanczos ever settle on an interior eigenvalue
    assert eff.A is not None
    radius = max(radius, float(np.max(np.abs(np.diag(eff.A)) * eff.mobility)))
    return _with_cell_modes(min(SAFETY * radius, _radius_bound(eff)), eff), vector


# ------------------------------------------------------------------------------ internals
def _capacitive(eff: EffectiveParams) -> float:
    # C⁻¹G damps at most at λmax(C⁻¹)·max G, and the LC modes ring at most at
    # sqrt(λmax(C⁻¹)·max L⁻¹)
    assert eff.Cinv is not None
    cinv = float(np.linalg.eigvalsh(eff.Cinv)[-1])
    return cinv * float(np.max(eff.friction)) + math.sqrt(cinv * float(np.max(eff.lam)))


def _radius_bound(eff: EffectiveParams) -> float:
    """The ρ of :func:`bound`, before the cell modes are taken into account."""
    m = eff.mobility
    if eff.coupling == "dense":
        assert eff.A is not None
        return float(np.max(m * np.abs(eff.A).sum(axis=1)))
    assert eff.J is not None and eff.H is not None
    rho = float(np.max(m * np.abs(eff.lam)))
    if eff.J.shape[0]:
        h = float(np.max(np.abs(np.linalg.eigvalsh(eff.H))))
        jmj = float(np.linalg.eigvalsh((eff.J * m) @ eff.J.T)[-1])
        rho += h * max(jmj, 0.0)
    return rho


def _with_cell_modes(rho: float, eff: EffectiveParams) -> float:
    und = eff.underdamped == 1
    out = rho if not und.all() else 0.0
    if und.any():
        out = max(out, math.sqrt(rho) + float(np.max(eff.friction[und])))
    return out


def _perturbation(n: int) -> np.ndarray:
    v = np.random.default_rng(n).standard_normal(n)
    return v / np.linalg.norm(v)


def _spectral_radius(eff: EffectiveParams,
                     warm: np.ndarray | None) -> tuple[float, np.ndarray | None] | None:
    n = eff.active
    sm = np.sqrt(eff.mobility)
    if n <= EXACT_UP_TO:
        S = sm[:, None] * eff.dense() * sm[None, :]
        return float(np.max(np.abs(np.linalg.eigvalsh(S)))), None
    A = eff.A
    assert A is not None

    def matvec(v: np.ndarray) -> np.ndarray:
        return sm * (A @ (sm * v.ravel()))

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    # always a start vector of our own: ARPACK's default is drawn from its process-wide random
    # state, which would make the substep (and every run) depend on what ran before. A warm
    # start gets a fixed perturbation: an exact eigenvector would leave Lanczos no Krylov space
    # to build (a breakdown ARPACK answers with restarts).
    v0 = _perturbation(n)
    if warm is not None and warm.shape == (n,) and np.any(warm):
        v0 = warm / np.linalg.norm(warm) + 0.1 * v0
    try:
        vals, vecs = eigsh(op, k=1, which="LM", tol=TOLERANCE, v0=v0, ncv=min(n, 16),
                           maxiter=MAX_RESTARTS)
    except (ArpackNoConvergence, ArpackError):
        return None
    return float(abs(vals[0])), vecs[:, 0]
