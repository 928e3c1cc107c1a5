"""Exact propagation against the analytic transient, and its boundaries: where the rails can be
reached, or the dynamics are not a single-rate-per-mode OU process, EM integrates instead.

The reference law of (x(t), ∫x) is Van Loan's block exponential of the augmented linear system
(device.analog.exact), independent of the eigenbasis the propagator uses. Tolerances are Z
standard errors of R independent repetitions from a fixed start.
"""
from __future__ import annotations

import numpy as np
import pytest

from device.analog import AnalogCore, CoreParams, get_profile
from device.analog.exact import LinearSDE
from device.analog.propagation import RAIL_MARGIN, _g

Z = 5.0
R = 3000
KAPPA = 0.02

pytestmark = pytest.mark.exact_only


def spd(n: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, 10.0, n)) @ q.T


def system(kind: str) -> tuple[np.ndarray, dict]:
    """A coupling as a dense matrix, and the core parameters that program it."""
    rng = np.random.default_rng(21)
    if kind == "dense":
        n = 10
        A = spd(n, rng)
        return A, dict(A=A, mobility=rng.uniform(0.5, 2.0, n))
    n, r = 24, 4                       # low rank on a uniform diagonal: a complement of 20 modes
    J = rng.standard_normal((r, n)) / np.sqrt(n)
    H = np.diag([1.0, 2.0, 4.0, 8.0])
    lam = np.full(n, 0.8)
    return J.T @ H @ J + np.diag(lam), dict(coupling="lowrank", J=J, H=H, lam=lam)


def core_with(params: dict, b: np.ndarray, integrator: str = "exact", seed: int = 4,
              profile: str = "ideal") -> AnalogCore:
    core = AnalogCore(b.size, 8, get_profile(profile), serial=1, seed=seed)
    core.set_integrator(integrator)
    core.program(CoreParams(active=b.size, bias=b, temperature=KAPPA, **params))
    return core


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
@pytest.mark.parametrize("t", [0.05, 0.5, 2.0])
def test_transient_of_state_and_integral_is_the_analytic_law(kind: str, t: float) -> None:
    """Mean and covariance of (x(t), ∫x) from a fixed start, against the exact law."""
    A, params = system(kind)
    n = A.shape[0]
    rng = np.random.default_rng(5)
    b = A @ rng.uniform(-1, 1, n)
    x0 = rng.uniform(-2, 2, n)
    core = core_with(params, b)
    assert core.exact, core.exact_reason
    draws = np.empty((R, 2 * n))
    for k in range(R):
        core.set_state(x0)
        acc = np.zeros(n)
        core.advance(t, acc)
        draws[k, :n], draws[k, n:] = core.x, acc
    assert core.em_time == 0.0 and core.exact_time == pytest.approx(R * t)
    mean, cov = LinearSDE.from_core(A, b, KAPPA, params.get("mobility")).transition_with_integral(
        x0, t)
    se = np.sqrt(np.diag(cov) / R)
    z = np.abs(draws.mean(0) - mean) / se
    assert z.max() < Z, f"mean {z.max():.1f} standard errors off"
    d = draws - mean
    est = d.T @ d / R
    sd = np.sqrt(np.diag(cov))
    se_cov = np.sqrt((np.outer(sd, sd) ** 2 + cov**2) / R)
    z = np.abs(est - cov) / se_cov
    assert z.max() < Z, f"covariance {z.max():.1f} standard errors off at " \
        f"{np.unravel_index(np.argmax(z), z.shape)}"


def test_integral_variance_has_no_cancellation_at_short_stretches() -> None:
    u = np.array([1e-8, 1e-4, 0.3, 0.49999, 0.50001, 3.0])
    g = _g(u.copy())
    np.testing.assert_allclose(g[:2], u[:2] ** 3 / 3, rtol=1e-3)
    closed = u - 2 * -np.expm1(-u) + 0.5 * -np.expm1(-2 * u)
    np.testing.assert_allclose(g[2:], closed[2:], rtol=1e-9)


def test_paths_are_reproducible_per_seed() -> None:
    A, params = system("lowrank")
    b = A @ np.linspace(-1, 1, A.shape[0])
    runs = []
    for _ in range(2):
        core = core_with(params, b, seed=9)
        acc = np.zeros(b.size)
        core.advance(3.0, acc)
        runs.append((core.x.copy(), acc))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


# -- the rails ---------------------------------------------------------------------------------


def test_equilibrium_beyond_the_rails_saturates_under_em() -> None:
    """x* = A⁻¹b outside ±VMAX: the stretch is EM's, the cells clamp and are flagged."""
    A, params = system("dense")
    vmax = get_profile("ideal").vmax
    b = A @ np.full(A.shape[0], 1.5 * vmax)
    core = core_with(params, b)
    assert core.exact
    clamps = core.advance(20.0, np.zeros(b.size))
    assert clamps > 0 and core.sat.all()
    assert core.exact_time == 0.0 and core.em_time == 20.0


def test_tails_near_the_rails_fall_back_and_clamps_are_not_missed() -> None:
    """The equilibrium sits 3 standard deviations inside one rail: exact propagation would
    skip excursions, so EM integrates, and over a long run some cells touch the rail."""
    n = 16
    vmax = get_profile("ideal").vmax
    kappa = 1.0
    std = np.sqrt(kappa)                     # A = I: κA⁻¹ = κ
    b = np.full(n, vmax - 3.0 * std)
    core = AnalogCore(n, 1, get_profile("ideal"), serial=1, seed=2)
    core.set_integrator("exact")
    core.program(CoreParams(active=n, A=np.eye(n), bias=b, temperature=kappa))
    assert core.exact
    clamps = core.advance(200.0, np.zeros(n))
    assert core.exact_time == 0.0
    assert clamps > 0 and core.sat.any()


