"""Exact propagation of the unsaturated overdamped core: a run costs a few matrix products,
whatever its length.

Without rails, overdamped cells obey the linear SDE dx = M(b − Ax)dt + sqrt(2κM) dW. In the
whitened coordinates y = M^{-½}x it reads dy = (M^½b − Sy)dt + sqrt(2κ) dW with S = M^½AM^½
symmetric, so in S's eigenbasis every mode q is an independent scalar Ornstein–Uhlenbeck
process of rate λ. Over a stretch of length t, a mode's end value and its time integral (the
accumulator needs ∫x) are jointly Gaussian given the start q0:

    E q(t) = e^{−λt} q0                    Var q(t) = κ(1 − e^{−2λt})/λ
    E ∫q   = (1 − e^{−λt}) q0/λ             Var ∫q   = 2κ g(λt)/λ³
    Cov(q(t), ∫q) = κ(1 − e^{−λt})²/λ²      g(u) = u − 2(1 − e^{−u}) + (1 − e^{−2u})/2

The eigenbasis comes from one of two decompositions, paid once per COMMIT:

- **full**: S = QΛQᵀ by a symmetric eigensolver (dense couplings, and low-rank ones with a
  non-uniform diagonal), O(N³) — only up to ``DECOMPOSE_UP_TO`` cells;
- **low rank on a uniform diagonal** (TNGD's G + λI on an ideal chip): S = μI + UᵀHU with
  U = JM^½. With UUᵀ = PΩPᵀ, the r columns B = UᵀPΩ^{-½}V (V the eigenvectors of
  Ω^½PᵀHPΩ^½, eigenvalues σ) carry the rates μ + σ and their complement the rate μ; B is never
  formed, only applied through J, so memory stays O(rN) and a stretch costs O(rN).

The same spectrum serves underdamped cells of one friction (device/analog/underdamped.py).
What neither covers, the core integrates with EM and says why (``AnalogCore.exact_reason``):
capacitive cells, mixed or differently damped cells, per-cell noise temperatures that differ, a
coupling that is not positive definite (it saturates: a matter for the rails), a size beyond the
eigensolver's budget. Rails are the other limit: :meth:`Spectrum.safe` says whether a stretch
can come near them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from device.analog import kernels

if TYPE_CHECKING:
    from device.analog.core import EffectiveParams

F64 = NDArray[np.float64]

DECOMPOSE_UP_TO = 1024
"""Largest number of active cells for the full eigendecomposition, paid at COMMIT under the
firmware lock (0.16 s at 1024 on 2 cores, 1.2 s at 2048); beyond it only low-rank couplings on a
uniform diagonal propagate exactly."""

RAIL_MARGIN = 7.0
"""A stretch is propagated exactly only if every cell's mean path stays at least this many
stationary standard deviations inside the rails (more for long stretches of many cells, see
:func:`margin`): otherwise EM integrates it and clamps at the rails as the chip would."""

UNSEEN_CROSSINGS = 1e-4
"""The expected number of rail crossings an exact stretch may step over, in the worst case of
every cell's mean path at the margin all along (Rice's rate of crossings of a level z standard
deviations out, ≈ rate/(2π)·e^{−z²/2} per cell and τ0, with the fastest rate)."""

THIN = 6
"""Up to this many columns, a product is taken column by column (matrix-vector)."""

POSITIVE_RTOL = 1e-9
"""Smallest eigenvalue, relative to the largest, for the coupling to count as positive definite."""


def margin(cells: int, t: float, fastest: float) -> float:
    """Standard deviations a stretch of length t keeps from the rails: RAIL_MARGIN, or more
    where cells·t·fastest/(2π)·e^{−z²/2} would exceed UNSEEN_CROSSINGS."""
    looks = cells * t * fastest / (2 * np.pi) / UNSEEN_CROSSINGS
    return max(RAIL_MARGIN, float(np.sqrt(2 * np.log(looks))) if looks > 1 else 0.0)


def _g(u: F64) -> F64:
    """u − 2(1 − e^{−u}) + (1 − e^{−2u})/2 ≈ u³/3 for small u, without the cancellation."""
    out = u - 2.0 * -np.expm1(-u) + 0.5 * -np.expm1(-2.0 * u)
    small = u < 0.5
    if small.any():
        us = u[small]
        term, total = us**3 / 6.0, np.zeros_like(us)
        for k in range(3, 24):  # Σ_{k≥3} (−1)^{k+1}(2^{k−1} − 2) u^k/k!
            total += (-1.0) ** (k + 1) * (2.0 ** (k - 1) - 2.0) * term
            term = term * us / (k + 1)
        out[small] = total
    return out


@dataclass(frozen=True)
class Stretch:
    """Per-rate coefficients of one stretch of length t (cached: runs repeat their lengths)."""

    decay: F64
    """e^{−λt}"""
    integral: F64
    """(1 − e^{−λt})/λ: the start deviation's weight in ∫q"""
    chol: F64
    """Lower Cholesky factor of the (q(t), ∫q) noise covariance per rate, shape (k, 3):
    l11, l21, l22 (for κ = 1)."""

    @classmethod
    def of(cls, rates: F64, t: float) -> Stretch:
        u = rates * t
        em = -np.expm1(-u)
        vq = -np.expm1(-2.0 * u) / rates
        cov = em * em / rates**2
        vi = 2.0 * _g(u) / rates**3
        l11 = np.sqrt(vq)
        l21 = np.divide(cov, l11, out=np.zeros_like(cov), where=l11 > 0)
        l22 = np.sqrt(np.maximum(vi - l21 * l21, 0.0))
        return cls(decay=np.exp(-u), integral=em / rates, chol=np.stack([l11, l21, l22], 1))


