"""Statistical validation of the analog core against the physics of docs/physics.md.

Every tolerance is Z standard errors, with the standard error computed from the exact linear
dynamics (device.analog.exact.LinearSDE), not guessed:

- a time average over T (accumulator) has Var = (K⁻¹Σ + ΣK⁻ᵀ)/T (= 2κA⁻²/T for M = I);
- a mean / covariance of n samples spaced by Δ uses the exact lagged covariances
  C(k) = P^k Σ with P = e^{−KΔ} (Bartlett): Var(mean_i) = Σ_k C_ii(k)/n and
  Var(Ŝ_ij) = Σ_k [C_ii(k)C_jj(k) + C_ij(k)C_ji(k)]/n.

Seeds are fixed; each test was seen to fail with the physics broken on purpose (see report).
The EM stationary bias at the default stability is itself checked to be below one standard error
(test_default_substep_bias_is_below_one_standard_error), so it cannot eat the tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from numpy.typing import NDArray

from device.analog import AnalogCore, CoreParams, get_profile
from device.analog.exact import LinearSDE, ou_cov, ou_mean

F64 = NDArray[np.float64]
Z = 5.0
"""Allowed deviation in standard errors (per entry; two-sided p ≈ 6e-7)."""
KAPPA = 0.01


# -- helpers ---------------------------------------------------------------------------------


def spd(n: int, cond: float, rng: np.random.Generator, lo: float = 1.0) -> F64:
    """Random SPD matrix with eigenvalues log-spaced in [lo, lo·cond]."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(lo, lo * cond, n)) @ q.T


def core_for(A: F64 | None, b: F64, *, seed: int, kappa: float = KAPPA, profile: str = "ideal",
             **params: object) -> AnalogCore:
    n = b.size
    core = AnalogCore(n, 8, get_profile(profile), serial=1, seed=seed)
    core.program(CoreParams(active=n, A=A, bias=b, temperature=kappa, **params))
    return core


def sample(core: AnalogCore, n: int, spacing: float, burn: float, und: F64 | None = None) -> F64:
    """n snapshots of z = (x, v of underdamped cells), spaced by ``spacing`` after a burn-in."""
    iu = np.array([], int) if und is None else np.flatnonzero(und)
    core.advance(burn)
    out = np.empty((n, core.n_cells + iu.size))
    for k in range(n):
        core.advance(spacing)
        out[k, : core.n_cells] = core.x
        out[k, core.n_cells :] = core.v[iu]
    return out


def lagged_sums(sde: LinearSDE, spacing: float) -> tuple[F64, F64, float]:
    """Sums over all lags k ∈ ℤ of the exact lagged covariances C(k) = P^k Σ:
    Σ_k C_ii(k) (mean), Σ_k [C_ii C_jj + C_ij C_ji](k) (covariance entries) and
    Σ_k 2 tr(Σ⁻¹C(k) Σ⁻¹C(k)ᵀ) (the equipartition statistic (z−z*)ᵀΣ⁻¹(z−z*))."""
    S = sde.stationary_cov()
    W = np.linalg.inv(S)
    P = sde.propagator(spacing)
    mean_sum = np.diag(S).copy()
    cov_sum = np.outer(np.diag(S), np.diag(S)) + S * S.T
    q_sum = 2.0 * S.shape[0]
    C = S
    while True:
        C = P @ C
        mean_sum += 2 * np.diag(C)
        cov_sum += 2 * (np.outer(np.diag(C), np.diag(C)) + C * C.T)
        q_sum += 4 * np.trace(W @ C @ W @ C.T)
        if np.abs(C).max() < 1e-12 * np.abs(S).max():
            return mean_sum, cov_sum, q_sum


def assert_within(est: F64, true: F64, se: F64, what: str) -> None:
    z = np.abs(est - true) / se
    worst = np.unravel_index(np.argmax(z), z.shape)
    assert z.max() < Z, (
        f"{what}: {z.max():.1f} standard errors off at {worst} "
        f"(got {est[worst]:.5g}, expected {true[worst]:.5g} ± {se[worst]:.2g})"
    )


