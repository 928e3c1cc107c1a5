"""The analog core: N coupled noisy RC / RLC cells, as the firmware sees them.

Physics, per active cell i, with f = b − A x:

    overdamped:   dx = M f dt + sqrt(2 κ_i M) dW
    underdamped:  dx = v dt,  dv = (M f − Γ v) dt + sqrt(2 κ_i Γ M) dW

so every mix of cells shares the equilibrium x ~ N(A⁻¹b, κA⁻¹), v ~ N(0, κM) (κ_i = κ·noise_gain_i).

The core works in physical units (volts, 1/τ0) and does not quantise: DAC/ADC codes belong to
the firmware. It owns the analog non-idealities of its :class:`Profile`: coupling-gain mismatch
(symmetric per resistor pair), per-cell offsets, capacitance (mobility) mismatch — all fixed by
the chip ``serial`` — plus offset drift, rail saturation and ADC input noise, drawn from ``seed``.

A third coupling mode, ``capacitive``, is the published stochastic processing unit (Melanson et
al. 2023): RLC cells coupled through capacitors, so the coupling sits in the Maxwell capacitance
matrix C (``A``), with per-cell conductance G = 1/R (``friction``) and inverse inductance 1/L
(``lam``):

    C dx = (b − G x − v) dt + sqrt(2κ_i G) dW,   dv = L⁻¹ x dt

(x the node voltages, v the inductor currents). The energy ½xᵀCx + ½vᵀLv makes the equilibrium
x ~ N(0, κC⁻¹), v ~ N(b, κL⁻¹) when κ_i = κ for every cell: the voltages sample the Gaussian
whose precision matrix is C/κ, and their covariance inverts C.

Matrices in :class:`CoreParams` may be given full size (n_cells) or already cut to ``active``;
per-cell vectors are always full length n_cells (the firmware's memory windows).
"""

from __future__ import annotations

import math
import operator
import threading
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike, NDArray

from device.analog import kernels, propagation, stiffness, underdamped
from device.analog.profiles import Profile

F64 = NDArray[np.float64]

NOISE_BLOCK = 1 << 20
"""Normal draws per noise block (8 MiB): bounds memory and keeps the GIL-free kernel calls long."""

DEFAULT_STABILITY = 0.02
"""dt·rate for the automatic substep. EM's stationary variance of an overdamped mode λ is
κ/(λ(1 − dt·λ/2)); as rate ≥ λmax the stiffest mode is biased by at most stability/2 = 1 % and
softer modes proportionally less (tests/physics checks that the exact EM law of every test system
is within 0.4 standard errors of the physics, i.e. < 1/10 of the 5σ tolerances). Equilibrium
means carry no EM bias (the drift's fixed point is exact); a transient mean has a weak error of at
most stability/(2e) ≈ 0.4 % of the initial displacement. Cost: at least 1/stability = 50
substeps per time constant of the stiffest mode."""

MAX_DT = 1.0
"""Upper bound on the automatic substep (τ0), for couplings with no stiffness at all."""

DRIFT_HOLD = 1.0
"""Longest exact stretch on a chip whose offsets drift (τ0): the offsets are held piecewise
constant, as EM holds them over one noise block."""

INTEGRATORS = ("em", "exact")
"""``em``: Euler–Maruyama always (the reference); ``exact``: exact propagation wherever the
installed dynamics allow it (see device/analog/propagation.py), EM elsewhere."""

SYMMETRY_RTOL = 1e-9

MAX_MAGNITUDE = 1e12
"""Bound on every programmed number: keeps b − Ax and the noise finite for any N, so the
kernels (fastmath, no NaN checks) can never produce inf or NaN."""


@dataclass(frozen=True)
class CoreParams:
    """One complete parameter set, installed atomically by :meth:`AnalogCore.program`.

    Optional vectors default to: lam, bias = 0; mobility, friction, noise_gain = 1;
    underdamped = False.
    """

    active: int
    coupling: str = "dense"
    A: ArrayLike | None = None
    J: ArrayLike | None = None
    H: ArrayLike | None = None
    lam: ArrayLike | None = None
    bias: ArrayLike | None = None
    mobility: ArrayLike | None = None
    friction: ArrayLike | None = None
    underdamped: ArrayLike | None = None
    temperature: float = 0.0
    noise_gain: ArrayLike | None = None


