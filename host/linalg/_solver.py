"""Thermodynamic linear solve: A x = b as the equilibrium mean of the device's overdamped cells.

Programmed with A' = A/sA and b' = b/sb the cells relax to x' ~ N(A'⁻¹b', κA'⁻¹), and
A'⁻¹b' = (sA/sb)·A⁻¹b, so x = c·x' with c = sb/sA. The answer is the time average of x' over
equilibrium runs; its error is measured, not assumed: the averaging is split into batches (one
device run each, its accumulator read at the end — all in ONE packet), and the spread of the
batch means gives the standard error (batch means). The averaging time comes from the first
(pilot) batches: the variance of a T-long time average falls as 1/T (for the OU process it is
2κ(A'⁻²)_ii/T per cell), so the pilot's measured variance density says how much more time the
requested tolerance needs. See docs/linalg.md.
"""
from __future__ import annotations

import math
import time
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import chi2

from host.errors import DeviceSaturated
from host.linalg._problem import (TAU_SAFETY, NotPositiveDefinite, Problem, calibration_notes,
                                  cg_estimate, check_temperature, check_vector, device_facts,
                                  lanczos, pow2_ceil, prepare, systematic_notes)

#: The error estimate is driven to tol/SAFETY: the realised error of a 64-cell solve fluctuates
#: around its RMS estimate by ~±20 % (about 20 effective independent directions for a condition
#: number of 30), so aiming at half the tolerance meets it with high probability. Time ∝ SAFETY².
SAFETY = 2.0
#: Batches in the pilot (≥ 10 so the batch variance has ≥ 9 degrees of freedom per cell).
PILOT_BATCHES = 10
#: Fewest batches in a follow-up packet, most per packet (7 transactions each; limit 512).
MIN_BATCHES, MAX_BATCHES = 4, 32
#: Batch length floor in relaxation times τ̂ (τ̂ = TAU_SAFETY/θmin'): adjacent batch means of the
#: slowest mode then correlate by ≤ 1/(2λL) ≈ 7 %, so batch means are nearly independent.
BATCH_TAUS = 5.0
#: Burn-in after a warm start (x0 or the previous solution), in τ̂.
WARM_BURN_TAUS = 3.0
#: Largest |x'| aimed at, as a fraction of the rail: high, so the ADC step is small next to x',
#: with room for the CG guess to be off by 2.5× (b' is a power of two, so |x'| lands in
#: (HEADROOM/2, HEADROOM]·VMAX) and a saturating run is retried smaller anyway. Thermal
#: fluctuations lower it (|x'| + 4σ ≤ VMAX/2).
HEADROOM = 0.4
#: Mean squared z-score of the first batch after a burn-in against the others above which it is
#: treated as still relaxing and dropped (≈ 1.3 for equilibrium batches with 8 degrees of freedom).
TRANSIENT_D2 = 4.0
#: Growth of the pooled variance density (Σ v̂) over the pilot's beyond which the batch means
#: are declared non-stationary (drift). Stationary estimates with ≥ 9 degrees of freedom per
#: cell, summed over cells, stay well within ±50 % (ideal profile: never triggered in 50 solves).
DRIFT_GROWTH = 2.5
#: How often a saturating run is retried with the bias scaled down 4× before giving up.
SATURATION_RETRIES = 3
#: ‖b − Ax‖² is compared with its thermal-noise law (expected²·χ²_n/n); above this quantile a
#: systematic error is reported in ``notes`` (false alarm 1 in 1000 on an ideal device).
RESIDUAL_P = 0.999
#: Most refinement steps ``refine=None`` (automatic) takes while the estimate misses ``tol``.
MAX_REFINE = 6

