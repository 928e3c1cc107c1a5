"""Deterministic behaviour of the analog core API: profiles, validation, time keeping, streams."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from device.analog import PROFILES, AnalogCore, CoreParams, get_profile, kernels
from device.analog.core import MAX_DT, stiffness_bound
from device.analog.exact import LinearSDE, ou_cov, ou_mean, ou_sample

IDEAL = get_profile("ideal")


def spd(n: int, rng: np.random.Generator, lo: float = 1.0, hi: float = 10.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(lo, hi, n)) @ q.T


def dense_core(n: int = 6, seed: int = 0, **params: object) -> AnalogCore:
    rng = np.random.default_rng(100)
    core = AnalogCore(n, 2, IDEAL, serial=1, seed=seed)
    params = {"A": spd(n, rng), "bias": rng.standard_normal(n), "temperature": 0.01, **params}
    core.program(CoreParams(active=params.pop("active", n), **params))
    return core


def test_profiles() -> None:
    assert set(PROFILES) >= {"ideal", "realistic"}
    ideal, real = get_profile("ideal"), get_profile("realistic")
    assert ideal.gain_sigma == ideal.offset_sigma == ideal.adc_noise == ideal.drift_rate == 0
    assert ideal.dac_bits_coupling == ideal.adc_bits == 32
    assert real.dac_bits_coupling == 12 and real.adc_bits == 12 and real.gain_sigma > 0
    with pytest.raises(ValueError, match=r"ideal.*realistic"):
        get_profile("perfect")
    with pytest.raises(ValueError, match="vmax"):
        replace(ideal, vmax=0.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(active=7), "active"),
        (dict(coupling="sparse"), "coupling"),
        (dict(A=np.ones((6, 5))), "shape"),
        (dict(A=np.triu(np.ones((6, 6)))), "symmetric"),
        (dict(A=np.full((6, 6), np.nan)), "NaN"),
        (dict(A=np.full((6, 6), 1e13)), "beyond"),
        (dict(bias=np.ones(5)), "bias"),
        (dict(mobility=-np.ones(6)), "mobility"),
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("inf")), "temperature"),
        (dict(underdamped=np.full(6, 2)), "underdamped"),
        (dict(coupling="lowrank", J=np.ones((3, 6)), H=np.eye(3)), "max_rank"),
        (dict(coupling="lowrank", J=np.ones((2, 6)), H=np.eye(3)), "H"),
        (dict(coupling="lowrank", J=np.ones((2, 6)), H=np.array([[1.0, 2.0], [0.0, 1.0]])),
         "symmetric"),
        (dict(coupling="dense", A=None), "A is required"),
    ],
)
def test_program_rejects_bad_parameters(change: dict, match: str) -> None:
    core = dense_core()
    before = core.effective
    with pytest.raises(ValueError, match=match):
        core.program(CoreParams(**{"active": 6, "A": np.eye(6), **change}))
    assert core.effective.A is before.A  # nothing was installed


def test_active_subset_and_small_matrix() -> None:
    """Cells ≥ active are held at 0; A may be given full size or active×active."""
    rng = np.random.default_rng(1)
    A = spd(6, rng)
    full = dense_core(A=A, active=4)
    small = dense_core(A=A[:4, :4], active=4)
    np.testing.assert_array_equal(full.effective.A, small.effective.A)
    full.set_state(np.ones(6))
    assert np.all(full.x[4:] == 0)
    acc = np.zeros(6)
    full.advance(3.0, acc)
    assert np.all(full.x[4:] == 0) and np.all(acc[4:] == 0) and np.any(full.x[:4] != 0)


def test_advance_lands_exactly_on_t() -> None:
    """No coupling, no noise: x is frozen, so ∫x dt = x·t exactly iff the last substep is cut."""
    core = AnalogCore(3, 1, IDEAL, serial=0, seed=0)
    core.program(CoreParams(active=3, A=np.zeros((3, 3))))
    core.set_fidelity(substep=0.3)
    core.set_state([1.0, -2.0, 0.5])
    acc = np.zeros(3)
    core.advance(1.0, acc)  # 3 × 0.3 + 0.1
    np.testing.assert_allclose(acc, [1.0, -2.0, 0.5], rtol=1e-14)
    assert core.time == 1.0
    assert core.advance(0.0) == 0


def test_auto_substep_follows_stiffness() -> None:
    core = dense_core()
    assert core.dt == pytest.approx(0.02 / core.stiffness())
    core.set_fidelity(stability=0.01)
    assert core.dt == pytest.approx(0.01 / core.stiffness())
    core.set_fidelity(substep=1e-3)
    assert core.dt == 1e-3
    with pytest.raises(ValueError):
        core.set_fidelity(stability=0.0)
    core.program(CoreParams(active=6, A=np.zeros((6, 6))))
    core.set_fidelity()
    assert core.dt == MAX_DT


@pytest.mark.parametrize("seed", range(5))
def test_stiffness_bound_is_an_upper_bound(seed: int) -> None:
    """The bound dominates every rate of the linear generator (dense, low-rank, mixed modes)."""
    rng = np.random.default_rng(seed)
    n, r = 10, 3
    mob, fric = rng.uniform(0.2, 3.0, n), rng.uniform(0.1, 3.0, n)
    und = rng.random(n) < 0.5
    J, H = rng.standard_normal((r, n)), rng.standard_normal((r, r))
    H = H + H.T
    lam = rng.uniform(-1, 3, n)
    cases = {"dense": dict(A=spd(n, rng, 0.1, 50.0)), "lowrank": dict(J=J, H=H, lam=lam)}
    for coupling, kw in cases.items():
        core = AnalogCore(n, r, IDEAL, serial=0, seed=0)
        core.program(CoreParams(active=n, coupling=coupling, mobility=mob, friction=fric,
                                underdamped=und, **kw))
        A = core.effective.dense()
        K = LinearSDE.from_core(A, np.zeros(n), 0.0, mob, fric, und).K
        assert stiffness_bound(core.effective) >= np.max(np.abs(np.linalg.eigvals(K)))
        overdamped = np.linalg.eigvals(mob[:, None] * A)
        assert stiffness_bound(core.effective) >= np.max(np.abs(overdamped)) or und.all()


def test_noise_streams_are_reproducible() -> None:
    runs = []
    for seed in (5, 5, 6):
        core = dense_core(seed=seed)
        core.advance(2.0)
        runs.append(core.x.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    core = dense_core(seed=6)
    core.reseed(5)
    core.advance(2.0)
    np.testing.assert_array_equal(core.x, runs[0])


def test_zero_temperature_is_deterministic_relaxation() -> None:
    """κ = 0 follows the exact mean path to O(dt) (no noise draws at all)."""
    core = dense_core(temperature=0.0)
    core.set_fidelity(stability=0.001)
    x0 = np.linspace(-1, 1, 6)
    core.set_state(x0)
    core.advance(0.5)
    e = core.effective
    np.testing.assert_allclose(core.x, ou_mean(e.A, e.bias, x0, 0.5), atol=2e-3)


def test_set_state_clips_to_rails_and_keeps_overdamped_velocity_zero() -> None:
    core = dense_core(underdamped=np.arange(6) < 3)
    core.set_state(np.full(6, 50.0), v=np.ones(6))
    assert np.all(core.x == IDEAL.vmax)
    np.testing.assert_array_equal(core.v, [1, 1, 1, 0, 0, 0])
    core.reset_state()
    assert not core.x.any() and not core.v.any()
    with pytest.raises(ValueError, match="shape"):
        core.set_state(np.ones(5))
    with pytest.raises(ValueError, match="acc"):
        core.advance(1.0, np.zeros(5))


def test_adc_input_noise_and_drift() -> None:
    prof = get_profile("realistic")
    n = 256  # rel. s.e. of a pooled std over n cells ≈ 1/sqrt(2n) = 4.4 %: tolerances ≈ 4.5σ
    core = AnalogCore(n, 2, prof, serial=2, seed=3)
    core.program(CoreParams(active=n, A=np.eye(n), temperature=0.0))
    reads = np.array([core.read_adc_input() for _ in range(100)])
    assert reads.std(0).mean() == pytest.approx(prof.adc_noise, rel=0.02)
    off0 = core.offset.copy()
    np.testing.assert_array_equal(off0, core.mismatch.offset)
    core.advance(100.0)
    step = core.offset - off0
    assert step.std() == pytest.approx(prof.drift_rate * np.sqrt(100.0), rel=0.2)
    np.testing.assert_array_equal(core.effective.bias, core.offset)


def test_kernels_release_the_gil() -> None:
    for k in (kernels.em_dense, kernels.em_lowrank, kernels.em_dense_chains):
        assert k.targetoptions["nogil"]
    core = dense_core(n=64)
    worker = threading.Thread(target=core.advance, args=(50.0,))
    worker.start()
    reads = [core.read_adc_input() for _ in range(20)]  # served while the kernel runs
    worker.join()
    assert all(np.all(np.isfinite(r)) for r in reads)


def test_parallel_chains_kernel_matches_single_chain() -> None:
    rng = np.random.default_rng(4)
    n, K, steps = 5, 3, 100
    A, b = spd(n, rng), rng.standard_normal(n)
    mob, fric = rng.uniform(0.5, 2, n), rng.uniform(0.5, 2, n)
    und = (np.arange(n) % 2).astype(np.uint8)
    sig = np.full(n, 0.05)
    xi = rng.standard_normal((steps, K, n))
    X, V = rng.standard_normal((K, n)), np.zeros((K, n))
    sat, acc = np.zeros((K, n), np.uint8), np.zeros((K, n))
    single = [(X[c].copy(), V[c].copy(), np.zeros(n, np.uint8), np.zeros(n)) for c in range(K)]
    kernels.em_dense_chains(X, V, A, b, mob, fric, und, sig, xi, 0.01, 10.0, sat, acc)
    for c, (x, v, s, a) in enumerate(single):
        kernels.em_dense(x, v, A, b, mob, fric, und, sig, np.ascontiguousarray(xi[:, c]), 0.01,
                         10.0, s, a)
        np.testing.assert_allclose(X[c], x, rtol=1e-12)
        np.testing.assert_allclose(acc[c], a, rtol=1e-12)


def test_exact_reference_is_consistent() -> None:
    """exact.py: OU transition limits, and LinearSDE reduces to it for overdamped cells."""
    rng = np.random.default_rng(5)
    n = 4
    A, b, x0, mob = spd(n, rng), rng.standard_normal(n), rng.standard_normal(n), rng.uniform(
        0.5, 2, n)
    np.testing.assert_allclose(ou_mean(A, b, x0, 0.0, mob), x0)
    np.testing.assert_allclose(ou_mean(A, b, x0, 100.0, mob), np.linalg.solve(A, b))
    np.testing.assert_allclose(ou_cov(A, 0.1, 100.0, mob), 0.1 * np.linalg.inv(A), atol=1e-14)
    sde = LinearSDE.from_core(A, b, 0.1, mob)
    mean, cov = sde.transition(x0, 0.3)
    np.testing.assert_allclose(mean, ou_mean(A, b, x0, 0.3, mob))
    np.testing.assert_allclose(cov, ou_cov(A, 0.1, 0.3, mob), atol=1e-14)
    # 1-D check of the EM stationary variance against κ/(λ(1 − dtλ/2))
    one = LinearSDE.from_core([[2.0]], [0.0], 0.1)
    assert one.em_stationary_cov(0.1)[0, 0] == pytest.approx(0.1 / (2.0 * (1 - 0.1)))
    draws = ou_sample(rng, A, b, x0, 0.3, 0.1, mob, size=20000)
    se = np.sqrt(np.diag(ou_cov(A, 0.1, 0.3, mob)) / 20000)
    assert np.all(np.abs(draws.mean(0) - ou_mean(A, b, x0, 0.3, mob)) < 5 * se)