def check_samples(samples: F64, sde: LinearSDE, spacing: float) -> None:
    """Sample mean and covariance of z against the exact stationary law, Z standard errors."""
    n, dim = samples.shape
    S = sde.stationary_cov()
    mean_sum, cov_sum, q_sum = lagged_sums(sde, spacing)
    assert_within(samples.mean(0), sde.center, np.sqrt(mean_sum / n), "mean")
    d = samples - sde.center
    assert_within(d.T @ d / n, S, np.sqrt(cov_sum / n), "covariance")
    # equipartition: each of the dim degrees of freedom carries κ/2, so ⟨dᵀΣ⁻¹d⟩ = dim; this
    # pools all entries and resolves a global temperature error of ~3 %
    q = np.einsum("ti,ij,tj->t", d, np.linalg.inv(S), d)
    assert_within(np.array([q.mean()]), np.array([dim]), np.array([np.sqrt(q_sum / n)]),
                  "equipartition ⟨dᵀΣ⁻¹d⟩")


def check_time_average(core: AnalogCore, sde: LinearSDE, T: float, burn: float) -> None:
    """Accumulator mean over T against z* = A⁻¹b with Var = (K⁻¹Σ + ΣK⁻ᵀ)/T."""
    core.advance(burn)
    acc = np.zeros(core.n_cells)
    core.advance(T, acc)
    S = sde.stationary_cov()
    KS = np.linalg.solve(sde.K, S)
    se = np.sqrt(np.diag(KS + KS.T)[: sde.n] / T)
    assert_within(acc / T, sde.center[: sde.n], se, "time average")


# -- the equilibrium experiments ------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    """One equilibrium experiment: device parameters, the exact law, and a sampling plan."""

    A: F64
    """The coupling as a dense matrix (for low-rank runs: JᵀHJ + diag(λ))."""
    b: F64
    params: dict
    n_samples: int
    spacing: float

    @property
    def sde(self) -> LinearSDE:
        p = self.params
        return LinearSDE.from_core(self.A, self.b, KAPPA, p.get("mobility"), p.get("friction"),
                                   p.get("underdamped"))

    def core(self, seed: int) -> AnalogCore:
        A = None if self.params.get("coupling") == "lowrank" else self.A
        return core_for(A, self.b, seed=seed, **self.params)


def lowrank_system(rng: np.random.Generator, n: int = 32, r: int = 4) -> tuple[F64, F64, F64, F64]:
    J = rng.standard_normal((r, n)) / np.sqrt(n)
    H = spd(r, 3.0, rng, lo=2.0)
    lam = rng.uniform(1.0, 2.0, n)
    return J, H, lam, J.T @ H @ J + np.diag(lam)


def experiment(name: str) -> Experiment:
    """Random SPD couplings (cond 10, relaxation time ~1 τ0) with fixed seeds.

    Snapshots are spaced by the slowest relaxation time 1/min Re eig(K); with 2000–4000 of
    them the variances are resolved to ~3 % and the equipartition sum to ~0.6 %.
    """
    rng = np.random.default_rng(12)
    if name == "lowrank":
        J, H, lam, A = lowrank_system(rng)
        params: dict = dict(coupling="lowrank", J=J, H=H, lam=lam)
    else:
        A = spd(8 if name == "underdamped" else 16, 10.0, rng)
        n = A.shape[0]
        params = {
            "overdamped": {},
            "mismatched": dict(mobility=rng.uniform(0.4, 2.5, n)),
            "underdamped": dict(mobility=rng.uniform(0.5, 2.0, n),
                                friction=rng.uniform(0.5, 2.0, n),
                                underdamped=np.arange(n) % 2 == 0),
        }[name]
    b = A @ rng.uniform(-1, 1, A.shape[0])
    exp = Experiment(A, b, params, {"underdamped": 4000, "lowrank": 2000}.get(name, 3000), 1.0)
    return replace(exp, spacing=1.0 / np.min(np.linalg.eigvals(exp.sde.K).real))