_LAST: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Solution:
    """A device solve of A x = b with its measured error.

    ``error_estimate`` is the per-cell error (original units): the batch-means error of the
    thermal noise, half an ADC step, and an equal share of ``systematic_error`` — the bound on
    what offsets, mismatch and converter steps did, from the part of the residual ‖b − Ax‖ that
    noise does not explain. ``error_norm`` = sqrt(Σ error_estimate²), ``relative_error_estimate``
    = error_norm/‖x‖; ``notes`` says in words what was found and done.
    """
    x: np.ndarray
    error_estimate: np.ndarray
    error_norm: float
    relative_error_estimate: float
    device_time: float          # τ0, burn-in included
    burn_in: float              # τ0 spent relaxing (not averaged)
    wall_time: float
    runs: int
    packets: int
    converged: bool
    tol: float
    temperature: float          # κ' on the device (V²)
    scale_A: float              # A' = A/scale_A
    scale_b: float              # b' = b/scale_b (last used)
    relaxation_time: float      # τ̂ in τ0 (device units), from the Lanczos estimate
    batches: int                # batch means used
    dropped_batches: int        # batches discarded as still relaxing
    dof: int                    # degrees of freedom of the variance estimate
    residual: float             # ‖b − A x‖/‖b‖, computed on the host
    residual_expected: float    # what thermal noise + ADC alone would give (same units)
    error_bound: float          # ‖b − A x‖/λmin (λmin estimated): a bound on ‖x − A⁻¹b‖ that
    #                             systematic errors cannot hide from
    systematic_error: float     # the systematic part of it (beyond what noise explains), in
    #                             error_norm already
    refinements: int            # iterative-refinement steps done
    notes: tuple[str, ...] = field(default=())


@dataclass
class _Batch:
    y: np.ndarray     # batch mean, original units
    length: float     # device time of the batch
    c: float          # x = c·x' for this batch
    phase: int


