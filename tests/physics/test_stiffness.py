"""The rate that sets the automatic substep: a Lanczos estimate of the spectral radius of M·A
with a small margin, never above the guaranteed bound, and never below the true radius."""
from __future__ import annotations

import numpy as np
import pytest

from device.analog import AnalogCore, CoreParams, get_profile, stiffness
from device.analog.exact import LinearSDE

IDEAL = get_profile("ideal")


def _core(n: int, r: int, coupling: str, rng: np.random.Generator, underdamped: bool = False):
    mob = rng.uniform(0.5, 2.0, n)
    core = AnalogCore(n, r, IDEAL, serial=0, seed=0)
    if coupling == "dense":
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        kw = dict(A=(q * np.linspace(1.0, 10.0, n)) @ q.T)
    else:
        J = rng.standard_normal((r, n)) / np.sqrt(n)
        H = rng.standard_normal((r, r))
        kw = dict(J=J, H=H + H.T, lam=rng.uniform(0.1, 1.0, n))
    und = rng.random(n) < 0.5 if underdamped else None
    core.program(CoreParams(active=n, coupling=coupling, mobility=mob, underdamped=und, **kw))
    return core, mob


@pytest.mark.parametrize("n", [12, 300])  # the exact spectrum below EXACT_UP_TO, Lanczos above
@pytest.mark.parametrize("coupling", ["dense", "lowrank"])  # low rank: its (tight) bound
def test_the_rate_covers_the_true_radius_and_stays_under_the_bound(n, coupling):
    rng = np.random.default_rng(n)
    core, mob = _core(n, 8, coupling, rng)
    A = core.effective.dense()
    true = float(np.max(np.abs(np.linalg.eigvals(mob[:, None] * A))))
    rate = core.stiffness()
    assert true <= rate <= stiffness.bound(core.effective) + 1e-12
    if coupling == "dense":
        assert rate <= stiffness.SAFETY * true * (1 + stiffness.TOLERANCE)


def test_mixed_cell_modes_keep_the_generator_covered():
    """With underdamped cells the rate is sqrt(ρ) + Γmax from the estimated ρ: it still bounds
    every rate of the full linear generator (x and v)."""
    rng = np.random.default_rng(3)
    core, mob = _core(200, 6, "dense", rng, underdamped=True)
    eff = core.effective
    K = LinearSDE.from_core(eff.dense(), np.zeros(200), 0.0, mob, eff.friction,
                            eff.underdamped.astype(bool)).K
    assert core.stiffness() >= np.max(np.abs(np.linalg.eigvals(K)))


@pytest.mark.em_only  # the Lanczos estimate; exact propagation has the spectrum
def test_a_dense_coupling_gets_the_substep_of_its_spectrum_not_of_gershgorin():
    """Eigenvalues 1…10 in a random basis: Gershgorin says about 40; the substep now follows
    λmax = 10 (with the margin), four times fewer substeps per τ0."""
    rng = np.random.default_rng(0)
    n = 256
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    core = AnalogCore(n, 2, IDEAL, serial=0, seed=0)
    core.program(CoreParams(active=n, A=(q * np.linspace(1.0, 10.0, n)) @ q.T))
    assert stiffness.bound(core.effective) > 3.5 * core.stiffness()
    assert core.stiffness() == pytest.approx(10.0 * stiffness.SAFETY, rel=1e-3)
    assert core.dt == pytest.approx(0.02 / core.stiffness())


@pytest.mark.em_only  # the Lanczos estimate; exact propagation has the spectrum
def test_when_lanczos_fails_the_bound_is_used(monkeypatch):
    rng = np.random.default_rng(1)
    core, _ = _core(100, 4, "dense", rng)

    def no_convergence(*args, **kwargs):
        raise stiffness.ArpackNoConvergence("no", np.zeros(0), np.zeros((0, 0)))

    monkeypatch.setattr(stiffness, "eigsh", no_convergence)
    core.program(CoreParams(active=100, A=core.effective.dense()))
    assert core.stiffness() == pytest.approx(stiffness.bound(core.effective))
    assert core.stiffness() > 1.5 * 10.0 * stiffness.SAFETY  # Gershgorin, well above λmax


def test_the_substep_is_reproducible():
    """The estimate starts from a vector of its own, not ARPACK's process-wide random state:
    the same commits give the same substeps, whatever ran before in the process."""
    rng = np.random.default_rng(2)
    n = 200
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * np.linspace(1.0, 10.0, n)) @ q.T
    runs = []
    for _ in range(3):
        core = AnalogCore(n, 2, IDEAL, serial=0, seed=0)
        runs.append([(core.program(CoreParams(active=n, A=A * (1 + 0.01 * k))), core.dt)[1]
                     for k in range(3)])
    assert runs[0] == runs[1] == runs[2]
