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


def from_a_start(kind: str, seed: int) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray,
                                                AnalogCore]:
    """A system, a bias with its equilibrium inside ±1, a start in ±2, and its core."""
    A, params = system(kind)
    rng = np.random.default_rng(seed)
    b = A @ rng.uniform(-1, 1, A.shape[0])
    x0 = rng.uniform(-2, 2, A.shape[0])
    core = core_with(params, b)
    assert core.exact, core.exact_reason
    return A, params, b, x0, core


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
@pytest.mark.parametrize("t", [0.05, 0.5, 2.0])
def test_transient_of_state_and_integral_is_the_analytic_law(kind: str, t: float) -> None:
    """Mean and covariance of (x(t), ∫x) from a fixed start, against the exact law."""
    A, params, b, x0, core = from_a_start(kind, seed=5)
    n = A.shape[0]
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
    """The spectrum's fastest rate is the spectral radius the EM stiffness estimate approaches
    from above (within its 2 % margin)."""
    from device.analog import stiffness
    A, params = system("dense")
    core = core_with(params, np.zeros(10))
    m = params["mobility"]
    lmax = np.linalg.eigvalsh(np.sqrt(m)[:, None] * A * np.sqrt(m)[None, :])[-1]
    assert core._spectrum is not None
    assert core._spectrum.fastest == pytest.approx(lmax, rel=1e-10)
    estimate, _ = stiffness.rate(core._eff)
    assert lmax <= estimate <= 1.03 * lmax


# -- batched sampling ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "lowrank"])
def test_batched_samples_follow_the_analytic_law(kind: str) -> None:
    """k stretches at once (the integral's independent parts drawn as one sum) against the
    exact law at an intermediate sample and at the end (state and integral)."""
    A, params, b, x0, core = from_a_start(kind, seed=8)
    n = A.shape[0]
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


# -- the whole law, without statistics ----------------------------------------------------------


class _Normals:
    """An RNG whose standard normals are the entries of a fixed vector, in order of use."""

    def __init__(self, z: np.ndarray | None = None) -> None:
        self.z, self.used = z, 0

    def standard_normal(self, shape=None):
        n = int(np.prod(shape)) if shape is not None else 1
        out = np.zeros(n) if self.z is None else self.z[self.used:self.used + n]
        self.used += n
        return out.reshape(shape) if shape is not None else float(out[0])


def _affine(draw) -> tuple[np.ndarray, np.ndarray]:
    """The propagators are affine in the normals they draw: out = mean + L z. Recover both by
    feeding zeros and then each unit vector; the law is N(mean, L Lᵀ), exactly."""
    counter = _Normals()
    mean = draw(counter)
    L = np.empty((mean.size, counter.used))
    for j in range(counter.used):
        e = np.zeros(counter.used)
        e[j] = 1.0
        L[:, j] = draw(_Normals(e)) - mean
    return mean, L


def _reference(A, b, mob, x0, period, k) -> tuple[np.ndarray, np.ndarray]:
    """Exact joint law of (x(period), …, x(k·period), ∫x over all of it): Van Loan transitions
    of z = (x, ∫x) over substeps short enough for its accuracy (λh ≤ 0.5), chained."""
    n = b.size
    m = np.ones(n) if mob is None else mob
    lmax = np.linalg.eigvalsh(np.sqrt(m)[:, None] * A * np.sqrt(m)[None, :])[-1]
    sub = max(1, int(np.ceil(period * lmax / 0.5)))
    sde = LinearSDE.from_core(A, b, KAPPA, mob)
    m0, C = sde.transition_with_integral(np.zeros(n), period / sub)
    G = np.eye(2 * n)                     # z' = G z + m0 + noise of covariance C
    G[:, :n] = np.column_stack([sde.transition_with_integral(e, period / sub)[0] - m0
                                for e in np.eye(n)])
    mu, S = np.concatenate([x0, np.zeros(n)]), np.zeros((2 * n, 2 * n))
    with_earlier: list[np.ndarray] = []   # Cov(z now, x at sample i)
    cov = np.zeros((n * (k + 1), n * (k + 1)))
    means = []
    for j in range(k):
        for _ in range(sub):
            mu, S = G @ mu + m0, G @ S @ G.T + C
            with_earlier = [G @ X for X in with_earlier]
        for i, X in enumerate(with_earlier):
            cov[n * j:n * (j + 1), n * i:n * (i + 1)] = X[:n]
            cov[n * i:n * (i + 1), n * j:n * (j + 1)] = X[:n].T
        cov[n * j:n * (j + 1), n * j:n * (j + 1)] = S[:n, :n]
        with_earlier.append(S[:, :n].copy())
        means.append(mu[:n].copy())
    for i, X in enumerate(with_earlier):
        cov[n * k:, n * i:n * (i + 1)] = X[n:]
        cov[n * i:n * (i + 1), n * k:] = X[n:].T
    cov[n * k:, n * k:] = S[n:, n:]
    return np.concatenate(means + [mu[n:]]), cov