EXPERIMENTS = ["overdamped", "mismatched", "underdamped", "lowrank"]


# -- 1, 2, 5: overdamped equilibrium ---------------------------------------------------------


def test_equilibrium_mean_is_solution() -> None:
    """Time average → A⁻¹b (the thermodynamic linear solve); s.e. sqrt(2κ(A⁻²)_ii/T)."""
    rng = np.random.default_rng(11)
    A = spd(24, 10.0, rng)
    b = A @ rng.uniform(-1, 1, 24)
    core = core_for(A, b, seed=1)
    sde = LinearSDE.from_core(A, b, KAPPA)
    np.testing.assert_allclose(  # the general formula reduces to the overdamped mean's 2κA⁻²/T
        np.diag(2 * np.linalg.solve(sde.K, sde.stationary_cov())),
        np.diag(2 * KAPPA * np.linalg.matrix_power(np.linalg.inv(A), 2)),
    )
    check_time_average(core, sde, T=2000.0, burn=20.0)


@pytest.mark.parametrize("name", ["overdamped", "mismatched"])
def test_equilibrium_covariance_is_kappa_inverse(name: str) -> None:
    """Snapshots → N(A⁻¹b, κA⁻¹), whatever the mobility M.

    "mismatched" (M ≠ I) is the fluctuation–dissipation check: capacitance changes the time
    constants, never the equilibrium.
    """
    exp = experiment(name)
    sde = exp.sde
    np.testing.assert_allclose(sde.stationary_cov(), KAPPA * np.linalg.inv(exp.A), atol=1e-14)
    core = exp.core(seed=2)
    check_samples(sample(core, exp.n_samples, exp.spacing, burn=20 * exp.spacing), sde,
                  exp.spacing)


# -- 3: relaxation ---------------------------------------------------------------------------


def test_relaxation_of_mean_follows_matrix_exponential() -> None:
    """⟨x_t⟩ = b* + e^{−MAt}(x0 − b*) with non-uniform M, from R replicas × P repeats.

    R copies of a 3-cell system as one block-diagonal device are R independent replicas. The EM
    weak error of a transient mean is ≤ stability/(2e) of the initial displacement, which this
    test would resolve at the default (0.02), so it runs at a finer fidelity.
    """
    rng = np.random.default_rng(13)
    A0 = spd(3, 4.0, rng)
    m0 = np.array([0.5, 1.0, 2.0])
    b0 = A0 @ np.array([0.5, -0.3, 0.2])
    x0 = np.array([-1.5, 1.0, 1.8])
    reps, repeats, kappa = 16, 60, 0.05
    A = np.kron(np.eye(reps), A0)
    core = core_for(A, np.tile(b0, reps), seed=3, kappa=kappa, mobility=np.tile(m0, reps))
    core.set_fidelity(stability=0.002)
    times = np.array([0.05, 0.2, 0.5, 1.0, 2.0])
    xs = np.empty((times.size, repeats, reps, 3))
    for p in range(repeats):
        core.set_state(np.tile(x0, reps))
        for k, dt in enumerate(np.diff(times, prepend=0.0)):
            core.advance(dt)
            xs[k, p] = core.x.reshape(reps, 3)
    n = repeats * reps
    for k, t in enumerate(times):
        mean = ou_mean(A0, b0, x0, t, m0)
        se = np.sqrt(np.diag(ou_cov(A0, kappa, t, m0)) / n)
        assert_within(xs[k].reshape(n, 3).mean(0), mean, se, f"mean at t={t}")


# -- 4: underdamped --------------------------------------------------------------------------


def test_underdamped_mixed_cells_share_the_equilibrium() -> None:
    """Mixed RLC/RC cells, non-uniform M and Γ: x ~ N(A⁻¹b, κA⁻¹), v_i ~ N(0, κM_i), x ⟂ v."""
    exp = experiment("underdamped")
    sde, und, mob = exp.sde, exp.params["underdamped"], exp.params["mobility"]
    n, nu = exp.A.shape[0], int(und.sum())
    expected = np.zeros((n + nu, n + nu))
    expected[:n, :n] = KAPPA * np.linalg.inv(exp.A)
    expected[n:, n:] = np.diag(KAPPA * mob[und])  # kinetic temperature
    np.testing.assert_allclose(sde.stationary_cov(), expected, atol=1e-14)
    core = exp.core(seed=4)
    check_samples(sample(core, exp.n_samples, exp.spacing, burn=40.0, und=und), sde, exp.spacing)


