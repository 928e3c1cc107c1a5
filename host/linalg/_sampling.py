"""Gaussian sampling, inverse and log-determinant from the device's equilibrium samples.

Programmed with A' = A/sA, b' = b/sb and temperature κ', the cells sample
x' ~ N(A'⁻¹b', κ'A'⁻¹). With c = sb/sA and x = c·x':

    mean  c·A'⁻¹b' = c·sA·A⁻¹b/sb = A⁻¹b
    cov   c²·κ'·A'⁻¹ = c²·κ'·sA·A⁻¹

so the requested temperature κ in original units needs κ' = κ/(c²·sA) (``sample``), and
A⁻¹ = Σ'/(κ'·sA) from the sample covariance Σ' in device units (``inv``, b' = 0). c is a
power of two chosen so mean + 4σ stays inside half the rail. Samples are taken every
``period`` (default 2 relaxation-time estimates, so the slowest mode decorrelates to e⁻²/TAU_SAFETY);
the residual lag-1 autocorrelation r_i is measured and folded into the error bars.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import polygamma, psi

from host.errors import DeviceSaturated
from host.linalg._problem import (TAU_SAFETY, NotPositiveDefinite, Problem, cg_estimate,
                                  check_temperature, check_vector, device_facts, lanczos,
                                  pow2_ceil, prepare, systematic_notes, calibration_notes)

#: Sample spacing and burn-in (from a zero-mean start) in relaxation-time estimates τ̂.
PERIOD_TAUS, BURN_TAUS = 2.0, 4.0
#: The slowest mode's rms excursion aimed at, as a fraction of the rail (inv/logdet).
SPREAD = 1.0 / 8.0
SATURATION_RETRIES = 3


@dataclass(frozen=True)
class SampleInfo:
    """How the samples were taken (``return_info=True``)."""
    temperature: float          # κ realised in original units (after f32 rounding of κ')
    device_temperature: float   # κ' written to the device (V²)
    scale_A: float              # A' = A/scale_A
    output_scale: float         # x = output_scale·x' (= sb/sA)
    period: float               # τ0 between samples
    burn_in: float              # τ0
    relaxation_time: float      # τ̂, τ0
    n_eff: np.ndarray           # per-cell effective sample size n(1 − r)/(1 + r)
    lag1: np.ndarray            # per-cell lag-1 autocorrelation of the samples
    mean: np.ndarray            # sample mean, original units
    mean_error: np.ndarray      # its standard error
    device_time: float
    wall_time: float
    packets: int
    notes: tuple[str, ...] = field(default=())


def _lag1(X: np.ndarray) -> np.ndarray:
    Z = X - X.mean(0)
    den = (Z * Z).sum(0)
    num = (Z[1:] * Z[:-1]).sum(0)
    r = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return np.clip(r, 0.0, 0.95)  # negative lag-1 correlation is noise here; cap the inflation


class _Draw:
    """Program the device once and draw n samples, retrying a saturated run at a smaller scale."""

    def __init__(self, dev: Any, prob: Problem, rate: float, calibrate: bool = True) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be positive, got {rate!r}")
        self.dev, self.prob = dev, prob
        self.spec = lanczos(prob.matvec, prob.n)  # refuses an indefinite A before device access
        self.notes = calibration_notes(dev) if calibrate else ()
        self.facts = device_facts(dev)
        self.sA = pow2_ceil(self.spec.lmax / rate)
        self.lmin = self.spec.lmin / self.sA
        self.tau = TAU_SAFETY / self.lmin
        self.device_time = 0.0

    def run(self, n: int, kappa_dev: float, bias_dev: np.ndarray, state: np.ndarray | None,
            period: float, burn: float) -> np.ndarray:
        dev, vmax = self.dev, self.facts.vmax
        with dev.batch():
            prepare(dev, kappa_dev)
            self.prob.upload(dev, self.sA)
            dev.load_bias(bias_dev)
            dev.commit()
            if state is None:
                dev.reset_state()
            else:
                dev.set_state(np.clip(state, -0.5 * vmax, 0.5 * vmax))
        self.device_time += burn + n * period
        return dev.samples(n, period, burn_in=burn)


def wishart_logdet(S: np.ndarray, nu: float) -> tuple[float, float]:
    """Unbiased ln|Σ| and its standard error from a sample covariance S with ν degrees of
    freedom (νS ~ W_d(Σ, ν)): E ln|νS| = ln|Σ| + d ln 2 + Σᵢ ψ((ν − i + 1)/2),
    Var ln|νS| = Σᵢ ψ′((ν − i + 1)/2). The plain ln|S| is biased low by ≈ d(d + 1)/(2ν)."""
    dim = S.shape[0]
    sign, ld_s = np.linalg.slogdet(S)
    if sign <= 0:
        raise NotPositiveDefinite("the sample covariance is singular: no usable samples")
    k = nu - np.arange(dim)  # ν − i + 1 for i = 1..d
    ld = ld_s + dim * math.log(nu) - dim * math.log(2.0) - float(np.sum(psi(k / 2)))
    return ld, math.sqrt(float(np.sum(polygamma(1, k / 2))))


def _check_count(n: int, what: str, least: int = 2) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < least:
        raise ValueError(f"{what} must be an integer ≥ {least}, got {n!r}")
    return int(n)


def _times(draw: _Draw, period: float | None, burn_in: float | None) -> tuple[float, float]:
    p = PERIOD_TAUS * draw.tau if period is None else float(period)
    bi = BURN_TAUS * draw.tau if burn_in is None else float(burn_in)
    if not (p > 0 and math.isfinite(p)) or not (bi >= 0 and math.isfinite(bi)):
        raise ValueError(f"need period > 0 and burn_in ≥ 0, got {period!r}, {burn_in!r}")
    return p, bi


def _zero_mean_samples(dev: Any, A: Any, lowrank: Any, n: int, temperature: float | None,
                       period: float | None, burn_in: float | None, rate: float, calibrate: bool
                       ) -> tuple[np.ndarray, float, _Draw, float, float, float]:
    """Samples of x' ~ N(0, κ'A'⁻¹) (b = 0) for inv and logdet; κ' shrinks 4× on saturation."""
    wall0 = time.perf_counter()
    prob = Problem.from_inputs(A, lowrank, dev.n_cells)
    draw = _Draw(dev, prob, rate, calibrate)
    vmax = draw.facts.vmax
    kappa = (SPREAD * vmax) ** 2 * draw.lmin if temperature is None else check_temperature(temperature)
    if kappa <= 0:
        raise ValueError("temperature must be > 0: the covariance is what is measured")
    if 4 * math.sqrt(kappa / draw.lmin) > 0.5 * vmax:
        raise ValueError(f"temperature {kappa:g} V² is too high for this matrix: fluctuations "
                         f"sqrt(κ/λmin) ≈ {math.sqrt(kappa / draw.lmin):.3g} V reach the rails")
    p, bi = _times(draw, period, burn_in)
    for attempt in range(SATURATION_RETRIES + 1):
        try:
            X = draw.run(n, kappa, np.zeros(prob.n), None, p, bi)
            break
        except DeviceSaturated as exc:
            dev.clear_saturation()
            if attempt == SATURATION_RETRIES:
                raise NotPositiveDefinite(
                    "the device saturated even at a 64× lower temperature: the matrix is not "
                    "positive definite (or nearly singular)") from exc
            kappa /= 4.0
    kappa_f32 = float(np.float32(kappa))  # what the TEMPERATURE register holds
    return X, kappa_f32, draw, p, bi, wall0


def _info(draw: _Draw, X: np.ndarray, c: float, kappa_orig: float, kappa_dev: float, p: float,
          bi: float, wall0: float, packets0: int) -> SampleInfo:
    r = _lag1(X)
    n = X.shape[0]
    n_eff = n * (1 - r) / (1 + r)
    Y = X * c
    return SampleInfo(
        temperature=kappa_orig, device_temperature=kappa_dev, scale_A=draw.sA, output_scale=c,
        period=p, burn_in=bi, relaxation_time=draw.tau, n_eff=n_eff, lag1=r, mean=Y.mean(0),
        mean_error=Y.std(0, ddof=1) / np.sqrt(n_eff), device_time=draw.device_time,
        wall_time=time.perf_counter() - wall0, packets=draw.dev.stats.packets - packets0,
        notes=draw.notes + systematic_notes(draw.dev, draw.facts))


def inv(dev: Any, A: Any = None, *, n_samples: int = 1000, temperature: float | None = None,
        period: float | None = None, burn_in: float | None = None, lowrank: tuple | None = None,
        rate: float = 1.0, return_info: bool = False, calibrate: bool = True) -> Any:
    """A⁻¹ from the equilibrium covariance: Σ' = κ'A'⁻¹ ⇒ A⁻¹ = Σ'/(κ'·sA). Returns
    (Ainv, error) with error_ij the standard error of entry ij:
    sqrt((Σ_ii Σ_jj + Σ_ij²)·g_ij/(n − 1)), g_ij = (1 + r_i r_j)/(1 − r_i r_j) for the measured
    lag-1 autocorrelations (the Wishart variance, inflated for correlated samples).
    ``temperature`` is κ' on the device (None: the slowest mode's rms ≈ VMAX/8)."""
    packets0 = dev.stats.packets
    n = _check_count(n_samples, "n_samples", 3)
    X, kappa, draw, p, bi, wall0 = _zero_mean_samples(dev, A, lowrank, n, temperature, period,
                                                      burn_in, rate, calibrate)
    S = np.cov(X, rowvar=False, ddof=1).reshape(X.shape[1], X.shape[1])
    r = _lag1(X)
    rr = np.outer(r, r)
    g = (1 + rr) / (1 - rr)
    d = np.diag(S)
    scale = kappa * draw.sA
    Ainv = S / scale
    err = np.sqrt((np.outer(d, d) + S**2) * g / (n - 1)) / scale
    if return_info:
        return Ainv, err, _info(draw, X, 1.0, kappa * draw.sA, kappa, p, bi, wall0, packets0)
    return Ainv, err


def logdet(dev: Any, A: Any = None, *, n_samples: int = 4000, temperature: float | None = None,
           period: float | None = None, burn_in: float | None = None, lowrank: tuple | None = None,
           rate: float = 1.0, return_info: bool = False, calibrate: bool = True) -> Any:
    """ln det A from the sample covariance, bias-corrected with the Wishart law.

    With ν degrees of freedom, νS ~ W_d(Σ, ν) gives E ln|νS| = ln|Σ| + d ln 2 + Σ_{i=1}^{d}
    ψ((ν − i + 1)/2) and Var ln|νS| = Σ ψ′((ν − i + 1)/2); ν = (n − 1)/ḡ with ḡ the mean
    autocorrelation inflation (1 + r²)/(1 − r²). Then ln det A = d ln κ' − ln|Σ'| + d ln sA.
    Returns (value, standard error). Needs n_samples well above the size d."""
    packets0 = dev.stats.packets
    n = _check_count(n_samples, "n_samples", 3)
    dim = Problem.from_inputs(A, lowrank, dev.n_cells).n
    if n - 1 < dim + 2:
        raise ValueError(f"logdet of a {dim}×{dim} matrix needs well over {dim} effective samples "
                         f"(n_samples = {n}); raise n_samples")
    X, kappa, draw, p, bi, wall0 = _zero_mean_samples(dev, A, lowrank, n, temperature, period,
                                                      burn_in, rate, calibrate)
    r = _lag1(X)
    nu = (n - 1) / float(np.mean((1 + r**2) / (1 - r**2)))
    if nu < dim + 2:
        raise ValueError(f"logdet of a {dim}×{dim} matrix needs well over {dim} effective samples "
                         f"(got {nu:.0f}); raise n_samples")
    ld_sigma, err = wishart_logdet(np.atleast_2d(np.cov(X, rowvar=False, ddof=1)), nu)
    value = dim * math.log(kappa) - ld_sigma + dim * math.log(draw.sA)
    if return_info:
        return value, err, _info(draw, X, 1.0, kappa * draw.sA, kappa, p, bi, wall0,
                                            packets0)
    return value, err


def sample(dev: Any, A: Any = None, b: Any = None, n: int = 1000, *, temperature: float = 1.0,
           period: float | None = None, burn_in: float | None = None, lowrank: tuple | None = None,
           rate: float = 1.0, return_info: bool = False, calibrate: bool = True) -> Any:
    """n samples (n × d, original units) of N(A⁻¹b, κA⁻¹) with κ = ``temperature`` (original
    units; the device runs at κ' = κ/(c²·sA), see the module doc). b=None means zero mean.
    Samples are ``period`` apart (default 2τ̂); consecutive ones are still slightly correlated
    (``return_info=True`` gives the measured lag-1 autocorrelation and effective sizes)."""
    wall0, packets0 = time.perf_counter(), dev.stats.packets
    count = _check_count(n, "n", 1)
    kappa = float(temperature)
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"temperature must be finite and > 0 (κ = 0 has no spread; use solve), "
                         f"got {temperature!r}")
    prob = Problem.from_inputs(A, lowrank, dev.n_cells)
    b = np.zeros(prob.n) if b is None else check_vector(b, prob.n, "b")
    draw = _Draw(dev, prob, rate, calibrate)
    vmax = draw.facts.vmax
    mu = cg_estimate(prob.matvec, b) if np.any(b) else np.zeros(prob.n)
    sigma = math.sqrt(kappa / draw.spec.lmin)          # ≥ every cell's sd, original units
    c = pow2_ceil((float(np.max(np.abs(mu))) + 4 * sigma) / (0.5 * vmax))
    p, bi_user = _times(draw, period, burn_in)
    for attempt in range(SATURATION_RETRIES + 1):
        kappa_dev = check_temperature(kappa / (c * c * draw.sA), "device temperature κ'")
        if burn_in is None:  # start at the CG estimate; the residual bounds how far off it is
            d0 = float(np.linalg.norm(b - prob.matvec(mu))) / draw.spec.lmin / c
            spread = math.sqrt(kappa_dev / draw.lmin)
            bi = draw.tau * max(BURN_TAUS, math.log(max(d0, 1e-300) / (0.05 * spread)))
        else:
            bi = bi_user
        try:
            X = draw.run(count, kappa_dev, b / (c * draw.sA), mu / c, p, bi)
            break
        except DeviceSaturated as exc:
            dev.clear_saturation()
            if attempt == SATURATION_RETRIES:
                raise NotPositiveDefinite(
                    "the device saturated even with the output scaled down 8×: the matrix is not "
                    "positive definite (or nearly singular)") from exc
            c *= 2.0
    kappa_f32 = float(np.float32(kappa_dev))
    Y = X * c
    if return_info:
        return Y, _info(draw, X, c, kappa_f32 * c * c * draw.sA, kappa_f32, p, bi, wall0, packets0)
    return Y