@dataclass(frozen=True)
class EffectiveParams:
    """What the kernels actually integrate (mismatch applied, cut to the active cells)."""

    active: int
    coupling: str
    A: F64 | None
    J: F64 | None
    H: F64 | None
    lam: F64
    bias: F64
    mobility: F64
    friction: F64
    underdamped: NDArray[np.uint8]
    kappa: F64
    """Per-cell temperature κ·noise_gain (V²)."""
    rate: float
    """The stiffest rate of the dynamics (1/τ0), estimated with a margin: sets the automatic
    substep."""
    Cinv: F64 | None = None
    """Capacitive mode: the inverse of the (mismatched) Maxwell capacitance matrix ``A``."""

    def dense(self) -> F64:
        """The coupling as an active×active matrix (forms JᵀHJ + diag(lam) in low-rank mode; the
        capacitance matrix C in capacitive mode)."""
        if self.coupling in ("dense", "capacitive"):
            assert self.A is not None
            return self.A.copy()
        assert self.J is not None and self.H is not None
        return self.J.T @ self.H @ self.J + np.diag(self.lam)

    @property
    def noise_scale(self) -> F64:
        """Noise amplitude per sqrt(dt): sqrt(2κM) overdamped, sqrt(2κΓM) underdamped; the
        resistor's current noise sqrt(2κG) in capacitive mode."""
        if self.coupling == "capacitive":
            return np.sqrt(2.0 * self.kappa * self.friction)
        damping = np.where(self.underdamped == 1, self.friction, 1.0)
        return np.sqrt(2.0 * self.kappa * self.mobility * damping)


class Mismatch:
    """Fixed-pattern non-idealities of one chip, a pure function of (serial, shape, profile).

    Each pattern has its own child stream of ``SeedSequence(serial)`` so that generating one
    (e.g. the N×N dense gain, made lazily) never shifts another.
    """

    def __init__(self, n_cells: int, max_rank: int, profile: Profile, serial: int) -> None:
        self.n, self.r, self.p = n_cells, max_rank, profile
        self._seeds = np.random.SeedSequence(serial).spawn(5)
        self.offset = profile.offset_sigma * self._normal(2, (n_cells,))
        self.capacitance = np.clip(1.0 + profile.cap_sigma * self._normal(3, (n_cells,)), 0.1, None)
        self._dense_gain: F64 | None = None

    def _normal(self, stream: int, shape: tuple[int, ...]) -> F64:
        return np.random.default_rng(self._seeds[stream]).standard_normal(shape)

    def dense_gain(self) -> F64:
        """1 + g·G with G symmetric: one resistor per cell pair (made on first use, N² memory)."""
        if self._dense_gain is None:
            g = self._normal(0, (self.n, self.n))
            g = np.triu(g) + np.triu(g, 1).T
            self._dense_gain = 1.0 + self.p.gain_sigma * g
        return self._dense_gain

    def lowrank_gain(self) -> tuple[F64, F64, F64]:
        """Gains of the J array (r×N), the H array (r×r, symmetric) and the diagonal (N)."""
        rng = np.random.default_rng(self._seeds[1])
        gj = rng.standard_normal((self.r, self.n))
        gh = rng.standard_normal((self.r, self.r))
        gh = np.triu(gh) + np.triu(gh, 1).T
        gl = rng.standard_normal(self.n)
        s = self.p.gain_sigma
        return 1.0 + s * gj, 1.0 + s * gh, 1.0 + s * gl

    def apply(self, eff: dict, coupling: str, a: int) -> None:
        """Scale the nominal coupling and mobility in ``eff`` (active cells ``:a``) in place."""
        if coupling == "capacitive":
            # coupling capacitors carry the element mismatch, cell capacitors the cell's
            C = eff["A"] * (self.dense_gain()[:a, :a] if self.p.gain_sigma > 0 else 1.0)
            # (self.capacitance scales the mobility, 1/C, in the other modes)
            C[np.diag_indices(a)] = np.diag(eff["A"]) / self.capacitance[:a]
            eff["A"] = C
            return
        if self.p.gain_sigma > 0:
            if coupling == "dense":
                eff["A"] = eff["A"] * self.dense_gain()[:a, :a]
            else:
                gj, gh, gl = self.lowrank_gain()
                r = eff["J"].shape[0]
                eff["J"] = eff["J"] * gj[:r, :a]
                eff["H"] = eff["H"] * gh[:r, :r]
                eff["lam"] = eff["lam"] * gl[:a]
        eff["mobility"] = eff["mobility"] * self.capacitance[:a]