# -- 6: low rank -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [32, 600])  # 600: the BLAS path of the kernels
def test_lowrank_is_pathwise_the_dense_matrix(n: int) -> None:
    """Same noise, same substep: JᵀHJ + diag(λ) in low-rank form retraces the dense run."""
    rng = np.random.default_rng(15)
    J, H, lam, A = lowrank_system(rng, n)
    b = rng.standard_normal(n)
    und = np.arange(n) % 3 == 0
    runs = []
    for mode in ("dense", "lowrank"):
        core = core_for(A if mode == "dense" else None, b, seed=5, coupling=mode, J=J, H=H,
                        lam=lam, underdamped=und)
        core.set_fidelity(substep=2e-3)
        acc = np.zeros(n)
        core.advance(5.0 if n < 100 else 0.5, acc)
        runs.append((core.x.copy(), core.v.copy(), acc))
    for dense, low in zip(*runs, strict=True):
        np.testing.assert_allclose(low, dense, rtol=1e-9, atol=1e-12)


def test_lowrank_equilibrium_statistics() -> None:
    """Low-rank mode on its own automatic substep: mean A⁻¹b and covariance κA⁻¹."""
    exp = experiment("lowrank")
    core, sde = exp.core(seed=6), exp.sde
    assert core.stiffness() >= np.linalg.eigvalsh(exp.A)[-1]
    check_time_average(core, sde, T=1000.0, burn=20.0)
    check_samples(sample(core, exp.n_samples, exp.spacing, burn=10.0), sde, exp.spacing)


# -- EM bias vs tolerance --------------------------------------------------------------------


@pytest.mark.em_only
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_default_substep_bias_is_below_one_standard_error(name: str) -> None:
    """At the default substep, the exact stationary law of the EM map differs from the physics
    by less than one standard error of the matching experiment (a fifth of its tolerance), so
    the O(dt) bias can neither pass nor fail a statistical test on its own."""
    exp = experiment(name)
    sde, dt = exp.sde, exp.core(seed=0).dt
    S, S_em = sde.stationary_cov(), sde.em_stationary_cov(dt)
    _, cov_sum, q_sum = lagged_sums(sde, exp.spacing)
    assert (np.abs(S_em - S) / np.sqrt(cov_sum / exp.n_samples)).max() < 1.0
    q_bias = np.trace(np.linalg.solve(S, S_em)) - S.shape[0]  # ⟨dᵀΣ⁻¹d⟩ under the EM law
    assert abs(q_bias) < np.sqrt(q_sum / exp.n_samples)


# -- 7: rails --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["overdamped", "underdamped", "lowrank"])
def test_unstable_coupling_saturates_without_nan(case: str) -> None:
    """An indefinite A drives cells to the rails: finite, clamped, flagged — never NaN or inf."""
    check_saturates(case)


@pytest.mark.em_only
def test_unstable_substep_saturates_without_nan() -> None:
    """EM with a substep far beyond its stability limit blows up into the rails, not to NaN."""
    check_saturates("huge_substep")


