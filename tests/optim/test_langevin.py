"""The Langevin family: statistics on quadratic potentials with a known
answer, the reference update rules step for step, bad input, checkpoints, and a spiral run.

Statistics: every coordinate of θ is an independent chain on L = ½ Σ k_i θ_i² (or, for the
partitioned schemes, a group of them), so one run of a few thousand steps on ~1000 coordinates
gives ~10⁶ samples in a second. Each per-step group average is a time series; its standard
error is sqrt(var·τ_int/n) with the integrated autocorrelation time τ_int estimated from the
chain itself (autocorrelation by FFT, Sokal's automatic window; the chain must be > 200 τ_int
long — checked), and a temperature passes when it is within Z = 4 standard errors of the
target. The targets are exact: BAOAB and its overdamped limit sample a harmonic potential's
configurations with no discretisation bias at any stable h, and BAOAB's post-O momenta too. The
one place with a bias is AdL's configurational temperature; it was measured on chains with
18–50× the samples used here: −1.2e-4 ± 0.7e-4 (h = 0.1, τ = 0.7), +0.3e-4 ± 1.7e-4 (h = 0.1,
τ = 1, with gradient noise σ_g = 2), −2.9e-4 ± 0.7e-4 (h = 0.15, τ = 0.5, the AdL groups of the
partitioned tests) — each below a sixth of the 4-standard-error tolerance applied to it here. Every test also asserts its standard error is small enough (≤ 1% of τ)
for the comparison to mean something. ``-s`` prints each measurement.
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import scipy.linalg

from host.nn import MLP, SigmoidBCE
from host.objective import Objective
from host.optim import (ALGORITHMS, Optimizer, adl, adlala, decode_rng, every_layer, lala, langevin, lol,
                        overdamped, partition, partitioned)
from host.optim.state_io import flatten, restore

Z = 4.0            # tolerance in standard errors


# ------------------------------------------------------------------------------ helpers
class Quadratic:
    """L(θ) = ½ θᵀ diag(k) θ; optional gradient noise σ_g·N(0, I) the optimizer is not told of."""

    def __init__(self, k: np.ndarray, sigma_g: float = 0.0, seed: int = 0) -> None:
        self.k = np.asarray(k, dtype=float)
        self.sigma_g = sigma_g
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def value_and_grad(self, theta, X, y):
        self.calls += 1
        g = self.k * theta
        if self.sigma_g:
            g = g + self.sigma_g * self.rng.standard_normal(theta.size)
        return 0.5 * float(theta @ (self.k * theta)), g


def stiffnesses(values, n_each):
    return np.repeat(np.asarray(values, dtype=float), n_each)


def integrated_autocorrelation_time(x: np.ndarray, c: float = 6.0) -> float:
    """τ_int = 1 + 2 Σ_t ρ(t), summed up to Sokal's automatic window M ≥ c·τ_int (ρ by FFT)."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    n = x.size
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    if acf[0] <= 0:
        return 1.0
    acf /= acf[0]
    tau = 1.0
    for m in range(1, n):
        tau = 1.0 + 2.0 * float(acf[1:m + 1].sum())
        if m >= c * tau:
            break
    return max(tau, 1e-3)