def _check_magnitude(arr: F64, name: str) -> None:
    if not arr.size:
        return
    # max and min propagate NaN and show ±inf: two passes and no temporaries (np.abs of a
    # 10⁵ × 320 factor is 256 MB of fresh pages)
    hi, lo = float(arr.max()), float(arr.min())
    if not (math.isfinite(hi) and math.isfinite(lo)):
        raise ValueError(f"{name} contains NaN or inf")
    if max(hi, -lo) > MAX_MAGNITUDE:
        raise ValueError(f"{name} has entries beyond ±{MAX_MAGNITUDE:g}")


def stiffness_bound(eff: EffectiveParams) -> float:
    """Cheap guaranteed upper bound on the fastest rate (see device/analog/stiffness.py)."""
    return stiffness.bound(eff)


class AnalogCore:
    """N coupled noisy cells with rails, mismatch and drift; driven by the firmware.

    ``x``, ``v`` (float64) and ``sat`` (uint8, sticky until :meth:`clear_saturation`) are the
    live state, full length ``n_cells``; cells ≥ ``active`` are held at 0. ``advance`` holds the
    core lock but releases the GIL inside the kernels, so other threads may call
    :meth:`read_adc_input` meanwhile.
    """

    Params = CoreParams
    default_integrator = "exact"

    def __init__(
        self, n_cells: int, max_rank: int, profile: Profile, serial: int, seed: int
    ) -> None:
        if n_cells < 1 or max_rank < 0:
            raise ValueError(f"need n_cells >= 1 and max_rank >= 0, got {n_cells}, {max_rank}")
        self.n_cells, self.max_rank = int(n_cells), int(max_rank)
        self.profile, self.serial = profile, int(serial)
        self.x = np.zeros(self.n_cells)
        self.v = np.zeros(self.n_cells)
        self.sat = np.zeros(self.n_cells, dtype=np.uint8)
        self.time = 0.0
        """Device time advanced since construction (τ0)."""
        self.mismatch = Mismatch(self.n_cells, self.max_rank, profile, self.serial)
        self.offset = self.mismatch.offset.copy()
        """Current per-cell bias offset (fixed pattern plus drift), b units."""
        self._lock = threading.RLock()
        self._top_mode: np.ndarray | None = None  # warm start of the next stiffness estimate
        self._noise = np.empty(0)
        self._stability, self._substep = DEFAULT_STABILITY, 0.0
        self.integrator = self.default_integrator
        self._spectrum: propagation.Spectrum | None = None
        self.exact_reason = ""
        """Why the installed dynamics are integrated by EM ("" when they propagate exactly)."""
        self._rails_memo: tuple | None = None
        self.exact_time = 0.0
        self.em_time = 0.0
        """Device time advanced by each integrator since construction (τ0)."""
        self.reseed(seed)
        self.program(CoreParams(active=0, coupling="lowrank", J=np.zeros((0, self.n_cells)),
                                H=np.zeros((0, 0))))

    # -- configuration ---------------------------------------------------------------------------

    def reseed(self, seed: int) -> None:
        """Restart the thermal-noise, drift and ADC-noise streams from ``seed``."""
        self.seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        drift, adc = np.random.SeedSequence(self.seed).spawn(2)
        self._rng_drift = np.random.Generator(np.random.PCG64(drift))
        self._rng_adc = np.random.Generator(np.random.PCG64(adc))

    def program(self, params: CoreParams) -> None:
        """Validate ``params``, apply this chip's mismatch and install them atomically (COMMIT)."""
        eff = self._effective(params)
        spectrum, reason = self._decompose(eff, self.integrator)
        eff = replace(eff, rate=self._rate(eff, spectrum))
        with self._lock:
            self._eff = eff
            self._spectrum, self.exact_reason = spectrum, reason
            a = eff.active
            self.x[a:] = 0.0
            self.v[a:] = 0.0
            self.v[:a][eff.underdamped == 0] = 0.0

    @property
    def effective(self) -> EffectiveParams:
        """The installed parameters as integrated (mismatch applied; bias includes offsets)."""
        a = self._eff.active
        return replace(self._eff, bias=self._eff.bias + self.offset[:a])

    def set_fidelity(self, stability: float = DEFAULT_STABILITY, substep: float = 0.0) -> None:
        """Emulator-only knob: substep = stability / stiffness bound, or a fixed ``substep`` > 0."""
        if not (0.0 < stability <= 1.0):
            raise ValueError(f"stability must be in (0, 1], got {stability}")
        if not 0.0 <= substep <= MAX_MAGNITUDE:
            raise ValueError(f"substep must be in [0, {MAX_MAGNITUDE:g}] (0 = automatic), "
                             f"got {substep}")
        with self._lock:
            self._stability, self._substep = float(stability), float(substep)

    def set_integrator(self, name: str) -> None:
        """Select "exact" (exact propagation where the dynamics allow it) or "em"."""
        if name not in INTEGRATORS:
            raise ValueError(f"integrator must be one of {', '.join(INTEGRATORS)}, got {name!r}")
        with self._lock:
            spectrum, reason = self._decompose(self._eff, name)
            self._eff = replace(self._eff, rate=self._rate(self._eff, spectrum))
            self.integrator, self._spectrum, self.exact_reason = name, spectrum, reason

    @property
    def exact(self) -> bool:
        """Whether the installed dynamics propagate exactly (away from the rails)."""
        return self._spectrum is not None

    @staticmethod
    def _decompose(eff: EffectiveParams, integrator: str
                   ) -> tuple[propagation.Spectrum | None, str]:
        """The spectrum for exact propagation, or None and the reason there is none."""
        if integrator == "em":
            return None, "Euler-Maruyama selected"
        a = eff.active
        if eff.coupling == "capacitive":
            return None, "capacitive coupling (RLC cells)"
        und = eff.underdamped == 1
        if und.any() and not und.all():
            return None, "underdamped cells mixed with overdamped ones"
        gamma = float(eff.friction[0]) if a and und.all() else None
        if gamma is not None and np.ptp(eff.friction) > 1e-12 * max(abs(gamma), 1e-300):
            return None, "underdamped cells of different frictions (FRICTION)"
        if a and np.ptp(eff.kappa) > 1e-12 * float(np.max(eff.kappa)):
            return None, "the cells' noise temperatures differ (NOISE_GAIN)"
        if a and float(np.min(eff.mobility)) <= 0:
            return None, "a cell with zero mobility"
        try:
            spectrum = propagation.decompose(eff, float(eff.kappa[0]) if a else 0.0)
            spectrum.friction = gamma
            return spectrum, ""
        except ValueError as e:
            return None, str(e)
        except np.linalg.LinAlgError as e:
            return None, f"the eigensolver failed ({e})"

    def stiffness(self) -> float:
        """The fastest rate of the installed dynamics (1/τ0) as the substep sees it: exact from
        the spectrum when one is installed, else a Lanczos estimate with a safety margin,
        capped by the guaranteed bound."""
        return self._eff.rate

    @property
    def dt(self) -> float:
        """The substep in use (τ0)."""
        if self._substep > 0:
            return self._substep
        return min(self._stability / self._eff.rate, MAX_DT) if self._eff.rate > 0 else MAX_DT

    # -- state -----------------------------------------------------------------------------------

    def set_state(self, x: ArrayLike, v: ArrayLike | None = None) -> None:
        """Write the initial condition (clipped to the rails; v defaults to rest)."""
        xs = self._vector(x, "x")
        vs = np.zeros(self.n_cells) if v is None else self._vector(v, "v")
        with self._lock:
            a = self._eff.active
            vmax = self.profile.vmax
            self.x[:] = np.clip(xs, -vmax, vmax)
            self.v[:] = vs
            self.x[a:] = 0.0
            self.v[a:] = 0.0
            self.v[:a][self._eff.underdamped == 0] = 0.0

    def reset_state(self) -> None:
        """x = v = 0 (does not clear the saturation flags)."""
        with self._lock:
            self.x[:] = 0.0
            self.v[:] = 0.0

    def clear_saturation(self) -> None:
        self.sat[:] = 0

    def read_adc_input(self) -> F64:
        """The node voltages as the ADC sees them: x plus input-referred noise (not quantised)."""
        x = self.x.copy()
        if self.profile.adc_noise > 0:
            x += self.profile.adc_noise * self._rng_adc.standard_normal(self.n_cells)
        return x

    # -- dynamics --------------------------------------------------------------------------------

    def advance(self, t: float, acc: F64 | None = None, exact: bool = True) -> int:
        """Integrate exactly ``t`` τ0 of device time; add ∫x dt to ``acc``; return clamp events.

        With a spectrum installed (:attr:`integrator` "exact") each stretch the rails cannot
        reach is drawn from the exact transition law; anything else (and every stretch under
        "em") is integrated by Euler–Maruyama. ``exact=False`` integrates this call by EM
        whatever the spectrum (a scheduler's EM chunks: whether a chunk is exact must not depend
        on its wall-time-sized length, or runs would not be reproducible). Offsets drift once
        per stretch (exact) or per noise block (EM).
        """
        if not (math.isfinite(t) and t >= 0.0):
            raise ValueError(f"advance time must be finite and >= 0, got {t}")
        self._check_acc(acc)
        with self._lock:
            eff = self._eff
            if t == 0.0:
                return 0
            acc_a = acc[: eff.active] if acc is not None else np.zeros(eff.active)
            spec = self._spectrum
            if spec is None or eff.active == 0 or not exact:
                clamps = self._advance_em(eff, t, acc_a)
            else:
                clamps, left = 0, t
                hold = DRIFT_HOLD if self.profile.drift_rate > 0 else math.inf
                while left > 0:
                    seg = left if left <= hold * (1 + 1e-9) else hold
                    clamps += self._advance_exact(eff, spec, seg, acc_a)
                    left -= seg
            self.time += t
            return clamps

    def _check_acc(self, acc: F64 | None) -> None:
        if acc is not None and (acc.shape != (self.n_cells,) or acc.dtype != np.float64
                                or not acc.flags.c_contiguous):
            raise ValueError(f"acc must be a contiguous float64 array of shape ({self.n_cells},)")

    def exact_horizon(self) -> float:
        """The longest stretch ``advance`` propagates exactly in one piece (τ0): a drift hold,
        unbounded without drift, 0 when the installed dynamics are EM's. Whether a given
        stretch is exact also depends on the rails: :meth:`exact_safe`."""
        with self._lock:
            if self._spectrum is None or self._eff.active == 0:
                return 0.0
            return DRIFT_HOLD if self.profile.drift_rate > 0 else math.inf

    def exact_safe(self, t: float) -> bool:
        """Whether ``advance(t)`` (t within :meth:`exact_horizon`) will be one exact stretch:
        its mean path keeps clear of the rails (see propagation.Spectrum.safe)."""
        with self._lock:
            spec = self._spectrum
            return spec is not None and self._eff.active > 0 and self._clear_of_rails(spec, t)

    def _clear_of_rails(self, spec: propagation.Spectrum, t: float) -> bool:
        """The rails check of a stretch of t from the current state, remembered for that state:
        the run thread asks before a stretch (to size it) and ``advance`` again inside it, and
        for 10⁵ cells the check is tens of milliseconds."""
        a = self._eff.active
        b = self._eff.bias + self.offset[:a]
        x, v = self.x[:a], self.v[:a]
        memo = self._rails_memo
        if (memo is not None and memo[0] is spec and memo[1] == t and np.array_equal(memo[2], x)
                and np.array_equal(memo[3], v) and np.array_equal(memo[4], b)):
            return memo[5]
        vmax = self.profile.vmax
        ok = (underdamped.safe(spec, x, v, b, t, vmax) if spec.friction is not None
              else spec.safe(x, b, t, vmax))
        self._rails_memo = (spec, t, x.copy(), v.copy(), b.copy(), ok)
        return ok

    def sample_run(self, period: float, k: int, acc: F64 | None = None) -> F64 | None:
        """k stretches of ``period`` propagated exactly at once, returning the node voltages as
        the ADC sees them at the end of each (k × n_cells, as ``read_adc_input``): the batched
        form of k × (advance(period), read_adc_input()). None, with nothing changed, when the
        stretch is not exact's (EM, rails within reach, or longer than a drift hold). A drawn
        path that crosses a rail all the same (beyond the margin's odds) is thrown away and the
        k periods integrated by EM, which clamps."""
        k = operator.index(k)
        if not (k >= 1 and math.isfinite(period) and period > 0):
            raise ValueError(f"need k >= 1 and period > 0, got {k}, {period}")
        self._check_acc(acc)
        with self._lock:
            spec, eff = self._spectrum, self._eff
            a, vmax, total = eff.active, self.profile.vmax, k * period
            if spec is None or a == 0 or spec.friction is not None or (
                    self.profile.drift_rate > 0 and total > DRIFT_HOLD * (1 + 1e-9)):
                return None   # (underdamped cells: one stretch per sample)
            b = eff.bias + self.offset[:a]
            x = self.x[:a]
            if not self._clear_of_rails(spec, total):
                return None
            acc_a = acc[:a] if acc is not None else np.zeros(a)
            x0, acc0 = x.copy(), acc_a.copy()
            X = spec.sample_path(x, b, period, k, self._rng, acc_a)
            out = np.zeros((k, self.n_cells))
            if np.all(np.abs(X) < vmax):
                self.exact_time += total
                self._drift(total)
                out[:, :a] = X
            else:
                x[:], acc_a[:] = x0, acc0
                for j in range(k):
                    self._advance_em(eff, period, acc_a)
                    out[j, :a] = x
            self.time += total
            if self.profile.adc_noise > 0:
                out += self.profile.adc_noise * self._rng_adc.standard_normal((k, self.n_cells))
            return out

    def _advance_exact(self, eff: EffectiveParams, spec: propagation.Spectrum, t: float,
                       acc: F64) -> int:
        """One stretch: exact if its mean path stays clear of the rails, else EM."""
        a = eff.active
        b = eff.bias + self.offset[:a]
        x, v = self.x[:a], self.v[:a]
        vmax = self.profile.vmax
        resonant = spec.friction is not None
        if self._clear_of_rails(spec, t):
            x0, v0, acc0 = x.copy(), v.copy(), acc.copy()
            if resonant:
                underdamped.propagate(spec, x, v, b, t, self._rng, acc)
            else:
                spec.propagate(x, b, t, self._rng, acc)
            if np.all(np.abs(x) < vmax):
                self.exact_time += t
                self._drift(t)
                return 0
            # an excursion the margin did not foresee: the rails decide, so EM
            x[:], v[:], acc[:] = x0, v0, acc0
        return self._advance_em(eff, t, acc)

    def _advance_em(self, eff: EffectiveParams, t: float, acc_a: F64) -> int:
        """Full substeps of :attr:`dt`, the last one shortened to land on ``t``. Noise is drawn
        in blocks of at most NOISE_BLOCK numbers; offsets drift once per block."""
        dt, a = self.dt, eff.active
        nsteps = max(1, math.ceil(t / dt * (1.0 - 1e-12)))
        last = t - (nsteps - 1) * dt
        if abs(last - dt) <= 1e-9 * dt:  # t is a whole number of substeps (up to rounding)
            last = dt
        block = max(1, NOISE_BLOCK // max(a, 1))
        clamps, done = 0, 0
        full = nsteps if last == dt else nsteps - 1
        while done < full:
            m = min(block, full - done)
            clamps += self._run(eff, m, dt, acc_a)
            done += m
            self._drift(m * dt)
        if full < nsteps:
            clamps += self._run(eff, 1, last, acc_a)
            self._drift(last)
        self.em_time += t
        return clamps

    def _run(self, eff: EffectiveParams, m: int, dt: float, acc: F64) -> int:
        """Draw the noise for ``m`` substeps and hand them to the kernel (GIL released)."""
        a = eff.active
        if a == 0:
            return 0
        sig = eff.noise_scale * math.sqrt(dt)
        if self._noise.size < m * a:
            self._noise = np.empty(min(max(m * a, 1 << 16), max(NOISE_BLOCK, a)))
        xi = self._noise[: m * a].reshape(m, a)
        if sig.any():
            self._rng.standard_normal(out=xi)
        else:
            xi[:] = 0.0  # zero temperature: deterministic, no draws
        b = eff.bias + self.offset[:a]
        x, v, sat = self.x[:a], self.v[:a], self.sat[:a]
        common = (eff.mobility, eff.friction, eff.underdamped, sig, xi, dt,
                  self.profile.vmax, sat, acc)
        if eff.coupling == "capacitive":
            return int(kernels.em_capacitive(x, v, eff.Cinv, b, eff.friction, eff.lam, sig, xi,
                                             dt, self.profile.vmax, sat, acc))
        if eff.coupling == "dense":
            return int(kernels.em_dense(x, v, eff.A, b, *common))
        return int(kernels.em_lowrank(x, v, eff.J, eff.H, eff.lam, b, *common))

    def _drift(self, t: float) -> None:
        rate = self.profile.drift_rate
        if rate > 0:
            self.offset += rate * math.sqrt(t) * self._rng_drift.standard_normal(self.n_cells)

    # -- validation ------------------------------------------------------------------------------

    def _vector(self, value: ArrayLike | None, name: str, default: float | None = None) -> F64:
        if value is None:
            if default is None:
                raise ValueError(f"{name} is required")
            return np.full(self.n_cells, default)
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (self.n_cells,):
            raise ValueError(f"{name} must have shape ({self.n_cells},), got {arr.shape}")
        _check_magnitude(arr, name)
        return arr

    @staticmethod
    def _matrix(value: ArrayLike | None, name: str, shapes: list[tuple[int, int]],
                symmetric: bool) -> F64:
        if value is None:
            raise ValueError(f"{name} is required for this coupling mode")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 2 or arr.shape not in shapes:
            raise ValueError(f"{name} must have shape {' or '.join(map(str, shapes))}, "
                             f"got {arr.shape}")
        _check_magnitude(arr, name)
        if symmetric:
            scale = float(np.max(np.abs(arr), initial=0.0))
            if np.max(np.abs(arr - arr.T), initial=0.0) > SYMMETRY_RTOL * scale:
                raise ValueError(f"{name} must be symmetric (one coupling element per pair)")
            arr = 0.5 * (arr + arr.T)
        return arr

    @staticmethod
    def _capacitance_inverse(C: F64) -> F64:
        """C⁻¹ of a Maxwell capacitance matrix, which must be positive definite (a physical
        network of positive capacitors is; anything else has no stable equilibrium)."""
        if C.shape[0] == 0:
            return C.copy()
        w, q = np.linalg.eigh(C)
        if w[0] <= 1e-12 * max(abs(w[-1]), 1e-300):
            raise ValueError(f"the capacitance matrix must be positive definite (smallest "
                             f"eigenvalue {w[0]:.3g}, largest {w[-1]:.3g})")
        return np.ascontiguousarray((q / w) @ q.T)

    def _effective(self, p: CoreParams) -> EffectiveParams:
        n, a = self.n_cells, p.active
        if not (isinstance(a, (int, np.integer)) and 0 <= a <= n):
            raise ValueError(f"active must be an int in 0..{n}, got {a!r}")
        a = int(a)
        if p.coupling not in ("dense", "lowrank", "capacitive"):
            raise ValueError(f"coupling must be 'dense', 'lowrank' or 'capacitive', got {p.coupling!r}")
        if not 0 <= p.temperature <= MAX_MAGNITUDE:
            raise ValueError(f"temperature must be in [0, {MAX_MAGNITUDE:g}], got {p.temperature}")
        vec = {
            "lam": self._vector(p.lam, "lam", 0.0),
            "bias": self._vector(p.bias, "bias", 0.0),
            "mobility": self._vector(p.mobility, "mobility", 1.0),
            "friction": self._vector(p.friction, "friction", 1.0),
            "noise_gain": self._vector(p.noise_gain, "noise_gain", 1.0),
        }
        for name in ("mobility", "friction", "noise_gain"):
            if np.any(vec[name] < 0):
                raise ValueError(f"{name} must be >= 0")
        und = np.zeros(n, dtype=bool) if p.underdamped is None else np.asarray(p.underdamped)
        if und.shape != (n,) or not (und.dtype == bool or np.isin(und, (0, 1)).all()):
            raise ValueError(f"underdamped must be a boolean array of shape ({n},)")
        eff: dict = {k: v[:a].copy() for k, v in vec.items() if k != "noise_gain"}
        eff.update(A=None, J=None, H=None)
        if p.coupling == "capacitive":
            und = np.ones(n, dtype=bool)  # every cell is an RLC resonator: its current is state
        if p.coupling in ("dense", "capacitive"):
            eff["A"] = self._matrix(p.A, "A", [(n, n), (a, a)], symmetric=True)[:a, :a]
        else:
            J = np.asarray(p.J if p.J is not None else np.zeros((0, n)), dtype=np.float64)
            r = J.shape[0] if J.ndim == 2 else -1
            if not 0 <= r <= self.max_rank:
                raise ValueError(f"J must be (rank, n) with rank <= max_rank={self.max_rank}, "
                                 f"got shape {J.shape}")
            eff["J"] = self._matrix(J, "J", [(r, n), (r, a)], symmetric=False)[:, :a]
            eff["H"] = self._matrix(p.H if p.H is not None else np.zeros((0, 0)), "H",
                                    [(r, r)], symmetric=True)
        self.mismatch.apply(eff, p.coupling, a)
        if p.coupling == "capacitive":
            eff["Cinv"] = self._capacitance_inverse(eff["A"])
            if a and (np.any(eff["lam"] <= 0) or np.any(eff["friction"] < 0)):
                raise ValueError("capacitive mode needs 1/L (DIAG) > 0 and G (FRICTION) >= 0 on "
                                 "every active cell")
        eff = {k: (np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v)
               for k, v in eff.items()}
        out = EffectiveParams(
            active=a, coupling=p.coupling, underdamped=und[:a].astype(np.uint8),
            kappa=float(p.temperature) * vec["noise_gain"][:a], rate=0.0, **eff,
        )
        return out

    def _rate(self, eff: EffectiveParams, spectrum: propagation.Spectrum | None) -> float:
        """The stiffest rate for EM's substep: exact from the spectrum when there is one (its
        cells are overdamped: λmax of M^½AM^½), else the stiffness estimate."""
        if spectrum is not None:
            rate = spectrum.fastest * (1.0 + 1e-9)  # never below λmax's other roundings
            if spectrum.friction is not None:       # oscillators: √λmax + Γ, as stiffness.bound
                rate = math.sqrt(rate) + spectrum.friction
            return rate
        rate, self._top_mode = stiffness.rate(eff, self._top_mode)
        return rate