class Spectrum:
    """The installed overdamped coupling's eigen-structure in whitened coordinates.

    S = B diag(rates) Bᵀ + rest·(I − BBᵀ), B orthonormal (a×k): full decompositions have k = a
    and no complement.
    """

    def __init__(self, sqrt_m: F64, kappa: float, rates: F64, rest: float,
                 basis: F64 | None = None, J: F64 | None = None, coef: F64 | None = None) -> None:
        self.sqrt_m, self.kappa = sqrt_m, float(kappa)
        self.rates, self.rest = rates, float(rest)
        self._basis, self._J, self._coef = basis, J, coef
        self.friction: float | None = None
        """The cells' one friction γ when they are underdamped (device/analog/underdamped.py),
        None when they are overdamped."""
        self.oscillator_stretches: dict[float, tuple] = {}
        """underdamped.py's per-t transitions (its cache, as ``stretch`` is this class's)."""
        self._abs_basis: F64 | None = None      # |B| (full basis), made on first need
        self._rows: F64 | None = None           # ‖B_i·‖ (low rank), made on first need
        self.active = sqrt_m.size
        self.k = rates.size
        self.complement = self.active - self.k
        lo = float(rates.min()) if self.k else self.rest
        if self.complement:
            lo = min(lo, self.rest)
        self.slowest = lo
        self.fastest = max(float(rates.max()) if self.k else 0.0,
                           self.rest if self.complement else 0.0)
        # stationary std per cell: κM_i (S⁻¹)_ii, exact for a full basis, else bounded by 1/λmin
        if basis is not None and not self.complement:
            sinv = (basis * basis) @ (1.0 / rates)
        else:
            sinv = np.full(self.active, 1.0 / lo)
        self.std = np.sqrt(self.kappa * sqrt_m**2 * sinv)
        self._stretches: dict[float, tuple[Stretch, Stretch | None]] = {}
        self._target: Target | None = None

    # -- the basis as an operator ------------------------------------------------------------
    # A few columns go through matrix-vector products: BLAS's matrix-matrix path costs 5x more
    # for 2 columns (measured at N = 256).
    def coords(self, W: F64) -> F64:
        """Bᵀ W (W of shape (a, m))."""
        if self._basis is not None:
            return _product(self._basis.T, W)
        assert self._J is not None and self._coef is not None
        return _product(self._coef.T, _product(self._J, self.sqrt_m[:, None] * W))

    def expand(self, Z: F64) -> F64:
        """B Z (Z of shape (k, m))."""
        if self._basis is not None:
            return _product(self._basis, Z)
        assert self._J is not None and self._coef is not None
        return self.sqrt_m[:, None] * _product(self._J.T, _product(self._coef, Z))

    def stretch(self, t: float) -> tuple[Stretch, Stretch | None]:
        hit = self._stretches.get(t)
        if hit is None:
            rest = Stretch.of(np.array([self.rest]), t) if self.complement else None
            hit = (Stretch.of(self.rates, t), rest)
            if len(self._stretches) > 64:
                self._stretches.clear()
            self._stretches[t] = hit
        return hit

    # -- one stretch -------------------------------------------------------------------------
    def target(self, b: F64) -> Target:
        """The equilibrium of bias b (cached: a bias changes at COMMIT and when offsets drift)."""
        tg = self._target
        if tg is not None and np.array_equal(tg.b, b):
            return tg
        h = self.sqrt_m * b
        ch = self.coords(h[:, None])[:, 0]
        cstar = ch / self.rates
        ystar = self.expand(cstar[:, None])[:, 0]
        rest = np.zeros(0)
        if self.complement:
            rest = (h - self.expand(ch[:, None])[:, 0]) / self.rest
            ystar = ystar + rest
        self._target = Target(b.copy(), self.sqrt_m * ystar, ystar, cstar, rest)
        return self._target

    def safe(self, x0: F64, b: F64, t: float, vmax: float) -> bool:
        """Whether the mean path from x0 towards x* over [0, t], widened by :func:`margin`
        stationary standard deviations, stays inside the rails.

        The whitened deviation d(s) = y(s) − y* never grows in norm (S is positive definite),
        so |x_i(s) − x*_i| ≤ M_i^½‖d(0)‖ bounds the whole path at O(N) cost. Where that is too
        loose, the path is checked on the grid 0, s0·2^j, t (s0 a quarter of the fastest time
        constant), and between grid points by each mode's move over the interval: within
        [s_j, s] it is at most that (1 − e^{−λh} grows with h), and per cell at most
        :meth:`_row_bound` of it. The grid does not depend on t, so a stretch that is safe is
        safe when shortened.
        """
        tg = self.target(b)
        limit = vmax - margin(self.active, t, self.fastest) * self.std
        if np.any(np.abs(x0) >= limit) or np.any(np.abs(tg.xstar) >= limit):
            return False
        d = x0 / self.sqrt_m - tg.ystar
        radius = float(np.sqrt(d @ d))
        if np.all(np.abs(tg.xstar) + self.sqrt_m * radius < limit):
            return True
        c = self.coords(d[:, None])[:, 0]
        p = d - self.expand(c[:, None])[:, 0] if self.complement else None
        s0 = 0.25 / max(self.fastest, 1e-300)
        steps = int(np.ceil(np.log2(max(t / s0, 1.0)))) if t > s0 else 0
        times = np.concatenate([[0.0], s0 * 2.0 ** np.arange(steps), [t]])
        times = times[times <= t]
        D = self.expand(np.exp(-np.outer(self.rates, times)) * c[:, None])
        if p is not None:
            D += np.exp(-self.rest * times)[None, :] * p[:, None]
        path = np.abs(tg.xstar[:, None] + self.sqrt_m[:, None] * D)
        # between grid points (a mode's move within [s_j, s] is at most its move over
        # [s_j, s_j+1]): the explicit modes move cell i by at most Σ_m |B_im||Δ_m| (a full
        # basis) or ‖B_i·‖·‖Δ‖ (low rank: the row norms of B), the complement by |p_i| times
        # its own decay
        E = np.exp(-np.outer(self.rates, times))
        move = self._row_bound(-np.diff(E, axis=1) * np.abs(c)[:, None])
        if p is not None:
            move = move + np.abs(p)[:, None] * -np.diff(np.exp(-self.rest * times))[None, :]
        return bool(np.all(path[:, :-1] + self.sqrt_m[:, None] * move < limit[:, None]))

    def _row_bound(self, V: F64) -> F64:
        """An entrywise bound on |B V| for V ≥ 0 (k × m): |B| V for a full basis, else
        ‖B_i·‖ times the columns' norms (Cauchy–Schwarz on B's rows, whose norms, the leverage
        of U's row space, are made once per spectrum, O(r²N), on first need)."""
        if self._basis is not None:
            if self._abs_basis is None:
                self._abs_basis = np.abs(self._basis)
            return _product(self._abs_basis, V)
        if self._rows is None:
            assert self._J is not None and self._coef is not None
            K = self._coef @ self._coef.T                   # Σ_m coef_lm coef_l'm
            self._rows = np.sqrt(np.maximum(
                self.sqrt_m**2 * np.einsum("li,li->i", self._J, K @ self._J), 0.0))
            self._rows = np.minimum(self._rows * (1 + 1e-9), 1.0) if self.k else self._rows
        return self._rows[:, None] * np.sqrt(np.sum(V * V, axis=0))[None, :]

    def propagate(self, x: F64, b: F64, t: float, rng: np.random.Generator,
                  acc: F64 | None) -> None:
        """Draw x(t) and ∫x over the stretch exactly, given x(0) = x; write x, add to acc.

        The complement's part p = (I − BBᵀ)(y − y*) evolves at the one rate ``rest``; its
        noise is an iid vector projected onto the complement.
        """
        a, k, sm = self.active, self.k, self.sqrt_m
        tg = self.target(b)
        y0 = x / sm
        noisy = self.kappa > 0
        sk = np.sqrt(self.kappa)
        # one product for every projection: y0 and, with a complement, its two noises
        cols = [y0]
        if self.complement and noisy:
            cols += list(rng.standard_normal((2, a)))
        C = self.coords(np.stack(cols, 1))
        cy = C[:, 0]
        c0 = cy - tg.cstar
        s, sr = self.stretch(t)
        n = rng.standard_normal((2, k)) if noisy else np.zeros((2, k))
        ct = s.decay * c0 + sk * s.chol[:, 0] * n[0]
        ci = s.integral * c0 + sk * (s.chol[:, 1] * n[0] + s.chol[:, 2] * n[1])
        out = [ct, ci]
        if self.complement:
            out += [cy] + ([C[:, 1], C[:, 2]] if noisy else [])
        Y = self.expand(np.stack(out, 1))
        yt, yi = tg.ystar + Y[:, 0], tg.ystar * t + Y[:, 1]
        if self.complement:
            assert sr is not None
            p0 = y0 - Y[:, 2] - tg.rest
            pt, pi = sr.decay[0] * p0, sr.integral[0] * p0
            if noisy:
                n1, n2 = cols[1] - Y[:, 3], cols[2] - Y[:, 4]
                l11, l21, l22 = sr.chol[0]
                pt = pt + sk * l11 * n1
                pi = pi + sk * (l21 * n1 + l22 * n2)
            yt, yi = yt + pt, yi + pi
        x[:] = sm * yt
        if acc is not None:
            acc += sm * yi


    def sample_path(self, x: F64, b: F64, period: float, k: int, rng: np.random.Generator,
                    acc: F64 | None) -> F64:
        """k exact stretches of ``period`` in one go: returns x at the end of each (k×a), leaves
        the last in x and adds ∫x to acc. The modes run their recursions in a kernel; the
        basis is applied once to all k states (a matrix product instead of k vector ones). Of
        each stretch's integral, the part independent of the states sums to one Gaussian of k
        times the variance: one draw per mode instead of k."""
        a, m, sm = self.active, self.k, self.sqrt_m
        tg = self.target(b)
        y0 = x / sm
        s, sr = self.stretch(period)
        sk = float(np.sqrt(self.kappa))
        c = self.coords(y0[:, None])[:, 0]
        cy = c.copy()
        c -= tg.cstar
        states = np.empty((k, m))
        total = np.zeros(m)
        noise = rng.standard_normal((k, m)) if sk > 0 else np.zeros((k, m))
        kernels.ou_path(c, s.decay, s.integral, s.chol[:, 0], s.chol[:, 1], sk, noise,
                        states, total)
        if sk > 0:
            total += sk * np.sqrt(k) * s.chol[:, 2] * rng.standard_normal(m)
        cols = [states.T, total[:, None]] + ([cy[:, None]] if self.complement else [])
        Y = self.expand(np.concatenate(cols, 1))
        X = (tg.ystar[:, None] + Y[:, :k]).T                       # k × a (whitened)
        yi = tg.ystar * (k * period) + Y[:, k]
        if self.complement:
            assert sr is not None
            p = y0 - Y[:, k + 1] - tg.rest
            ps = np.empty((k, a))
            ptotal = np.zeros(a)
            l11, l21, l22 = sr.chol[0]
            raw = rng.standard_normal((a, k + 1)) if sk > 0 else np.zeros((a, k + 1))
            proj = raw - self.expand(self.coords(raw))             # onto the complement
            kernels.ou_path(p, np.full(a, sr.decay[0]), np.full(a, sr.integral[0]),
                            np.full(a, l11), np.full(a, l21), sk,
                            np.ascontiguousarray(proj[:, :k].T), ps, ptotal)
            ptotal += sk * np.sqrt(k) * l22 * proj[:, k]
            X += ps
            yi += ptotal
        X *= sm[None, :]
        x[:] = X[-1]
        if acc is not None:
            acc += sm * yi
        return X