def _law_cases():
    rng = np.random.default_rng(31)
    n, r = 7, 3
    J = rng.standard_normal((r, n))
    mob = rng.uniform(0.5, 2.0, n)
    Hg = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.5]])
    Jdef = np.vstack([J[:2], J[0] + J[1]])                         # rank 2 of 3
    A = spd(n, rng)
    cases = {
        "dense, M ≠ I": (A, dict(A=A, mobility=mob)),
        "low rank, general H, M ≠ I": (None, dict(coupling="lowrank", J=J, H=Hg,
                                                  lam=0.8 / mob, mobility=mob)),
        "low rank, H = 2I": (None, dict(coupling="lowrank", J=J, H=2 * np.eye(r),
                                        lam=np.full(n, 0.8))),
        "low rank, rank-deficient J": (None, dict(coupling="lowrank", J=Jdef, H=np.eye(r),
                                                  lam=np.full(n, 0.8))),
        "low rank, no complement": (None, dict(coupling="lowrank", J=rng.standard_normal((n, n)),
                                               H=np.eye(n), lam=np.zeros(n))),
    }
    for name, (A, params) in cases.items():
        if A is None:
            m = params.get("mobility", np.ones(n))
            A = params["J"].T @ params["H"] @ params["J"] + np.diag(params["lam"])
            params = {**params, "mobility": m}
        yield name, A, params


@pytest.mark.parametrize("case", [c[0] for c in _law_cases()])
def test_the_joint_law_of_samples_and_integral_is_exact(case: str) -> None:
    """One stretch (propagate) and four at once (sample_path): mean and full covariance of every
    sample and the integral, to rounding, against the chained Van Loan law."""
    _, A, params = next(c for c in _law_cases() if c[0] == case)
    n = A.shape[0]
    b = A @ np.linspace(-1, 1, n)
    x0 = np.linspace(1.5, -0.5, n)
    core = core_with(params, b)
    spec = core._spectrum
    assert spec is not None, core.exact_reason
    mob = params.get("mobility")
    for k in (1, 4):
        def draw(rng, k=k):
            x, acc = x0.copy(), np.zeros(n)
            if k == 1:
                spec.propagate(x, b, 0.6, rng, acc)
                return np.concatenate([x, acc])
            X = spec.sample_path(x, b, 0.6, k, rng, acc)
            return np.concatenate([X.reshape(-1), acc])
        mean, L = _affine(draw)
        ref_mean, ref_cov = _reference(A, b, mob, x0, 0.6, k)
        np.testing.assert_allclose(mean, ref_mean, atol=1e-9 * np.abs(ref_mean).max())
        np.testing.assert_allclose(L @ L.T, ref_cov, atol=1e-9 * np.abs(ref_cov).max())


def test_a_transient_that_peaks_between_grid_points_is_left_to_em() -> None:
    """Rates 0.01, 1, 2: cell 0's mean 9.1 + 4.5(e^{−t} − e^{−2t}) peaks at 10.2 > VMAX near
    t = 0.7 while both ends are inside: no stretch length may step over it."""
    V = np.column_stack([np.ones(3) / np.sqrt(3), np.array([1, -1, 0]) / np.sqrt(2),
                         np.array([1, 1, -2]) / np.sqrt(6)])
    A = (V * np.array([0.01, 1.0, 2.0])) @ V.T
    xstar = np.array([9.1, 0.0, 0.0])
    core = AnalogCore(3, 1, get_profile("ideal"), serial=1, seed=0)
    core.set_integrator("exact")
    core.program(CoreParams(active=3, A=A, bias=A @ xstar, temperature=1e-4))
    core.set_state(xstar + 4.5 * np.array([0.0, -2.0, 2.0]))
    for t in (0.1, 1.0, 10.0, 1e4):
        assert not core.exact_safe(t)
    core.advance(1e3, np.zeros(3))
    assert core.exact_time == 0.0 and core.sat[0] == 1


def test_a_state_within_the_margin_of_a_rail_is_left_to_em() -> None:
    core = AnalogCore(1, 1, get_profile("ideal"), serial=1, seed=0)
    core.set_integrator("exact")
    core.program(CoreParams(active=1, A=np.eye(1), temperature=0.01))   # σ = 0.1
    core.set_state(np.array([core.profile.vmax - 0.5]))                 # 5σ from the rail
    assert not core.exact_safe(1.0)
    core.advance(1.0)
    assert core.exact_time == 0.0 and core.em_time == 1.0


def test_a_safe_stretch_stays_safe_when_shortened() -> None:
    """The scheduler asks exact_safe(t) for the stretch it will run: the answer must not flip
    back for shorter ones (the check's grid does not depend on t; its margin grows with t)."""
    A, params = system("dense")
    core = core_with(params, A @ np.full(10, 8.0))          # x* = 8 V: 2 V from the rails
    core.set_state(np.full(10, 5.0))
    lengths = np.geomspace(1e-4, 1e12, 60)
    safe = [core.exact_safe(t) for t in lengths]
    assert safe[0] and not safe[-1], "the case must flip within the lengths tried"
    assert all(s1 >= s2 for s1, s2 in zip(safe, safe[1:]))