def _pool(batches: list[_Batch]) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted mean and per-cell variance density. var(y_k) = c_k² v / L_k, so weights
    w_k = L_k/c_k² and v̂ = Σ w_k (y_k − x̂)² / (K − 1) (device units: V²·τ0)."""
    w = np.array([bt.length / bt.c**2 for bt in batches])
    Y = np.array([bt.y for bt in batches])
    W = float(w.sum())
    xhat = (w[:, None] * Y).sum(0) / W
    v = (w[:, None] * (Y - xhat) ** 2).sum(0) / max(len(batches) - 1, 1)
    return xhat, v, W


def _finite_batch_factor(batches: list[_Batch], lam: float) -> float:
    """Batch means of finite length L under-estimate the long-run variance: for an OU mode of
    rate λ, E[s²_batch]/K ≈ (1 − K/((K − 1)·λL))·Var(grand mean) (the batch mean's own
    (1 − 1/(λL)) deficit plus the positive correlation of neighbours). Corrected for the slowest
    mode (λ = the Lanczos estimate of λmin', which dominates the variance) at the shortest L."""
    k = len(batches)
    if k < 2:
        return 1.0
    deficit = k / ((k - 1) * lam * min(bt.length for bt in batches))
    return 1.0 / max(1.0 - deficit, 0.5)


def _drop_transient(batches: list[_Batch], phase: int, q: float) -> int:
    """Drop leading batches of ``phase`` (which began right after a burn-in) while the first one
    is inconsistent with all the others: a burn-in that was too short shows up there, since a
    transient e^{−λt} decays within a batch. Returns how many were dropped."""
    dropped = 0
    while True:
        idx = next((i for i, bt in enumerate(batches) if bt.phase == phase), None)
        rest = [bt for i, bt in enumerate(batches) if i != idx]
        if idx is None or len(rest) < 3:
            return dropped
        first = batches[idx]
        xr, vr, Wr = _pool(rest)
        var = first.c**2 * vr / first.length + vr / Wr + 2 * q**2
        var = np.maximum(var, 1e-300)
        d2 = float(np.mean((first.y - xr) ** 2 / var))
        if d2 <= TRANSIENT_D2:
            return dropped
        batches.pop(idx)
        dropped += 1


@dataclass
class _Setup:
    """Per-call constants: the problem, its spectrum estimate and the device scaling."""
    dev: Any
    prob: Problem
    lmin: float           # Ritz estimate of λmin(A') (≥ the true value)
    lmax: float           # Ritz estimate of λmax(A) (original units)
    sA: float
    tau: float            # relaxation-time estimate τ̂ of A', τ0
    kappa: float          # κ' (V²)
    vmax: float
    head: float           # largest |x'| aimed at (V)
    q_dev: float          # half an ADC step (V)
    packet_wall: float    # wall-time budget of one packet (s)


@dataclass
class _Outcome:
    x: np.ndarray         # original units
    var: np.ndarray       # statistical variance of x per cell (batch means, corrected)
    q: float              # half an ADC step in original units (largest scale used)
    W: float              # Σ L_k/c_k²: the thermal-noise residual is N(0, 2κ'sA²/W · I)
    used: float
    burned: float
    runs: int
    batches: int
    dropped: int
    converged: bool
    c: float
    notes: list[str]


def _average(st: _Setup, rhs: np.ndarray, target_rel: float | None, target_abs: float | None,
             start: np.ndarray | None, max_time: float) -> _Outcome:
    """Equilibrium mean of the device programmed with (A', rhs/sb) until the batch-means error
    is below the target (relative to ‖x‖, or absolute), or max_time runs out."""
    dev, prob, n, vmax, tau = st.dev, st.prob, st.prob.n, st.vmax, st.tau
    guess = cg_estimate(prob.matvec, rhs)
    gnorm = float(np.linalg.norm(guess))
    c = pow2_ceil(float(np.max(np.abs(guess))) / st.head)

    def aim(norm: float) -> float:
        return target_abs if target_abs is not None else (target_rel or 0.0) * norm

    # burn-in from a cold start: the transient e^{−t/τ}·d0 must fall to 5 % of the aim
    cold_burn = tau * max(1.0, math.log(gnorm / max(0.05 * aim(gnorm), 1e-300)))
    L, K = BATCH_TAUS * tau, PILOT_BATCHES
    if start is not None:
        state: tuple = ("set", np.clip(start / c, -0.5 * vmax, 0.5 * vmax))
        burn = WARM_BURN_TAUS * tau
    else:
        state, burn = ("reset",), cold_burn
    if burn + K * L > max_time:
        raise ValueError(f"max_time is too short: this matrix relaxes in about {tau:.3g} τ0 and "
                         f"the pilot alone needs {burn + K * L:.3g} τ0 (left: {max_time:.3g})")
    notes: list[str] = []
    batches: list[_Batch] = []
    used, burned, runs, dropped, retries, phase = 0.0, 0.0, 0, 0, 0, 0
    program, bias_changed, converged = True, False, False
    check_phase: set[int] = {0}
    ref_density: float | None = None
    while True:
        t_packet = time.perf_counter()
        try:
            means = []
            with dev.batch():
                if program:
                    prepare(dev, st.kappa)
                    prob.upload(dev, st.sA)
                if program or bias_changed:
                    dev.load_bias(rhs / (c * st.sA))
                    dev.commit()
                if state[0] == "reset":
                    dev.reset_state()
                elif state[0] == "set":
                    dev.set_state(state[1])
                if burn > 0:
                    dev.run(burn)
                for _ in range(K):
                    dev.run(L)
                    means.append(dev.mean())
        except DeviceSaturated as exc:
            used += burn + K * L
            burned += burn
            runs += K + (burn > 0)
            retries += 1
            if retries > SATURATION_RETRIES or used + cold_burn + MIN_BATCHES * L > max_time:
                raise NotPositiveDefinite(
                    f"the device kept saturating, with the bias scaled down up to "
                    f"{4 ** (retries - 1)}×: A is not positive definite (or so ill-conditioned "
                    "that its equilibrium leaves the rails)") from exc
            dev.clear_saturation()
            c *= 4.0
            bias_changed, program = True, False
            state, burn, phase = ("reset",), cold_burn, phase + 1
            check_phase.add(phase)
            continue
        wall_per_tau = (time.perf_counter() - t_packet) / (burn + K * L)
        program = bias_changed = False
        used += burn + K * L
        burned += burn
        runs += K + (burn > 0)
        batches += [_Batch(m.value * c, L, c, phase) for m in means]
        if phase in check_phase:
            dropped += _drop_transient(batches, phase, st.q_dev * max(bt.c for bt in batches))
        xhat, v, W = _pool(batches)
        v *= _finite_batch_factor(batches, st.lmin)
        norm = float(np.linalg.norm(xhat))
        q = st.q_dev * max(bt.c for bt in batches)
        target2 = aim(norm) ** 2 - n * q**2   # the ADC floor is taken out of the budget
        if len(batches) >= PILOT_BATCHES - 2 and 0 < target2 and float(v.sum()) / W <= target2:
            converged = True
            break
        # stationary noise keeps the variance density v̂ (per unit time) constant as batches
        # accumulate; drift (a random walk of offsets) makes it grow with the time span. Then
        # more averaging does not help: stop and say so.
        density = float(v.sum())
        if ref_density is None:
            ref_density = density             # the pilot's
        elif density > DRIFT_GROWTH * ref_density > 0:
            notes.append(f"the batch-mean variance per unit time grew {density / ref_density:.1f}× "
                         "as the averaging went on: the device drifts, and averaging longer does "
                         "not reduce the error further; stopped")
            break
        # is x' well placed in the rails? (the CG guess may be off) — if not, rescale b
        state, burn = ("keep",), 0.0
        m = float(np.max(np.abs(xhat))) / c
        if m > 0.5 * vmax or m < st.head / 8:
            c_new = pow2_ceil(float(np.max(np.abs(xhat))) / st.head)
            if c_new != c:
                err = math.sqrt(float(v.sum()) / W)
                c, bias_changed = c_new, True
                state = ("set", np.clip(xhat / c, -0.5 * vmax, 0.5 * vmax))
                burn = tau * max(1.0, math.log(3 * err / max(0.05 * aim(norm), 1e-300)))
                check_phase.add(phase + 1)
        q = st.q_dev * max([bt.c for bt in batches] + [c])
        target2 = aim(norm) ** 2 - n * q**2
        if target2 <= 0:
            notes.append(f"the ADC step (±{q:.3g} per cell) alone exceeds the tolerance at this "
                         "scale; stopped early")
            break
        # the information W = Σ L_k/c_k² that makes Σ v̂/W ≤ target², as device time at scale c
        t_add = max(1.1 * float(v.sum()) / target2 - W, 0.0) * c**2
        L = max(BATCH_TAUS * tau, t_add / MAX_BATCHES)
        K = max(MIN_BATCHES, math.ceil(t_add / L))
        fit = int((st.packet_wall / wall_per_tau - burn) // L) if wall_per_tau > 0 else K
        K = max(1, min(K, fit))               # the rest goes in the next packet
        left = max_time - used - burn
        if K * L > left:
            K = int(left // L)
            if K < 1:
                break
        phase += 1
    xhat, v, W = _pool(batches)
    v *= _finite_batch_factor(batches, st.lmin)
    return _Outcome(x=xhat, var=v / W, q=st.q_dev * max(bt.c for bt in batches), W=W, used=used,
                    burned=burned, runs=runs, batches=len(batches), dropped=dropped,
                    converged=converged, c=c, notes=notes)


def solve(dev: Any, A: Any = None, b: Any = None, *, tol: float = 1e-2, x0: Any = None,
          warm_start: bool = False, max_time: float = 1e6, temperature: float | None = None,
          lowrank: tuple | None = None, rate: float = 1.0, refine: int | None = None,
          calibrate: bool = True) -> Solution:
    """Solve A x = b (A symmetric positive definite) on the device to relative error ``tol``.

    A dense, or ``lowrank=(J, H, lam)`` for A = Jᵀ H J + diag(lam) (uploaded factored; A is never
    formed). ``temperature``: the device's κ' (V²); None keeps the configured TEMPERATURE — lower
    is faster, the averaging time is ∝ κ'. ``x0`` (original units) or ``warm_start`` (start from
    this device's previous solution) shorten the burn-in. ``max_time`` caps device time (τ0);
    if the tolerance is not reached by then the result comes back with ``converged=False`` and a
    RuntimeWarning. ``rate``: the stiffest rate of A' in 1/τ0 (A' = A/sA with λmax(A') ≈ rate).

    The error estimate has two parts: the statistical one (thermal noise, by batch means, and the
    ADC step) and the systematic one — what offsets, mismatch and converter steps do to the
    equilibrium itself — bounded from the host's float64 residual: the part of ‖b − Ax‖ that
    noise does not explain, divided by λmin. Iterative refinement (x += device solve of
    A δ = b − A x) removes the systematic error step by step: ``refine=None`` (default) refines
    while the estimate misses ``tol`` (at most MAX_REFINE steps); an int does exactly that many.
    ``calibrate``: a device whose calibration is not valid (CAL_VALID = 0) is calibrated first
    (saved trims for its serial are tried; ``notes`` says what was done). A calibration resets
    the device's state, counts as a run, and writes the trims file of host.calibration.
    Raises ValueError for bad input, NotPositiveDefinite (a ValueError) when A is not SPD.
    """
    wall0, packets0 = time.perf_counter(), dev.stats.packets
    if not (0 < tol < 1):
        raise ValueError(f"tol must be in (0, 1), got {tol!r}")
    if not (max_time > 0 and math.isfinite(max_time)):
        raise ValueError(f"max_time must be a positive device time (τ0), got {max_time!r}")
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be positive, got {rate!r}")
    if refine is not None and (not isinstance(refine, int) or isinstance(refine, bool) or refine < 0):
        raise ValueError(f"refine must be None (automatic) or an integer ≥ 0, got {refine!r}")
    prob = Problem.from_inputs(A, lowrank, dev.n_cells)
    n = prob.n
    b = check_vector(b, n, "b")
    start = check_vector(x0, n, "x0") if x0 is not None else None
    if start is None and warm_start:
        prev = _LAST.get(dev)
        start = prev if prev is not None and prev.shape == (n,) else None
    if temperature is not None:
        check_temperature(temperature)
    spec = lanczos(prob.matvec, n)            # refuses an indefinite A before any device access
    notes: list[str] = list(calibration_notes(dev)) if calibrate else []
    kappa = check_temperature(dev.read("TEMPERATURE") if temperature is None else temperature)
    facts = device_facts(dev)
    vmax = facts.vmax
    sA = pow2_ceil(spec.lmax / rate)
    lmin = spec.lmin / sA
    tau = TAU_SAFETY / lmin
    if not np.any(b):
        return _trivial(n, tol, kappa, sA, tau, wall0, packets0, dev)
    sigma = math.sqrt(kappa / lmin)           # rms thermal excursion of the slowest mode (V)
    head = min(HEADROOM * vmax, 0.5 * vmax - 4.0 * sigma)
    if head < vmax / 32:
        raise ValueError(
            f"temperature {kappa:g} V² is too high for this matrix: thermal fluctuations of about "
            f"{sigma:.3g} V (sqrt(κ/λmin) with A scaled to λmax ≈ {rate:g}) reach the ±{vmax:g} V "
            "rails; lower the temperature or raise `rate`")
    st = _Setup(dev=dev, prob=prob, lmin=lmin, lmax=spec.lmax, sA=sA, tau=tau, kappa=kappa,
                vmax=vmax, head=head, q_dev=0.5 * facts.adc_lsb, packet_wall=facts.lease_s / 4)
    notes += systematic_notes(dev, facts)
    aim_rel = tol / SAFETY
    lam_low = spec.lmin / TAU_SAFETY          # a lower estimate of λmin(A) (original units)

    out = _average(st, b, aim_rel, None, start, max_time)
    x, last, total = out.x, out, [out]
    est = _estimate(prob, b, x, last, kappa, sA, lam_low)
    steps = MAX_REFINE if refine is None else refine
    while len(total) - 1 < steps and (refine is not None or est.relative > tol):
        r = b - prob.matvec(x)
        left = max_time - sum(o.used for o in total)
        if not np.any(r):
            break
        try:
            d = _average(st, r, None, aim_rel * float(np.linalg.norm(x)), None, left)
        except ValueError as exc:  # max_time used up
            notes.append(f"refinement stopped: {exc}")
            break
        total.append(d)
        x = x + d.x
        last = d
        est = _estimate(prob, b, x, last, kappa, sA, lam_low)
    used = sum(o.used for o in total)
    # converged: every device solve reached its aim and the estimate (statistical and
    # systematic) is within the tolerance asked for
    converged = all(o.converged for o in total) and est.relative <= tol
    for o in total:
        notes += o.notes
    if est.systematic > 0:
        notes.append(f"the residual ‖b − Ax‖ is {est.residual / est.expected:.1f}× what thermal "
                     f"noise and the ADC explain: a systematic error of up to ‖r_sys‖/λmin ≈ "
                     f"{est.systematic:.3g} ({est.systematic / est.norm:.2g} relative), included "
                     "in the error estimate" + (f" after {len(total) - 1} refinement step(s)"
                                                if len(total) > 1 else ""))
    if not converged:
        warnings.warn(f"linalg.solve did not reach tol={tol:g}: stopped at relative error estimate "
                      f"{est.relative:.3g} (aiming at {aim_rel:g}) after {used:.4g} τ0 of device "
                      f"time and {len(total) - 1} refinement step(s) (max_time {max_time:g}); see "
                      "Solution.notes", RuntimeWarning, stacklevel=2)
    _LAST[dev] = x.copy()
    bnorm = float(np.linalg.norm(b))
    return Solution(
        x=x, error_estimate=est.per_cell, error_norm=est.absolute,
        relative_error_estimate=est.relative,
        device_time=used, burn_in=sum(o.burned for o in total),
        wall_time=time.perf_counter() - wall0, runs=sum(o.runs for o in total),
        packets=dev.stats.packets - packets0, converged=converged, tol=tol, temperature=kappa,
        scale_A=sA, scale_b=out.c * sA, relaxation_time=tau, batches=last.batches,
        dropped_batches=sum(o.dropped for o in total), dof=last.batches - 1,
        residual=est.residual / bnorm, residual_expected=est.expected / bnorm,
        error_bound=est.residual / lam_low, systematic_error=est.systematic,
        refinements=len(total) - 1, notes=tuple(notes))


@dataclass
class _Estimate:
    per_cell: np.ndarray  # 1σ per cell: statistical, ADC and the systematic share
    absolute: float       # ‖per_cell‖
    relative: float
    norm: float           # ‖x‖
    systematic: float     # bound on the systematic error's norm
    residual: float       # ‖b − Ax‖
    expected: float       # what thermal noise and the ADC alone give


def _estimate(prob: Problem, b: np.ndarray, x: np.ndarray, last: _Outcome, kappa: float,
              sA: float, lam_low: float) -> _Estimate:
    """The error of ``x``: statistical from the last device solve (the earlier ones' noise is
    what that solve corrected), systematic from the host's float64 residual.

    Thermal noise alone gives A(x̂ − x) ~ N(0, 2κ'sA²/W · I), white; an ADC error δ, each cell
    uniform on a step of 2q, adds E‖Aδ‖² = q²(‖A‖_F²/3 + ‖A1‖²) (the mean term if the converter
    truncates). When the residual exceeds the RESIDUAL_P quantile of that law, a systematic
    part is detected; its size is what the expected noise does not explain,
    sqrt(‖r‖² − E‖r_noise‖²), and ‖A⁻¹r_sys‖ ≤ ‖r_sys‖/λmin bounds what it does to x."""
    n = x.size
    resid = float(np.linalg.norm(b - prob.matvec(x)))
    adc2 = last.q**2 * (prob.frobenius2() / 3 + float(np.sum(prob.matvec(np.ones(n)) ** 2)))
    expected = math.sqrt(n * 2 * kappa * sA**2 / last.W + adc2)
    noise_hi2 = expected**2 * chi2.ppf(RESIDUAL_P, n) / n
    # detected above the quantile; then what the noise does not explain, in expectation
    systematic = math.sqrt(resid**2 - expected**2) / lam_low if resid**2 > noise_hi2 else 0.0
    per_cell = np.sqrt(last.var + last.q**2 + systematic**2 / n)
    absolute = float(np.linalg.norm(per_cell))
    norm = float(np.linalg.norm(x))
    return _Estimate(per_cell=per_cell, absolute=absolute,
                     relative=absolute / norm if norm > 0 else math.inf, norm=norm,
                     systematic=systematic, residual=resid, expected=expected)


def _trivial(n: int, tol: float, kappa: float, sA: float, tau: float, wall0: float,
             packets0: int, dev: Any) -> Solution:
    """b = 0: x = 0 exactly (no device run is needed to know it)."""
    z = np.zeros(n)
    _LAST[dev] = z.copy()
    return Solution(x=z, error_estimate=z.copy(), error_norm=0.0, relative_error_estimate=0.0,
                    device_time=0.0, burn_in=0.0, wall_time=time.perf_counter() - wall0, runs=0,
                    packets=dev.stats.packets - packets0, converged=True, tol=tol,
                    temperature=kappa, scale_A=sA, scale_b=1.0, relaxation_time=tau, batches=0,
                    dropped_batches=0, dof=0, residual=0.0, residual_expected=0.0,
                    error_bound=0.0, systematic_error=0.0, refinements=0,
                    notes=("b = 0: the solution is 0, no run needed",))