def _product(M: F64, W: F64) -> F64:
    if W.shape[1] > THIN:
        return M @ W
    out = np.empty((M.shape[0], W.shape[1]))
    for j in range(W.shape[1]):
        out[:, j] = M @ W[:, j]
    return out


@dataclass(frozen=True)
class Target:
    """The equilibrium of one bias: x* and its whitened forms."""

    b: F64
    xstar: F64
    ystar: F64
    cstar: F64
    """Bᵀy*"""
    rest: F64
    """y*'s part in the complement of B (empty without one)"""


def decompose(eff: EffectiveParams, kappa_uniform: float) -> Spectrum:
    """The spectrum of the installed overdamped coupling, or a ValueError saying why there is
    none (the core then integrates with EM)."""
    a = eff.active
    sm = np.sqrt(eff.mobility)
    if eff.coupling == "lowrank":
        assert eff.J is not None and eff.H is not None
        diag = eff.mobility * eff.lam
        mu = float(diag[0]) if a else 0.0
        if a and np.ptp(diag) <= 1e-12 * max(abs(mu), 1e-300):
            return _lowrank(eff, sm, kappa_uniform, mu)
    if a > DECOMPOSE_UP_TO:
        kind = "a low-rank coupling on a non-uniform diagonal" if eff.coupling == "lowrank" \
            else "a dense coupling"
        raise ValueError(f"{kind} of {a} cells (the eigensolver's budget is {DECOMPOSE_UP_TO})")
    S = sm[:, None] * eff.dense() * sm[None, :]
    w, Q = np.linalg.eigh(S)
    _check_positive(w)
    return Spectrum(sm, kappa_uniform, w, 0.0, basis=np.ascontiguousarray(Q))