def mean_and_error(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, standard error, τ_int) of a correlated series: se = sqrt(var·τ_int/n)."""
    x = np.asarray(x, dtype=float)
    tau = integrated_autocorrelation_time(x)
    return float(x.mean()), math.sqrt(float(x.var()) * tau / x.size), tau


def assert_temperature(series, target: float, label: str) -> None:
    mean, se, tau_int = mean_and_error(series)
    n = len(series)
    print(f"  {label}: {mean:.5f} ± {se:.5f} (target {target:.5f}, |Δ|/se = {abs(mean - target) / se:.2f}, "
          f"τ_int {tau_int:.1f} steps, ESS {n / tau_int:.0f})")
    assert n > 200 * tau_int, f"{label}: chain of {n} steps too short for τ_int {tau_int:.1f}"
    assert se < 0.01 * target, f"{label}: standard error {se:.2e} too large to test anything"
    assert abs(mean - target) < Z * se, (f"{label}: {mean:.5f} ± {se:.5f} vs {target:.5f} "
                                         f"({abs(mean - target) / se:.1f} standard errors)")


def trainable(opt, name: str = "test") -> Optimizer:
    return opt if isinstance(opt, Optimizer) else Optimizer(name, opt)


def sample(opt, obj: Quadratic, groups: dict[str, slice], steps: int, burn: int, seed: int = 0,
           layout: list | None = None):
    """Per-step, per-group series: configurational temperature mean(θ·∇L) over the group, and the
    kinetic temperature and ξ that the optimizer reports. ``layout``: the parameter groups the
    optimizer is given (None: one group, 'all')."""
    opt = trainable(opt)
    state = opt.init(np.zeros(obj.k.size), np.random.default_rng(seed), groups=layout)
    conf = {g: np.empty(steps - burn) for g in groups}
    infos: dict[str, list] = {}
    for n in range(steps):
        state, info = opt.step(state, None, None, obj)
        if n >= burn:
            for g, sl in groups.items():
                th = state.theta[sl]
                conf[g][n - burn] = float(th @ (obj.k[sl] * th)) / th.size
            for key, v in info.items():
                infos.setdefault(key, []).append(v)
    return state, conf, {k: np.asarray(v) for k, v in infos.items()}


def langevin_stationary(k: float, h: float, gamma: float, tau: float, sigma_g: float) -> tuple[float, float]:
    """Exact stationary (k⟨θ²⟩, ⟨p²⟩) of our Langevin step on ½kθ² with gradient noise σ_g, from
    the discrete Lyapunov equation of the linear map (θ, p) → B A O A (θ, p)."""
    c = math.exp(-gamma * h)
    s = math.sqrt((1 - c * c) * tau)
    ops = [(np.array([[1, 0], [-h * k, 1]]), np.array([[0, 0], [-h * sigma_g, 0]])),   # B with noise
           (np.array([[1, h / 2], [0, 1]]), np.zeros((2, 2))),                          # A
           (np.array([[1, 0], [0, c]]), np.array([[0, 0], [0, s]])),                    # O
           (np.array([[1, h / 2], [0, 1]]), np.zeros((2, 2)))]                          # A
    M, Q = np.eye(2), np.zeros((2, 2))
    for Mi, Ni in ops:
        M, Q = Mi @ M, Mi @ Q @ Mi.T + Ni @ Ni.T
    S = scipy.linalg.solve_discrete_lyapunov(M, Q)
    return k * S[0, 0], S[1, 1]


# ------------------------------------------------------------------------------ single schemes
def test_langevin_baoab_samples_tau_on_a_harmonic_potential():
    """BAOAB: configurational ⟨θ·∇L⟩/N and kinetic ⟨pᵀp⟩/N (post-O momenta) equal τ exactly for
    a harmonic potential, at a step (hω up to 1.5) where a first-order scheme would be far off."""
    tau, h, gamma = 0.7, 0.5, 1.0
    k = stiffnesses([0.25, 1.0, 4.0, 9.0], 250)
    opt = every_layer(langevin(h=h, gamma=gamma, tau=tau))
    for kk in (0.25, 9.0):   # the exact discrete answer (sanity check of the claim above)
        assert np.allclose(langevin_stationary(kk, h, gamma, tau, 0.0), (tau, tau), rtol=1e-10)
    _, conf, info = sample(opt, Quadratic(k), {"all": slice(0, k.size)}, 6000, 500)
    assert_temperature(conf["all"], tau, "langevin configurational")
    assert_temperature(info["all.kinetic_temperature"], tau, "langevin kinetic")


def test_overdamped_samples_tau_on_a_harmonic_potential():
    """The BAOAB limit θ ← θ − (h²/2)∇L + (h/2)√τ(R_n + R_{n+1}) is exact for Gaussians too."""
    tau, h = 0.7, 0.5
    k = stiffnesses([0.5, 1.0, 2.0, 4.0], 250)          # h²k/2 from 1/16 to 1/2
    state, conf, info = sample(every_layer(overdamped(h=h, tau=tau)), Quadratic(k), {"all": slice(0, k.size)}, 8000, 500)
    assert_temperature(conf["all"], tau, "overdamped configurational")
    assert not any("kinetic" in key for key in info)    # no momentum, nothing reported
    assert all("p" not in group for group in state.opt)    # no momenta kept at all


def test_adl_samples_tau_and_its_thermostat_holds_the_kinetic_temperature():
    tau, h = 0.7, 0.1
    k = stiffnesses([0.5, 1.0, 2.0, 4.0], 250)
    opt = every_layer(adl(h=h, tau=tau, sigma_a=0.5, eps=1.0 / k.size, xi0=0.5))
    _, conf, info = sample(opt, Quadratic(k), {"all": slice(0, k.size)}, 8000, 1000)
    assert_temperature(conf["all"], tau, "adl configurational")
    assert_temperature(info["all.kinetic_temperature"], tau, "adl kinetic (where the thermostat measures it)")
    # without gradient noise ξ settles at the fluctuation–dissipation value σ_A²/(2τ)
    xi = mean_and_error(info["all.xi"])
    print(f"  adl ξ: {xi[0]:.4f} ± {xi[1]:.4f} (σ_A²/2τ = {0.25 / (2 * tau):.4f})")
    assert abs(xi[0] - 0.25 / (2 * tau)) < 0.05 * 0.25 / (2 * tau)


def test_adl_thermostat_absorbs_unknown_gradient_noise_and_langevin_does_not():
    """The reason AdL exists: gradient noise of a size nobody told the integrator heats plain
    Langevin (to exactly the temperature its linear map predicts) while AdL's thermostat ξ grows
    until the kinetic and the configurational temperature are back at τ."""
    tau, h, gamma, sigma_g = 1.0, 0.1, 1.0, 2.0
    k = stiffnesses([0.5, 1.0, 2.0, 4.0], 250)
    groups = {"all": slice(0, k.size)}

    _, conf, info = sample(every_layer(adl(h=h, tau=tau, sigma_a=0.5, eps=1.0 / k.size, xi0=0.5)),
                           Quadratic(k, sigma_g, seed=3), groups, 10000, 1000)
    assert_temperature(conf["all"], tau, "adl + gradient noise, configurational")
    assert_temperature(info["all.kinetic_temperature"], tau, "adl + gradient noise, kinetic")
    xi_star = (0.5**2 + h * sigma_g**2) / (2 * tau)   # σ_A² plus the noise the kicks inject, h·σ_g²
    xi = mean_and_error(info["all.xi"])[0]
    print(f"  adl ξ with gradient noise: {xi:.4f} (FD prediction (σ_A² + hσ_g²)/2τ = {xi_star:.4f})")
    assert abs(xi - xi_star) < 0.05 * xi_star

    _, conf, info = sample(every_layer(langevin(h=h, gamma=gamma, tau=tau)), Quadratic(k, sigma_g, seed=3), groups,
                           10000, 1000)
    pred = np.mean([langevin_stationary(kk, h, gamma, tau, sigma_g) for kk in (0.5, 1.0, 2.0, 4.0)], axis=0)
    assert_temperature(conf["all"], pred[0], "langevin + gradient noise, configurational (predicted)")
    assert_temperature(info["all.kinetic_temperature"], pred[1], "langevin + gradient noise, kinetic (predicted)")
    for name, series in (("configurational", conf["all"]), ("kinetic", info["all.kinetic_temperature"])):
        mean, se, _ = mean_and_error(series)
        assert (mean - tau) > 25 * se, f"langevin {name} {mean:.4f} should be far above τ = {tau}"


# ------------------------------------------------------------------------------ partitions
def _three(n):
    return [slice(0, n), slice(n, 2 * n), slice(2 * n, 3 * n)]


PARTITIONED = {
    # name: (optimizer, per group (τ, has momentum), per-group stiffness scale).
    # h is 0.15 where a group runs AdL (its only discretisation bias, see the module docstring),
    # and the overdamped group there is stiffer so that it still decorrelates in a few steps.
    "adlala": (lambda: adlala(h=0.15, tau1=0.5, tau2=2.0, gamma=1.0, sigma_a=0.5, eps=1 / 400, xi0=0.3),
               [(0.5, True), (2.0, True), (2.0, True)], (1, 1, 1)),
    "lol": (lambda: lol(h=0.4, tau1=0.5, tau2=2.0, gamma=1.0),
            [(0.5, True), (2.0, False), (2.0, False)], (1, 1, 1)),
    "lala": (lambda: lala(h=0.4, gammas="0.5, 1, 2", taus=[0.3, 1.0, 3.0]),
             [(0.3, True), (1.0, True), (3.0, True)], (1, 1, 1)),
    "partitioned": (lambda: partitioned(h=0.15, partition="0:adl(tau=0.5, eps=0.0025), 1:langevin(tau=1.5), "
                                                          "2:overdamped(tau=3)",
                                        gamma=1.0, sigma_a=0.5, xi0=0.3),
                    [(0.5, True), (1.5, True), (3.0, False)], (1, 1, 16)),
}


@pytest.mark.parametrize("name", list(PARTITIONED))
def test_partitioned_schemes_hold_each_group_at_its_own_temperature(name):
    """Three groups (independent blocks of a quadratic, four stiffnesses in each), each at its
    own temperature, all advanced by one shared gradient per step."""
    make, expected, scale = PARTITIONED[name]
    n = 400
    k = np.concatenate([s * stiffnesses([0.5, 1.0, 2.0, 4.0], n // 4) for s in scale])
    slices = _three(n)
    obj = Quadratic(k)
    steps = 12000
    _, conf, info = sample(make(), obj, {f"group{i}": s for i, s in enumerate(slices)}, steps, 1000,
                           layout=slices)
    assert obj.calls == steps                                    # one gradient per step
    for i, (tau, momentum) in enumerate(expected):
        assert_temperature(conf[f"group{i}"], tau, f"{name} group{i} configurational")
        key = f"group{i}.kinetic_temperature"
        assert (key in info) == momentum
        if momentum:
            assert_temperature(info[key], tau, f"{name} group{i} kinetic")


# ------------------------------------------------------------------------------ the update rules
def test_trajectories_follow_the_update_rules():
    """Run literal transcriptions of the update rules with the optimizer's own random stream; the
    optimizer's θ must be the same to rounding. BAOAB with a varying h per step: each step is
    B_{h/2} A_{h/2} O_h A_{h/2} B_{h/2} with its own h."""
    N, tau, gamma = 50, 0.3, 0.7
    k = np.linspace(0.5, 3.0, N)
    obj = Quadratic(k)
    theta0 = np.random.default_rng(9).standard_normal(N)
    hs = lambda n: 0.2 + 0.05 * math.sin(n)          # a schedule

    # Langevin (BAOAB), step-dependent h
    opt = trainable(langevin(h=hs, gamma=gamma, tau=tau))
    st = opt.init(theta0, np.random.default_rng(1))
    gen = decode_rng(st.rng)
    th, p = theta0.copy(), np.zeros(N)
    for n in range(40):
        h = hs(n)
        c = math.exp(-gamma * h)
        p = p - h / 2 * k * th
        th = th + h / 2 * p
        p = c * p + math.sqrt((1 - c * c) * tau) * gen.standard_normal(N)
        th = th + h / 2 * p
        p = p - h / 2 * k * th
        st, _ = opt.step(st, None, None, obj)
        np.testing.assert_allclose(st.theta, th, rtol=0, atol=1e-12)

    # Overdamped: R_{n+1} of one step is R_n of the next
    h = 0.3
    opt = trainable(overdamped(h=h, tau=tau))
    st = opt.init(theta0, np.random.default_rng(2))
    gen = decode_rng(st.rng)
    th = theta0.copy()
    r = gen.standard_normal(N)                                # R_0 is drawn at the first step
    for n in range(40):
        r_next = gen.standard_normal(N)
        th = th - h * h / 2 * k * th + h / 2 * math.sqrt(tau) * (r + r_next)
        r = r_next
        st, _ = opt.step(st, None, None, obj)
        np.testing.assert_allclose(st.theta, th, rtol=0, atol=1e-12)

    # AdL: initial B_{h/2}, then A C D E D C A B_h per step
    sig, eps, xi = 0.4, 0.05, 0.2
    opt = trainable(every_layer(adl(h=h, tau=tau, sigma_a=sig, eps=eps, xi0=xi)))
    st = opt.init(theta0, np.random.default_rng(3), groups=[slice(0, N)])
    gen = decode_rng(st.rng)
    th, p = theta0.copy(), -h / 2 * k * theta0
    for n in range(40):
        th = th + h / 2 * p
        p = math.exp(-xi * h / 2) * p
        p = p + sig * math.sqrt(h / 2) * gen.standard_normal(N)
        xi = xi + h * eps * (p @ p - N * tau)
        p = p + sig * math.sqrt(h / 2) * gen.standard_normal(N)
        p = math.exp(-xi * h / 2) * p
        th = th + h / 2 * p
        p = p - h * k * th
        st, info = opt.step(st, None, None, obj)
        np.testing.assert_allclose(st.theta, th, rtol=0, atol=1e-12)
        assert info["group0.xi"] == pytest.approx(xi, rel=1e-12)


def test_constant_schedules_equal_constants_and_runs_reproduce_from_the_seed():
    k = stiffnesses([1.0, 2.0], 10)
    obj = Quadratic(k)
    theta0 = np.ones(k.size)

    def run(opt, seed, steps=20):
        opt = trainable(opt)
        st = opt.init(theta0, np.random.default_rng(seed), groups=g)
        for _ in range(steps):
            st, _ = opt.step(st, None, None, obj)
        return st.theta

    g = [slice(0, 10), slice(10, 20)]
    a = run(adlala(h=0.2, tau1=0.1, tau2=0.2), 5)
    b = run(adlala(h=lambda n: 0.2, tau1=lambda n: 0.1, tau2=lambda n: 0.2), 5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, run(adlala(h=0.2, tau1=0.1, tau2=0.2), 5))
    assert not np.array_equal(a, run(adlala(h=0.2, tau1=0.1, tau2=0.2), 6))


def test_partition_forms_agree_and_presets_are_partitions():
    """The string, mapping and preset forms of one partition give the same trajectory."""
    k = stiffnesses([1.0, 2.0, 3.0], 8)
    g = [slice(0, 8), slice(8, 16), slice(16, 24)]
    obj = Quadratic(k)

    def run(opt):
        opt = trainable(opt)
        st = opt.init(np.ones(k.size), np.random.default_rng(4), groups=g)
        for _ in range(15):
            st, _ = opt.step(st, None, None, obj)
        return st.theta

    by_string = run(partitioned(h=0.2, partition="0:adl(tau=0.1, sigma_a=0.3, eps=0.01, xi0=0.2); "
                                                 "1:langevin(gamma=2, tau=0.2), 2:overdamped(tau=0.3)"))
    by_mapping = run(partition({"a": adl(0.2, 0.1, 0.3, 0.01, 0.2), "l": langevin(0.2, 2.0, 0.2),
                                "o": overdamped(0.2, 0.3)}, {0: "a", (1,): "l", "*": "o"}))
    np.testing.assert_array_equal(by_string, by_mapping)
    np.testing.assert_array_equal(
        run(adlala(h=0.2, tau1=0.1, tau2=0.2, gamma=2.0, sigma_a=0.3, eps=0.01, xi0=0.2)),
        run(partitioned(h=0.2, partition="0:adl(tau=0.1), *:langevin(tau=0.2)", gamma=2.0, sigma_a=0.3,
                        eps=0.01, xi0=0.2)))
    np.testing.assert_array_equal(run(lala(h=0.2, gammas=2.0, taus=0.2)),
                                  run(every_layer(langevin(h=0.2, gamma=2.0, tau=0.2))))


def test_checkpointed_state_continues_the_same_chain():
    """What host.training checkpoints (θ, the step, the generator and the transform's state as
    flat named arrays) continues bit for bit in a fresh optimizer initialised and given it."""
    k = stiffnesses([1.0, 3.0], 12)
    g = [slice(0, 12), slice(12, 24)]
    obj = Quadratic(k)
    theta0 = np.full(k.size, 0.5)

    def make():
        return trainable(partitioned(h=0.2, partition="0:adl, 1:overdamped", tau=0.1))

    opt = make()
    st = opt.init(theta0, np.random.default_rng(7), groups=g)
    for _ in range(30):
        st, _ = opt.step(st, None, None, obj)
    straight = st.theta.copy()

    opt = make()
    st = opt.init(theta0, np.random.default_rng(7), groups=g)
    for _ in range(12):
        st, _ = opt.step(st, None, None, obj)
    saved = {key: v.copy() for key, v in flatten(st.opt).items()}
    saved_theta, saved_step, saved_rng = st.theta.copy(), st.step, st.rng.copy()
    assert {"opt/0/p", "opt/0/xi", "opt/1/noise"} <= set(saved)
    opt = make()
    st = opt.init(np.zeros(k.size), np.random.default_rng(123), groups=g)   # as on resume: then overwritten
    st.theta, st.step, st.rng, st.opt = saved_theta, saved_step, saved_rng, restore(st.opt, saved)
    for _ in range(18):
        st, _ = opt.step(st, None, None, obj)
    np.testing.assert_array_equal(st.theta, straight)


# ------------------------------------------------------------------------------ groups and input
def test_groups_come_from_the_model_and_info_reports_each_group():
    model = MLP([2, 6, 4, 1])
    obj = Objective(model, SigmoidBCE())
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 2)), rng.integers(0, 2, 16)
    opt = trainable(adlala())
    st = opt.init(model.init(rng), rng, groups=model.groups)
    st, info = opt.step(st, X, y, obj)
    assert [g.name for g in st.groups] == ["layer0", "layer1", "layer2"]
    assert [("xi" in s) for s in st.opt] == [True, False, False]            # AdL, Langevin, Langevin
    assert set(info) == {"batch_loss", "layer0.kinetic_temperature", "layer0.xi",
                         "layer1.kinetic_temperature", "layer2.kinetic_temperature"}
    assert st.opt[0]["xi"] != 0
    # lol with split=2: two Langevin layers, the last overdamped
    opt = trainable(lol(split=2))
    st = opt.init(model.init(rng), rng, groups=model.groups)
    st, _ = opt.step(st, X, y, obj)
    assert [("p" in s, "noise" in s) for s in st.opt] == [(True, False), (True, False), (False, True)]
    # no model: one group with every parameter
    opt = trainable(every_layer(langevin()))
    st = opt.init(np.zeros(5), rng)
    _, info = opt.step(st, None, None, Quadratic(np.ones(5)))
    assert set(info) == {"batch_loss", "all.kinetic_temperature"}


@pytest.mark.parametrize("make, match", [
    (lambda: langevin(h=0.0), "step size h must be finite and > 0"),
    (lambda: langevin(h=-0.1), "step size h must be finite and > 0"),
    (lambda: overdamped(tau=-1e-4), "temperature τ must be finite and >= 0"),
    (lambda: adlala(tau1=-1.0), "temperature τ must be finite and >= 0"),
    (lambda: langevin(gamma=-1.0), "friction γ must be finite and >= 0"),
    (lambda: adl(sigma_a=float("nan")), "σ_A must be finite"),
    (lambda: partitioned(partition="0:adl, *:sgld"), "unknown scheme 'sgld' in the partition"),
    (lambda: partitioned(partition="0:nope"), "unknown scheme 'nope'"),
    (lambda: partitioned(partition="0:adl(gamma=1), *:langevin"), "scheme 'adl' takes no parameter"),
    (lambda: partitioned(partition="0:adl, 0:langevin"), "layer 0 appears twice"),
    (lambda: partitioned(partition="zero:adl"), "bad layer selector"),
    (lambda: partitioned(partition="0 adl"), "unknown scheme"),
    (lambda: lala(gammas="0.1,0.2", taus="1,2,3"), "2 values of gammas but 3 of taus"),
    (lambda: lala(taus="1e-4,warm"), "comma-separated numbers"),
    (lambda: adlala(split=0), "split must be >= 1"),
])
def test_bad_settings_are_refused_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_layers_and_schedules_are_refused_when_the_groups_are_known():
    model = MLP([2, 5, 1])                         # two layers: 0 and 1
    obj = Objective(model, SigmoidBCE())
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((4, 2)), rng.integers(0, 2, 4)
    layers = model.groups
    cases = [
        (adlala(split=3), layers, "partition names layer 2, which does not exist: the model has 2 parameter group"),
        (partitioned(partition="0:adl, 5:langevin"), layers, "names layer 5, which does not exist"),
        (partitioned(partition="0:adl"), layers, "gives no scheme to layer"),
        (lala(taus="1e-4,1e-4,1e-4"), layers, "names layer 2, which does not exist"),
        (lala(taus="1e-4,1e-4"), [slice(0, 10), slice(10, model.n_params - 1)], "cover .0, 20. but θ has 21"),
        (lala(taus="1e-4,1e-4"), [slice(0, 12), slice(10, model.n_params)], "without gaps or overlaps"),
        (langevin(h=lambda n: 0.1 if n < 1 else -0.1), None, r"step size h must be finite and > 0 \(step 1\)"),
        (overdamped(tau=lambda n: -1.0), None, r"temperature τ must be finite and >= 0 \(step 0\)"),
    ]
    for opt, groups, match in cases:
        with pytest.raises(ValueError, match=match):
            opt = trainable(opt)
            st = opt.init(model.init(rng), rng, groups=groups)
            for _ in range(3):
                st, _ = opt.step(st, X, y, obj)
    # known groups: a missing layer is refused already at init
    with pytest.raises(ValueError, match="names layer 1, which does not exist"):
        trainable(adlala(split=2)).init(np.zeros(4), rng, groups=[slice(0, 4)])


def test_a_non_finite_gradient_stops_without_touching_the_state():
    from host.optim import NonFiniteError

    class Bad(Quadratic):
        def value_and_grad(self, theta, X, y):
            loss, g = super().value_and_grad(theta, X, y)
            return loss, g * (np.inf if self.calls > 3 else 1.0)

    opt = trainable(every_layer(langevin()))
    st = opt.init(np.ones(4), np.random.default_rng(0))
    obj = Bad(np.ones(4))
    for _ in range(3):
        st, _ = opt.step(st, None, None, obj)
    before = (st.theta.copy(), st.opt[0]["p"].copy(), st.step)
    with pytest.raises(NonFiniteError):
        opt.step(st, None, None, obj)
    assert np.array_equal(st.theta, before[0]) and np.array_equal(st.opt[0]["p"], before[1])
    assert st.step == before[2]


# ------------------------------------------------------------------------------ the CLI path
def test_algorithms_registered_with_cli_options():
    from host.train_cli import add_train_parser
    for name in ("langevin", "overdamped", "adl", "adlala", "lol", "lala", "partitioned"):
        spec = ALGORITHMS[name]
        assert not spec.uses_device
        spec.build(**{k: d for k, (_t, d, _h) in spec.params.items()})   # defaults build
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["train", "--algo", "adlala", "--dataset", "spiral", "--tau1", "1e-5",
                              "--sigma-a", "0.02", "--split", "1", "--h", "0.2"])
    assert (args.hp_tau1, args.hp_sigma_a, args.hp_split, args.hp_h) == (1e-5, 0.02, 1, 0.2)
    args = parser.parse_args(["train", "--algo", "lala", "--dataset", "spiral", "--taus", "1e-4,1e-5"])
    assert args.hp_taus == "1e-4,1e-5"


def test_adlala_trains_the_spiral_through_host_training(tmp_path):
    """thermohil train --algo adlala --dataset spiral --device none, as the CLI calls it: the
    loss falls, and a resumed run (checkpointed p, ξ, generator) equals the uninterrupted one."""
    from host.training import TrainConfig, train
    base = dict(algo="adlala", dataset="spiral", device=None, batch_size=25, seed=0, progress=False,
                hyper={"h": 0.25, "tau1": 1e-4, "tau2": 1e-4})
    straight = train(TrainConfig(epochs=4, out=str(tmp_path / "a"), **base))
    rows = [r for r in map(__import__("json").loads, open(tmp_path / "a" / "metrics.jsonl")) if "train_loss" in r]
    print(f"  adlala spiral train loss by epoch: {[round(r['train_loss'], 3) for r in rows]}")
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert straight["iterations"] == 4 * 20
    train(TrainConfig(epochs=2, out=str(tmp_path / "b"), **base))
    resumed = train(TrainConfig(epochs=4, out=str(tmp_path / "b"), resume=True, **base))
    assert resumed["final_train_loss"] == straight["final_train_loss"]
