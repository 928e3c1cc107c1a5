"""host.linalg.inv / sample / logdet on the ideal emulated device, in original units.

Tolerances are in standard errors that the functions report (or, for the sample covariance, the
Wishart formula with the measured lag-1 autocorrelation); 5 s.e. per entry keeps a 36-entry test
from flaking (P(|z| > 5) ≈ 6e-7 per Gaussian entry) while a wrong temperature mapping — a factor
c² or sA off — moves the entries by hundreds of s.e.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from host import linalg
from host.linalg import NotPositiveDefinite, _problem, _sampling
from support import random_spd

Z = 5.0


def spd(n: int, cond: float, seed: int, scale: float) -> np.ndarray:
    return scale * random_spd(n, cond, np.random.default_rng(seed))


def test_inv_within_its_error_estimate(dev8):
    A = spd(8, 5.0, seed=21, scale=40.0)  # not unit scale: the answer must be scaled back
    Ainv, err, info = linalg.inv(dev8, A, n_samples=2000, return_info=True)
    exact = np.linalg.inv(A)
    z = (Ainv - exact) / err
    assert Ainv.shape == err.shape == (8, 8) and np.all(err > 0)
    assert np.allclose(Ainv, Ainv.T)
    assert np.max(np.abs(z)) <= Z
    assert 0.5 <= math.sqrt(np.mean(z**2)) <= 1.5  # honest, not inflated
    # A' = A/sA with sA the power of two just above λmax (200): rates of order 1/τ0
    assert info.scale_A == 256.0 and np.all(info.lag1 < 0.3)


def test_inv_lowrank(dev8):
    rng = np.random.default_rng(22)
    J, H, lam = rng.standard_normal((3, 8)) / 3, np.diag([2.0, 1.0, 0.5]), np.full(8, 0.4)
    Ainv, err = linalg.inv(dev8, lowrank=(J, H, lam), n_samples=1500)
    z = (Ainv - np.linalg.inv(J.T @ H @ J + np.diag(lam))) / err
    assert np.max(np.abs(z)) <= Z


def test_sample_mean_and_covariance_in_original_units(dev8):
    """x ~ N(A⁻¹b, κA⁻¹) with κ = 0.5 in ORIGINAL units: the device runs at κ' = κ/(c²·sA)."""
    A = spd(8, 5.0, seed=23, scale=0.01)
    b = np.random.default_rng(24).uniform(-1, 1, 8) * 0.05
    kappa, n = 0.5, 3000
    X, info = linalg.sample(dev8, A, b, n, temperature=kappa, return_info=True)
    mu, cov = np.linalg.solve(A, b), kappa * np.linalg.inv(A)
    assert X.shape == (n, 8)
    assert info.temperature == pytest.approx(kappa, rel=1e-6)
    assert info.device_temperature == pytest.approx(
        kappa / (info.output_scale**2 * info.scale_A), rel=1e-6)
    assert np.all(np.abs(X.mean(0) - mu) <= Z * info.mean_error)
    S = np.cov(X, rowvar=False)
    r = info.lag1
    g = (1 + np.outer(r, r)) / (1 - np.outer(r, r))
    d = np.diag(cov)
    se = np.sqrt((np.outer(d, d) + cov**2) * g / (n - 1))
    assert np.max(np.abs(S - cov) / se) <= Z
    # and the device really ran at the mapped temperature: its samples in device units
    # have covariance κ'A'⁻¹
    assert info.output_scale > 0 and math.log2(info.output_scale).is_integer()


def test_sample_zero_mean_default(dev8):
    A = spd(4, 3.0, seed=25, scale=2.0)
    X = linalg.sample(dev8, A, None, 500, temperature=1.0)
    assert X.shape == (500, 4)
    assert np.all(np.abs(X.mean(0)) <= Z * np.sqrt(np.diag(np.linalg.inv(A)) / 400))


def test_logdet_within_its_error(dev8):
    A = spd(8, 5.0, seed=26, scale=7.0)
    value, err = linalg.logdet(dev8, A, n_samples=3000)
    true = np.linalg.slogdet(A)[1]
    assert 0 < err < 0.2
    assert abs(value - true) <= Z * err


def test_wishart_logdet_is_unbiased_and_its_error_honest():
    """The bias correction and error bar of logdet, on exact Gaussian samples (no device), in a
    regime where the plain ln|S| is far off (d = 20, n = 60: bias ≈ d(d + 1)/(2ν) ≈ 3.6)."""
    rng = np.random.default_rng(27)
    d, n, reps = 20, 60, 300
    sigma = random_spd(d, 10.0, rng)
    L, true = np.linalg.cholesky(sigma), np.linalg.slogdet(sigma)[1]
    est, errs, plain = [], [], []
    for _ in range(reps):
        S = np.cov(rng.standard_normal((n, d)) @ L.T, rowvar=False)
        value, err = _sampling.wishart_logdet(S, n - 1)
        est.append(value - true)
        errs.append(err)
        plain.append(np.linalg.slogdet(S)[1] - true)
    sd = np.std(est)
    assert abs(np.mean(est)) <= 4 * sd / math.sqrt(reps)          # unbiased ...
    assert np.mean(plain) < -2.5                                     # ... where ln|S| is not
    assert 0.85 <= np.mean(errs) / sd <= 1.15                        # error bar = actual scatter


@pytest.mark.parametrize("call, match", [
    (lambda d: linalg.inv(d, np.eye(3), n_samples=2), "n_samples"),
    (lambda d: linalg.inv(d, np.eye(3), temperature=0.0), "temperature must be > 0"),
    (lambda d: linalg.inv(d, np.eye(3), period=0.0), "period"),
    (lambda d: linalg.sample(d, np.eye(3), np.ones(3), 10, temperature=0.0), "temperature"),
    (lambda d: linalg.sample(d, np.eye(3), np.ones(2), 10), "length 3"),
    (lambda d: linalg.sample(d, np.eye(3), np.ones(3), 0), "n must be"),
    (lambda d: linalg.logdet(d, np.eye(8), n_samples=8), "effective samples"),
    (lambda d: linalg.inv(d, np.eye(9)), "only 8 cells"),
    (lambda d: linalg.inv(d, np.array([[1.0, 3.0], [3.0, 1.0]])), "not positive definite"),
    (lambda d: linalg.inv(d, np.eye(2), rate=-1.0), "rate"),
    (lambda d: linalg.logdet(d, np.eye(2), temperature=1e3), "temperature"),
    (lambda d: linalg.sample(d, -np.eye(2), None, 10), "not positive definite"),
])
def test_bad_input(dev8, call, match):
    with pytest.raises(ValueError, match=match):
        call(dev8)


def test_saturation_means_not_positive_definite(dev8, monkeypatch):
    """Indefinite A past a (forced) Lanczos check: the rails are hit, the temperature is lowered
    and retried, then NotPositiveDefinite."""
    monkeypatch.setattr(_sampling, "lanczos",
                        lambda op, n, **kw: _problem.Spectrum(lmin=0.5, lmax=2.0, steps=1))
    with pytest.raises(NotPositiveDefinite, match="not positive definite"):
        linalg.inv(dev8, np.diag([1.0, -0.5, 1.0]), n_samples=50, temperature=1e-3)
    dev8.clear_saturation()