def _lowrank(eff: EffectiveParams, sm: F64, kappa: float, mu: float) -> Spectrum:
    assert eff.J is not None and eff.H is not None
    J, H = eff.J, eff.H
    if J.shape[0] == 0:
        _check_positive(np.array([mu]))
        return Spectrum(sm, kappa, np.zeros(0), mu, J=J, coef=np.zeros((0, 0)))
    omega, P = np.linalg.eigh(_scaled_gram(J, sm))   # U = J M^½ (r×a): UUᵀ, without U
    keep = omega > 1e-12 * max(float(omega[-1]), 1e-300)
    omega, P = omega[keep], P[:, keep]
    root = np.sqrt(omega)
    h = float(H[0, 0])
    if np.array_equal(H, h * np.eye(H.shape[0])):    # H = hI (TNGD's factor upload): UᵀHU = hUᵀU
        sig, coef = h * omega, P / root[None, :]
    else:
        sig, V = np.linalg.eigh(root[:, None] * (P.T @ H @ P) * root[None, :])
        coef = (P / root[None, :]) @ V               # B = Uᵀ coef
    rates = mu + sig
    # the complement's rate μ counts only if there is a complement (U of rank < N)
    _check_positive(np.concatenate([rates, [mu]]) if rates.size < J.shape[1] else rates)
    return Spectrum(sm, kappa, rates, mu, J=J, coef=np.ascontiguousarray(coef))


def _scaled_gram(J: F64, sm: F64, columns: int = 8192) -> F64:
    """(J M^½)(J M^½)ᵀ without a copy of J: a uniform mobility is a scalar (MOBILITY 1.0 decodes
    to 1 − 1.4e-14, not 1), anything else is summed over blocks of columns."""
    if sm.size == 0 or np.all(sm == sm[0]):
        return float(sm[0] if sm.size else 1.0) ** 2 * (J @ J.T)
    G = np.zeros((J.shape[0], J.shape[0]))
    for a in range(0, J.shape[1], columns):
        Jb = J[:, a:a + columns] * sm[a:a + columns]
        G += Jb @ Jb.T
    return G


def _check_positive(w: F64) -> None:
    if w.size and float(w.min()) <= POSITIVE_RTOL * max(float(np.abs(w).max()), 1e-300):
        raise ValueError(f"the coupling is not positive definite (smallest rate {w.min():.3g}): "
                         "it has no equilibrium inside the rails")
