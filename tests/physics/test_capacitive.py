"""Capacitively coupled RLC cells (the published SPU's physics): equilibrium and refusals.

C dx = (b − G x − v) dt + sqrt(2κG) dW, dv = L⁻¹ x dt has the energy ½xᵀCx + ½vᵀLv, so
x ~ N(0, κC⁻¹) and v ~ N(b, κL⁻¹). Samples are taken 20 τ0 apart, several decorrelation times
of the slowest mode (damping G/(2C) ≥ 0.17/τ0 here), so they are nearly independent; the
measured lag-1 autocorrelation still inflates the standard errors.
"""
from __future__ import annotations

import numpy as np
import pytest

from device.analog import AnalogCore, CoreParams, get_profile

N = 8


def network(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cc = np.triu(rng.uniform(0.0, 0.5, (N, N)), 1)
    cc = cc + cc.T
    return np.diag(1.0 + cc.sum(1)) - cc


def sample(C, kappa, n, period, seed, b=None, linv=1.0):
    core = AnalogCore(N, 0, get_profile("ideal"), serial=1, seed=seed)
    core.program(CoreParams(active=N, coupling="capacitive", A=C, lam=np.full(N, linv),
                            friction=np.ones(N), bias=b, temperature=kappa))
    core.advance(100.0)
    xs, vs = np.empty((n, N)), np.empty((n, N))
    for k in range(n):
        core.advance(period)
        xs[k], vs[k] = core.x, core.v
    return xs, vs, core


def inflation(X: np.ndarray) -> float:
    """(1 + r)/(1 − r) for the largest measured lag-1 autocorrelation r (≥ 0)."""
    Z = X - X.mean(0)
    r = float(np.max((Z[1:] * Z[:-1]).sum(0) / (Z * Z).sum(0)))
    r = max(r, 0.0)
    return (1 + r) / (1 - r)


def test_voltages_sample_the_inverse_capacitance_and_currents_the_inductance():
    C, kappa, n = network(0), 0.25, 4000
    X, V, core = sample(C, kappa, n, 20.0, seed=7, b=np.linspace(-0.5, 0.5, N), linv=2.0)
    sigma = kappa * np.linalg.inv(C)
    g = inflation(np.hstack([X, V]))
    # E‖S − Σ‖_F² = Σ_ij (Σ_ii Σ_jj + Σ_ij²)/n for independent samples (Wishart); 3 s.e.
    expected = np.sqrt(g * np.sum(np.outer(np.diag(sigma), np.diag(sigma)) + sigma**2) / n)
    S = np.cov(X.T)
    assert np.linalg.norm(S - sigma) <= 3 * expected
    se_mean = np.sqrt(g * np.diag(sigma) / n)
    assert np.all(np.abs(X.mean(0)) <= 4 * se_mean)      # no bias reaches the voltages ...
    b, var_v = np.linspace(-0.5, 0.5, N), kappa * 2.0   # (1/L = 2: var v = κ/L)
    assert np.all(np.abs(V.mean(0) - b) <= 4 * np.sqrt(g * var_v / n))  # ... it moves the currents
    # sample variance: relative s.e. sqrt(2g/n)
    assert np.all(np.abs(V.var(0) - var_v) <= 4 * var_v * np.sqrt(2 * g / n))
    assert not core.sat.any()


def test_substep_follows_the_fastest_mode():
    """The automatic substep resolves both the damping λmax(C⁻¹)·G and the ringing
    sqrt(λmax(C⁻¹)/L); a stiffer network (smaller C) gets a smaller substep."""
    core = AnalogCore(N, 0, get_profile("ideal"), serial=1, seed=0)
    dts = []
    for scale in (1.0, 0.1):
        core.program(CoreParams(active=N, coupling="capacitive", A=scale * network(1),
                                lam=np.ones(N), friction=np.ones(N), temperature=0.01))
        cinv = np.linalg.eigvalsh(np.linalg.inv(scale * network(1)))[-1]
        assert core.stiffness() == pytest.approx(cinv + np.sqrt(cinv))
        dts.append(core.dt)
    assert dts[1] < dts[0] / 3


@pytest.mark.parametrize("C, why", [
    (np.diag([1.0] * (N - 1) + [-1.0]), "positive definite"),
    (np.zeros((N, N)), "positive definite"),
])
def test_a_capacitance_matrix_that_is_not_positive_definite_is_refused(C, why):
    core = AnalogCore(N, 0, get_profile("ideal"), serial=1, seed=0)
    before = core.effective
    with pytest.raises(ValueError, match=why):
        core.program(CoreParams(active=N, coupling="capacitive", A=C, lam=np.ones(N),
                                friction=np.ones(N)))
    assert core.effective.coupling == before.coupling  # nothing changed


def test_inductance_must_be_positive():
    core = AnalogCore(N, 0, get_profile("ideal"), serial=1, seed=0)
    with pytest.raises(ValueError, match="1/L"):
        core.program(CoreParams(active=N, coupling="capacitive", A=network(0), lam=np.zeros(N)))