def test_far_from_the_rails_the_stretch_is_exact() -> None:
    """The same chip with the equilibrium RAIL_MARGIN + 1 standard deviations inside."""
    n = 16
    vmax = get_profile("ideal").vmax
    b = np.full(n, vmax - (RAIL_MARGIN + 1.0))
    core = AnalogCore(n, 1, get_profile("ideal"), serial=1, seed=2)
    core.set_integrator("exact")
    core.program(CoreParams(active=n, A=np.eye(n), bias=b, temperature=1.0))
    core.set_state(b)
    assert core.advance(200.0, np.zeros(n)) == 0
    assert core.exact_time == 200.0 and core.em_time == 0.0 and not core.sat.any()


def test_transient_towards_the_rails_is_integrated_by_em() -> None:
    """Starting at one rail's side with the equilibrium inside: the mean path is checked, not
    just its end, so a start against the rail is EM's."""
    A, params = system("dense")
    vmax = get_profile("ideal").vmax
    b = np.zeros(A.shape[0])
    core = core_with(params, b)
    core.set_state(np.full(b.size, vmax))     # clipped onto the rails
    core.advance(1.0, np.zeros(b.size))
    assert core.exact_time == 0.0 and core.em_time == 1.0
    core.advance(30.0, np.zeros(b.size))      # relaxed towards 0: exact again
    assert core.exact_time > 0.0


# -- where it does not apply --------------------------------------------------------------------


@pytest.mark.parametrize("change, reason", [
    (dict(underdamped=np.arange(10) % 2 == 0), "underdamped"),
    (dict(noise_gain=np.linspace(1, 2, 10)), "noise temperatures"),
    (dict(A=-np.eye(10)), "not positive definite"),
    (dict(mobility=np.r_[0.0, np.ones(9)]), "zero mobility"),
])
def test_dynamics_it_does_not_cover_are_integrated_by_em(change: dict, reason: str) -> None:
    A, params = system("dense")
    core = core_with({**params, **change}, np.zeros(10))
    assert not core.exact and reason in core.exact_reason
    core.advance(1.0)
    assert core.em_time == 1.0 and core.exact_time == 0.0


def test_em_selected_and_switching_back() -> None:
    A, params = system("lowrank")
    core = core_with(params, np.zeros(A.shape[0]), integrator="em")
    assert not core.exact and "selected" in core.exact_reason
    core.set_integrator("exact")
    assert core.exact and core.exact_reason == ""
    with pytest.raises(ValueError, match="integrator"):
        core.set_integrator("rk4")
    assert core.exact


def test_exact_rate_matches_the_em_stiffness_estimate() -> None:
    """The spectrum's fastest rate is the one the EM substep is scaled by (up to its margin)."""
    A, params = system("dense")
    core = core_with(params, np.zeros(10))
    m = params["mobility"]
    lmax = np.linalg.eigvalsh(np.sqrt(m)[:, None] * A * np.sqrt(m)[None, :])[-1]
    assert core._spectrum is not None
    assert core._spectrum.fastest == pytest.approx(lmax, rel=1e-10)
    assert lmax <= core.stiffness() <= 1.03 * lmax


# -- batched sampling ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
def test_batched_samples_follow_the_analytic_law(kind: str) -> None:
    """k stretches at once (the integral's independent parts drawn as one sum) against the
    exact law at an intermediate sample and at the end (state and integral)."""
    A, params = system(kind)
    n = A.shape[0]
    rng = np.random.default_rng(8)
    b = A @ rng.uniform(-1, 1, n)
    x0 = rng.uniform(-2, 2, n)
    core = core_with(params, b)
    period, k = 0.3, 4
    draws = np.empty((R, 3 * n))
    for j in range(R):
        core.set_state(x0)
        acc = np.zeros(n)
        X = core.sample_run(period, k, acc)
        draws[j] = np.concatenate([X[1], X[-1], acc])
    sde = LinearSDE.from_core(A, b, KAPPA, params.get("mobility"))
    mid, mid_cov = sde.transition_with_integral(x0, 2 * period)
    end, cov = sde.transition_with_integral(x0, k * period)
    mean = np.concatenate([mid[:n], end])
    se = np.sqrt(np.concatenate([np.diag(mid_cov)[:n], np.diag(cov)]) / R)
    z = np.abs(draws.mean(0) - mean) / se
    assert z.max() < Z, f"mean {z.max():.1f} standard errors off"
    d = draws[:, n:] - end
    sd = np.sqrt(np.diag(cov))
    z = np.abs(d.T @ d / R - cov) / np.sqrt((np.outer(sd, sd) ** 2 + cov**2) / R)
    assert z.max() < Z, f"covariance {z.max():.1f} standard errors off"


def test_batched_samples_decline_what_they_cannot_do_and_change_nothing() -> None:
    A, params = system("dense")
    vmax = get_profile("ideal").vmax
    core = core_with(params, A @ np.full(10, 1.5 * vmax))   # equilibrium beyond the rails
    x = core.x.copy()
    assert core.sample_run(1.0, 10) is None
    np.testing.assert_array_equal(core.x, x)
    assert core.exact_time == 0.0 and core.time == 0.0
    core = core_with(params, np.zeros(10), integrator="em")
    assert core.sample_run(1.0, 10) is None
    drifting = core_with(params, np.zeros(10), profile="realistic")
    assert drifting.exact
    assert drifting.sample_run(0.25, 4) is not None           # within one drift hold
    assert drifting.sample_run(0.25, 5) is None               # beyond it
    with pytest.raises(ValueError):
        core.sample_run(0.0, 3)