def check_saturates(case: str) -> None:
    rng = np.random.default_rng(17)
    n = 12
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.linspace(-2.0, 5.0, n) if case != "huge_substep" else np.linspace(1.0, 5.0, n)
    A = (q * eig) @ q.T
    b = rng.standard_normal(n)
    kw: dict = {}
    if case == "underdamped":
        kw = dict(underdamped=np.ones(n, bool), friction=np.full(n, 0.1))
    if case == "lowrank":
        kw = dict(coupling="lowrank", J=q[:, :4].T * 3.0, H=-np.eye(4), lam=np.ones(n))
    core = core_for(None if case == "lowrank" else A, b, seed=7, kappa=0.1, **kw)
    if case == "huge_substep":
        core.set_fidelity(substep=50.0)
    core.set_state(rng.uniform(-0.1, 0.1, n))
    acc = np.zeros(n)
    events = core.advance(200.0, acc)
    vmax = core.profile.vmax
    assert np.all(np.isfinite(core.x)) and np.all(np.isfinite(core.v)) and np.all(np.isfinite(acc))
    assert np.all(np.abs(core.x) <= vmax)
    assert events > 0 and core.sat.any()
    assert np.all(np.abs(core.x[core.sat == 0]) < vmax)
    core.clear_saturation()
    assert not core.sat.any()


# -- 8: realistic profile --------------------------------------------------------------------


def test_mismatch_is_fixed_by_serial_and_symmetric() -> None:
    """Same serial → same chip (whatever the noise seed); another serial → another chip; the
    coupling stays exactly symmetric (one resistor per pair) and the spreads match the profile.
    """
    rng = np.random.default_rng(18)
    n, r = 64, 4  # rel. s.e. of a spread from m values ≈ 1/sqrt(2m): 1.6 % (gain), 9 % (cap)
    A = spd(n, 10.0, rng)
    J, H = rng.standard_normal((r, n)), spd(r, 3.0, rng)
    prof = get_profile("realistic")

    def chip(serial: int, seed: int, coupling: str) -> AnalogCore:
        core = AnalogCore(n, r, prof, serial=serial, seed=seed)
        core.program(CoreParams(active=n, coupling=coupling, A=A, J=J, H=H,
                                lam=np.ones(n), bias=np.ones(n), temperature=KAPPA))
        return core

    for coupling, fields in (("dense", ["A"]), ("lowrank", ["J", "H", "lam"])):
        same = [chip(7, seed, coupling).effective for seed in (1, 99)]
        other = chip(8, 1, coupling).effective
        for f in [*fields, "bias", "mobility"]:
            np.testing.assert_array_equal(getattr(same[0], f), getattr(same[1], f))
            assert not np.allclose(getattr(same[0], f), getattr(other, f)), f
        Aeff = same[0].dense()
        assert np.array_equal(Aeff, Aeff.T) if coupling == "dense" else np.allclose(Aeff, Aeff.T)
        if coupling == "lowrank":
            assert np.array_equal(same[0].H, same[0].H.T)
    rel = chip(7, 1, "dense").effective.A / A - 1
    assert 0.9 * prof.gain_sigma < rel.std() < 1.1 * prof.gain_sigma
    mob = chip(7, 1, "dense").effective.mobility
    assert 0.5 * prof.cap_sigma < np.std(mob - 1) < 1.5 * prof.cap_sigma


def test_mismatched_chip_keeps_boltzmann_equilibrium() -> None:
    """Symmetric gain mismatch + capacitance mismatch + offsets: still N(A_eff⁻¹b_eff, κA_eff⁻¹)."""
    rng = np.random.default_rng(19)
    n = 12
    A = spd(n, 10.0, rng)
    b = A @ rng.uniform(-1, 1, n)
    prof = replace(get_profile("realistic"), name="realistic-nodrift", drift_rate=0.0)
    core = AnalogCore(n, 4, prof, serial=3, seed=8)
    core.program(CoreParams(active=n, A=A, bias=b, temperature=KAPPA))
    eff = core.effective
    assert not np.allclose(eff.A, A) and not np.allclose(eff.mobility, 1.0)
    sde = LinearSDE.from_core(eff.A, eff.bias, KAPPA, eff.mobility)
    np.testing.assert_allclose(sde.stationary_cov(), KAPPA * np.linalg.inv(eff.A), atol=1e-14)
    check_time_average(core, sde, T=1000.0, burn=20.0)
    spacing = 1.0 / np.min(np.linalg.eigvals(sde.K).real)
    check_samples(sample(core, 2000, spacing, burn=5.0), sde, spacing)