def test_a_sampling_run_is_reproducible_from_its_seed() -> None:
    """Batches are sized by the run, the FIFO and a word budget, never by wall time."""
    import host
    A, _ = system("dense")
    runs = []
    for _ in range(2):
        with host.connect("local://?cells=10&seed=5") as dev:
            dev.configure(temperature=1e-3)
            dev.load_coupling(A)
            dev.load_bias(A @ np.linspace(-1, 1, 10))
            dev.commit()
            runs.append(dev.samples(700, period=0.5))
            assert dev.read("EMU_EXACT_TIME") > 300
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_batch_redone_by_em_reports_its_clamps_to_the_firmware(monkeypatch) -> None:
    """A drawn path beyond the rails (forced here) is redone by EM, which clamps; the firmware
    raises STATUS.SATURATED for it as for any other run."""
    from device.analog import propagation
    from device.emulator import build_firmware
    from protocol.regmap import REGMAP
    fw = build_firmware(4)
    core = fw.core
    core.program(CoreParams(active=4, A=np.eye(4), bias=np.full(4, 9.0), temperature=1.0))
    core.set_state(np.zeros(4))
    monkeypatch.setattr(propagation.Spectrum, "safe", lambda *a: True)   # a margin that failed
    inputs = core.sample_run(1.0, 50, fw.acc)
    assert inputs is not None and core.exact_time == 0.0 and core.sat.any()
    with fw.cond:   # as the run thread would be, after a RUN of 50 samples
        fw.running, fw.sampling, fw.samples_left, fw.run_left = True, True, 50, 50.0
        fw.sample_period, fw.next_sample = 1.0, 1.0
        fw.after_samples(inputs, 1.0)
        assert fw.status_word() & REGMAP.STATUS.bit("SATURATED")
        assert fw.fifo.level == 50 * 4 and not fw.running
    fw.shutdown()


# -- underdamped cells of one friction ----------------------------------------------------------


@pytest.mark.parametrize("case", ["dense, M ≠ I", "low rank, general H, M ≠ I",
                                  "low rank, rank-deficient J", "undamped"])
def test_an_underdamped_stretch_has_the_exact_law(case: str) -> None:
    """Oscillator modes (q, p, ∫q) from Van Loan and doubling: mean and full covariance of
    (x, v, ∫x) after one stretch, to rounding, against the 2N-dimensional linear SDE."""
    base = "dense, M ≠ I" if case == "undamped" else case
    _, A, params = next(c for c in _law_cases() if c[0] == base)
    n = A.shape[0]
    gamma = 0.0 if case == "undamped" else 0.7
    params = {**params, "underdamped": np.ones(n, bool), "friction": np.full(n, gamma)}
    b = A @ np.linspace(-1, 1, n)
    x0, v0 = np.linspace(1.5, -0.5, n), np.linspace(-0.3, 0.4, n)
    core = core_with(params, b)
    spec = core._spectrum
    assert spec is not None and spec.friction == gamma, core.exact_reason
    from device.analog import underdamped

    def draw(rng):
        x, v, acc = x0.copy(), v0.copy(), np.zeros(n)
        underdamped.propagate(spec, x, v, b, 1.3, rng, acc)
        return np.concatenate([x, v, acc])
    mean, L = _affine(draw)
    sde = LinearSDE.from_core(A, b, KAPPA, params.get("mobility"), params["friction"],
                              params["underdamped"])
    ref_mean, ref_cov = sde.transition_with_integral(np.concatenate([x0, v0]), 1.3)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-9 * np.abs(ref_mean).max())
    np.testing.assert_allclose(L @ L.T, ref_cov, atol=1e-8 * np.abs(ref_cov).max())


def test_underdamped_cells_that_do_not_decouple_are_left_to_em() -> None:
    A, params = system("dense")
    und = np.ones(10, bool)
    core = core_with({**params, "underdamped": und, "friction": np.linspace(0.5, 1, 10)},
                     np.zeros(10))
    assert not core.exact and "frictions" in core.exact_reason
    core = core_with({**params, "underdamped": np.arange(10) < 5}, np.zeros(10))
    assert not core.exact and "mixed" in core.exact_reason


def test_an_underdamped_core_rings_towards_the_rails_under_em() -> None:
    """A fast start towards a rail: the energy bound cannot clear it, EM integrates, clamps."""
    n = 4
    core = AnalogCore(n, 1, get_profile("ideal"), serial=1, seed=0)
    core.set_integrator("exact")
    core.program(CoreParams(active=n, A=np.eye(n), temperature=1e-4, friction=np.full(n, 0.05),
                            underdamped=np.ones(n, bool)))
    assert core.exact
    core.set_state(np.zeros(n), np.full(n, 15.0))     # amplitude 15 > VMAX
    assert not core.exact_safe(1.0)
    assert core.advance(5.0) > 0 and core.sat.all() and core.exact_time == 0.0
