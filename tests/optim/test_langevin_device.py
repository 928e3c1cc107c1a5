"""Device-assisted Langevin family and thermodynamic natural Langevin (docs/algorithms.md).

Every test runs a real device: ``local://`` (the emulated firmware in this process, packets
through the wire codec) for the statistics, a daemon subprocess over tcp for the training run.
Ideal profile. The emulator integrates with Euler–Maruyama substeps, so a device O-step is the
exact Ornstein–Uhlenbeck step only up to an O(dt) bias; each statistical test computes the exact
law of the discrete map the emulator actually applies (substep read back from EMU_DT) and checks
that its distance from the ideal answer is below a quarter of the tolerance, so the comparison
with the digital twin means something. Standard errors come from each chain's own integrated
autocorrelation time (the helpers of test_langevin.py); tolerance Z = 4 standard errors.
``-s`` prints every measurement.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import scipy.linalg

import host
from host.optim import ALGORITHMS, adl, every_layer, langevin, natural_langevin, partitioned
from host.optim.splitting import exact_ou

from test_langevin import Quadratic, Z, assert_temperature, mean_and_error, sample, stiffnesses, trainable


# ------------------------------------------------------------------------------ helpers
def em_ou(gamma: float, kappa: float, t: float, dt: float) -> tuple[float, float]:
    """(c, var) of v ← c v + sqrt(var) R: the emulator's Euler–Maruyama substeps of
    dv = −Γv dt + sqrt(2κΓ) dW over t (full substeps of dt, the last one shortened)."""
    n = max(1, math.ceil(t / dt * (1 - 1e-12)))
    steps = [dt] * (n - 1) + [t - (n - 1) * dt]
    c, var = 1.0, 0.0
    for d in steps:
        c, var = (1 - gamma * d) * c, (1 - gamma * d) ** 2 * var + 2 * kappa * gamma * d
    return c, var


def baoab_stationary(k: float, h: float, c: float, s2: float) -> tuple[float, float]:
    """Stationary (k⟨θ²⟩, ⟨p²⟩) of B A O A on ½kθ² with the O-step p ← c p + sqrt(s2) R (post-O p)."""
    ops = [(np.array([[1, 0], [-h * k, 1]]), np.zeros((2, 2))),
           (np.array([[1, h / 2], [0, 1]]), np.zeros((2, 2))),
           (np.array([[1, 0], [0, c]]), np.array([[0, 0], [0, math.sqrt(s2)]])),
           (np.array([[1, h / 2], [0, 1]]), np.zeros((2, 2)))]
    M, Q = np.eye(2), np.zeros((2, 2))
    for Mi, Ni in ops:
        M, Q = Mi @ M, Mi @ Q @ Mi.T + Ni @ Ni.T
    S = scipy.linalg.solve_discrete_lyapunov(M, Q)
    return k * S[0, 0], S[1, 1]


def agree(dev_series, dig_series, label: str) -> None:
    """Device and digital means agree within Z combined standard errors."""
    m1, s1, _ = mean_and_error(dev_series)
    m2, s2, _ = mean_and_error(dig_series)
    se = math.hypot(s1, s2)
    print(f"  {label}: device {m1:.5f} ± {s1:.5f}, digital {m2:.5f} ± {s2:.5f}, |Δ|/se = {abs(m1 - m2) / se:.2f}")
    assert abs(m1 - m2) < Z * se, label


@pytest.fixture
def local():
    devs = []

    def make(cells: int, seed: int = 1, max_rank: int | None = None):
        url = f"local://?cells={cells}&seed={seed}" + (f"&max_rank={max_rank}" if max_rank is not None else "")
        devs.append(host.connect(url))
        return devs[-1]
    yield make
    for d in devs:
        d.close()


# ------------------------------------------------------------------------------ the O-step itself
def test_two_packets_do_every_groups_o_step_with_the_ou_law(local):
    """Four groups, two packets per step (AdL: (CD)_{h/2} E_h (CD)_{h/2}): a Langevin group
    (Γ = γ, κ = τ), an AdL group (Γ = ξ, κ = σ_A²/2ξ), an AdL group with ξ < 0 (done on the host,
    exactly) and an overdamped group (idle cells). With ∇L = 0 and ε = 0 the step is the O-step
    alone, two halves of h/2; the momenta after it, pooled over the cells and repeats, have the
    mean c·p0 and variance of the OU law."""
    n = 500
    dev = local(4 * n)
    part = {0: "langevin(gamma=1.0, tau=0.5)", 1: "adl(tau=0.5, sigma_a=0.6, eps=0, xi0=0.8)",
            2: "adl(tau=0.5, sigma_a=0.6, eps=0, xi0=-0.3)", 3: "overdamped(tau=0.5)"}
    opt = trainable(partitioned(h=0.5, partition=", ".join(f"{k}:{v}" for k, v in part.items()), device=dev,
                                everywhere=True))
    obj = Quadratic(np.zeros(4 * n))
    st = opt.init(np.zeros(4 * n), np.random.default_rng(0), groups=[slice(i * n, (i + 1) * n) for i in range(4)])
    p0 = np.array([0.8, -1.5, 0.4, 0.0])
    out = {i: [] for i in range(3)}
    for rep in range(20):
        # every group's momenta p0, past the initial half kick (∇L = 0 anyway)
        st.opt = tuple({**g, "count": 1, **({"p": np.full(n, p0[i])} if "p" in g else {})}
                       for i, g in enumerate(st.opt))
        st.step = 1
        packets = dev.stats.packets
        st, info = opt.step(st, None, None, obj)
        assert dev.stats.packets - packets == 2
        for i in range(3):
            out[i].append(st.opt[i]["p"].copy())
        assert info["group2.on_host"] == 1.0 and info["group1.on_host"] == 0.0
        assert "p" not in st.opt[3]                 # the overdamped group keeps no momenta
    dt = dev.read("EMU_DT")
    h = 0.5
    for i, (gamma, q) in enumerate([(1.0, 2 * 1.0 * 0.5), (0.8, 0.36), (-0.3, 0.36)]):
        x = np.concatenate(out[i])
        ideal_c = math.exp(-gamma * h)
        ideal_var = q * h * (-math.expm1(-2 * gamma * h) / (2 * gamma * h))
        if i == 2:
            c, var = ideal_c, ideal_var
        else:                               # two runs of h/2 (the O_{h/2} law composed with itself)
            c, var = em_ou(gamma, q / (2 * gamma), h / 2, dt)
            c, var = c * c, var * (1 + c * c)
        se_m, se_v = math.sqrt(var / x.size), var * math.sqrt(2 / x.size)
        m, v = x.mean(), x.var()
        print(f"  group{i}: mean {m:.5f} (OU {c * p0[i]:.5f}, ±{se_m:.5f}), var {v:.5f} (OU {var:.5f}, "
              f"±{se_v:.5f}); EM vs exact: {abs(c - ideal_c) * abs(p0[i]) / se_m:.3f} / "
              f"{abs(var - ideal_var) / se_v:.3f} s.e.")
        assert abs(m - c * p0[i]) < Z * se_m and abs(v - var) < Z * se_v
        assert abs(c - ideal_c) * abs(p0[i]) < Z * se_m / 4 and abs(var - ideal_var) < Z * se_v / 4


def test_noise_free_trajectories_follow_the_device_splitting(local):
    """τ = σ_A = 0: the device step is deterministic, so it must equal a literal transcription —
    Langevin B A O A with O the EM factor of the run; AdL B A (CD)_{h/2} E_h (CD)_{h/2} A, the
    digital order, with the kinetic energy read back after the first packet."""
    N, h, gamma, eps, xi = 40, 0.3, 0.7, 0.05, 0.4
    k = np.linspace(0.5, 3.0, N)
    theta0 = np.random.default_rng(9).standard_normal(N)
    dev = local(N)
    for scheme in ("langevin", "adl"):
        if scheme == "langevin":
            opt = trainable(every_layer(langevin(h=h, gamma=gamma, tau=0.0, device=dev)))
        else:
            opt = trainable(every_layer(adl(h=h, tau=0.01, sigma_a=0.0, eps=eps, xi0=xi, device=dev)))
        st = opt.init(theta0, np.random.default_rng(1), groups=[slice(0, N)])
        th, p, x = theta0.copy(), -h / 2 * k * theta0, xi
        for n in range(30):
            th = th + h / 2 * p
            if scheme == "langevin":
                st, info = opt.step(st, None, None, Quadratic(k))
                p = em_ou(gamma, 0.0, h, dev.read("EMU_DT"))[0] * p
            else:
                st, info = opt.step(st, None, None, Quadratic(k))
                assert info["group0.on_host"] == 0.0
                dt = dev.read("EMU_DT")     # the substep of the second run (its friction: the new ξ)
                p = em_ou(x, 0.0, h / 2, info["group0.xi"] / x * dt)[0] * p    # dt = stability/ξ
                x = x + h * eps * (p @ p - N * 0.01)
                p = em_ou(x, 0.0, h / 2, dt)[0] * p
                assert info["group0.xi"] == pytest.approx(x, rel=1e-6)
            th = th + h / 2 * p
            p = p - h * k * th
            np.testing.assert_allclose(st.theta, th, rtol=0, atol=1e-7)   # q31 read-outs: ~1e-9 per step


# ------------------------------------------------------------------------------ statistics
def test_langevin_device_and_digital_agree_on_a_harmonic_potential(local):
    """BAOAB with the O-step in the cells: configurational and kinetic temperatures equal the
    exact stationary law of the map the emulator applies (the O-step by EM substeps), which is
    within half the tolerance of τ, and equal the digital twin's — at hω up to 1.5, γh = 0.5."""
    tau, h, gamma = 0.7, 0.5, 1.0
    k = stiffnesses([0.25, 1.0, 4.0, 9.0], 50)
    dev = local(k.size)
    groups = {"all": slice(0, k.size)}
    _, conf, info = sample(every_layer(langevin(h=h, gamma=gamma, tau=tau, device=dev, stability=0.005)),
                           Quadratic(k), groups, 2200, 200)
    _, conf_d, info_d = sample(every_layer(langevin(h=h, gamma=gamma, tau=tau)), Quadratic(k), groups, 2200, 200,
                               seed=1)
    c, var = em_ou(gamma, tau, h, dev.read("EMU_DT"))
    target = np.mean([baoab_stationary(kk, h, c, var) for kk in (0.25, 1.0, 4.0, 9.0)], axis=0)
    se = [mean_and_error(conf["all"])[1], mean_and_error(info["all.kinetic_temperature"])[1]]
    print(f"  EM O-step bias (substep {dev.read('EMU_DT'):.4f}): configurational {target[0] - tau:+.2e}, "
          f"kinetic {target[1] - tau:+.2e} ({abs(target[0] - tau) / se[0]:.2f} / "
          f"{abs(target[1] - tau) / se[1]:.2f} s.e.)")
    assert abs(target[0] - tau) < Z * se[0] / 2 and abs(target[1] - tau) < Z * se[1] / 2
    assert_temperature(conf["all"], target[0], "langevin-device configurational (emulated map)")
    assert_temperature(info["all.kinetic_temperature"], target[1], "langevin-device kinetic (emulated map)")
    agree(conf["all"], conf_d["all"], "configurational")
    agree(info["all.kinetic_temperature"], info_d["all.kinetic_temperature"], "kinetic")
    assert set(info["device_time"]) == {h}


def test_adl_device_absorbs_unknown_gradient_noise_like_its_digital_twin(local):
    """The thermostat reading the device's momenta and writing the cells' friction drives the
    kinetic and configurational temperatures to τ under gradient noise σ_g = 2 it is not told
    of, and ξ to (σ_A² + hσ_g²)/2τ, as the digital AdL does."""
    tau, h, sigma_g = 1.0, 0.1, 2.0
    k = stiffnesses([0.5, 1.0, 2.0, 4.0], 75)
    dev = local(k.size)
    groups = {"all": slice(0, k.size)}
    kw = dict(h=h, tau=tau, sigma_a=0.5, eps=1.0 / k.size, xi0=0.5)
    _, conf, info = sample(every_layer(adl(**kw, device=dev)), Quadratic(k, sigma_g, seed=3), groups, 2800, 500)
    _, conf_d, info_d = sample(every_layer(adl(**kw)), Quadratic(k, sigma_g, seed=4), groups, 2800, 500, seed=1)
    assert not info["all.on_host"].any()
    assert_temperature(conf["all"], tau, "adl-device + gradient noise, configurational")
    assert_temperature(info["all.kinetic_temperature"], tau, "adl-device + gradient noise, kinetic")
    agree(conf["all"], conf_d["all"], "configurational")
    agree(info["all.kinetic_temperature"], info_d["all.kinetic_temperature"], "kinetic")
    agree(info["all.xi"], info_d["all.xi"], "ξ")
    xi_star = (0.5**2 + h * sigma_g**2) / (2 * tau)
    xi = mean_and_error(info["all.xi"])[0]
    print(f"  adl-device ξ: {xi:.4f} (FD prediction {xi_star:.4f})")
    assert abs(xi - xi_star) < 0.05 * xi_star


def test_partitioned_device_holds_each_group_at_its_own_temperature(local):
    """AdL, Langevin and overdamped groups at three temperatures, one gradient and two device
    packets per step; device and digital twins agree group by group."""
    n = 100
    k = np.concatenate([stiffnesses(ks, n // 4) for ks in ([0.5, 1, 2, 4], [2, 4, 8, 16], [8, 12, 16, 24])])
    slices = [slice(i * n, (i + 1) * n) for i in range(3)]
    spec = "0:adl(tau=0.5, eps=0.005), 1:langevin(tau=1.5, gamma=2), 2:overdamped(tau=3)"
    kw = dict(h=0.25, partition=spec, gamma=1.0, sigma_a=0.5, xi0=0.3)
    dev = local(3 * n)
    groups = {f"group{i}": sl for i, sl in enumerate(slices)}
    seen: list[int] = []

    class Counting(Quadratic):                                 # device packets between gradients
        def value_and_grad(self, theta, X, y):
            seen.append(dev.stats.packets)
            return super().value_and_grad(theta, X, y)

    _, conf, info = sample(partitioned(device=dev, everywhere=True, stability=0.005, **kw), Counting(k), groups,
                           2000, 400, layout=slices)
    assert set(np.diff(seen)) == {2}                           # two packets per step (AdL)
    _, conf_d, info_d = sample(partitioned(**kw), Quadratic(k), groups, 2000, 400, seed=1, layout=slices)
    for i, tau in enumerate((0.5, 1.5, 3.0)):
        assert_temperature(conf[f"group{i}"], tau, f"group{i} configurational (device)")
        agree(conf[f"group{i}"], conf_d[f"group{i}"], f"group{i} configurational")
        if i < 2:
            assert_temperature(info[f"group{i}.kinetic_temperature"], tau, f"group{i} kinetic (device)")
            agree(info[f"group{i}.kinetic_temperature"], info_d[f"group{i}.kinetic_temperature"],
                  f"group{i} kinetic")


def test_exact_ou_covers_negative_and_zero_friction():
    rng = np.random.default_rng(0)
    for f in (-0.4, 0.0, 1e-14, 0.7):
        p = exact_ou(np.full(200_000, 1.3), f, 0.5, 0.6, rng)
        var = 0.5 * 0.6 if abs(f) < 1e-9 else 0.5 * -math.expm1(-2 * f * 0.6) / (2 * f)
        assert abs(p.mean() - 1.3 * math.exp(-f * 0.6)) < 5 * math.sqrt(var / p.size)
        assert abs(p.var() - var) < 5 * var * math.sqrt(2 / p.size)


def test_settings_and_sizes_are_checked(local):
    dev = local(8)
    with pytest.raises(ValueError, match="only 8 cells"):
        trainable(every_layer(langevin(device=dev))).init(np.zeros(9), np.random.default_rng(0))
    with pytest.raises(ValueError, match="headroom"):
        langevin(device=dev, headroom=2.0)


def test_device_algorithms_are_registered_with_cli_options():
    from host.train_cli import add_train_parser
    for name in ("langevin-device", "adl-device", "adlala-device", "lol-device", "lala-device",
                 "partitioned-device", "natural-langevin"):
        assert ALGORITHMS[name].uses_device
    for name in ("langevin", "adlala", "lol", "lala"):
        assert set(ALGORITHMS[f"{name}-device"].params) == set(ALGORITHMS[name].params) | {"stability"}
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["train", "--algo", "adlala-device", "--dataset", "spiral", "--stability", "0.01",
                              "--tau1", "1e-5"])
    assert args.hp_stability == 0.01 and args.hp_tau1 == 1e-5
    args = parser.parse_args(["train", "--algo", "natural-langevin", "--dataset", "spiral", "--t", "20",
                              "--lam", "0.5", "--init", "warm"])
    assert args.hp_t == 20 and args.hp_lam == 0.5 and args.hp_init == "warm"


@pytest.mark.parametrize("name", ["langevin-device", "adl-device", "adlala-device", "lol-device", "lala-device",
                                  "partitioned-device", "natural-langevin"])
def test_every_device_algorithm_steps_a_three_layer_mlp_with_one_or_two_packets_per_step(local, name):
    """Each registry entry, built as ``thermohil train`` builds it (defaults, the device first),
    on an MLP 2-6-5-1 (three groups; LOL: overdamped groups stay digital, their cells idle). One
    packet per step, two when a group runs AdL (E_h between the halves)."""
    from host.nn import MLP, SigmoidBCE
    from host.objective import Objective
    model = MLP([2, 6, 5, 1])
    obj = Objective(model, SigmoidBCE())
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 2)), (rng.random(8) < 0.5).astype(float)
    dev = local(model.n_params, max_rank=8)
    spec = ALGORITHMS[name]
    opt = spec.build(dev, **{k: v[1] for k, v in spec.params.items()})
    st = opt.init(model.init(rng), rng, groups=model.groups)
    for _ in range(3):
        packets = dev.stats.packets
        st, info = opt.step(st, X, y, obj)
        expected = 2 if name in ("adl-device", "adlala-device", "partitioned-device") else 1
        assert dev.stats.packets - packets == expected and np.all(np.isfinite(st.theta))
    if name == "lol-device":        # layers 1, 2 overdamped: no momenta, cells left at 0
        assert all("p" not in g for g in st.opt[1:])
        assert not dev.velocity()[model.groups[1].slice.start:].any()


def test_adlala_device_trains_the_spiral_through_a_daemon(tmp_path):
    """``thermohil train --algo adlala-device --dataset spiral --device tcp://…`` as the CLI
    calls it: a real daemon subprocess, one cell per parameter (2-100-1 MLP: 401). At τ = 1e-4 the
    gradient dominates, so the run follows its digital twin (same seed, same batches) closely."""
    from support import start_daemon
    from host.training import TrainConfig, train
    base = dict(dataset="spiral", epochs=4, batch_size=25, seed=0, progress=False)
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "401", "--seed", "3")
    try:
        summary = train(TrainConfig(algo="adlala-device", device=d.endpoint, out=str(tmp_path / "dev"), **base))
    finally:
        assert d.stop() == 0
    digital = train(TrainConfig(algo="adlala", device=None, out=str(tmp_path / "dig"), **base))
    rows = [json.loads(x) for x in open(tmp_path / "dev" / "metrics.jsonl")]
    steps = [r for r in rows if "batch_loss" in r]
    evals = [r["train_loss"] for r in rows if "train_loss" in r]
    twin = [json.loads(x)["train_loss"] for x in open(tmp_path / "dig" / "metrics.jsonl") if "train_loss" in x]
    print(f"  adlala-device spiral train loss by epoch {[round(x, 3) for x in evals]}, digital twin "
          f"{[round(x, 3) for x in twin]}; {steps[-1]['bytes_sent']} B up / {steps[-1]['bytes_received']} B "
          f"down per step")
    assert len(steps) == 4 * 20 and all(r["device_time"] == 0.25 for r in steps)
    assert evals[-1] < evals[0]
    assert abs(summary["final_train_loss"] - digital["final_train_loss"]) < 0.25 * digital["final_train_loss"]
    # per step, two packets: the momenta up twice (401 words each), FRICTION and NOISE_GAIN once
    # (ξ changes at E_h, between the packets; the first packet reuses the last one's), headers;
    # twice when a group's scale changes at the first packet (a few steps)
    up = np.array([r["bytes_sent"] for r in steps[1:]])
    assert np.all((4 * 4 * 401 < up) & (up < 4 * 6 * 401 + 1200))
    assert np.mean(up < 4 * 4 * 401 + 1200) > 0.8
    # down, twice: the momenta and the saturation map (401 words each), small headers
    assert all(16 * 401 < r["bytes_received"] < 16 * 401 + 800 for r in steps)
    assert summary["device_time"] == pytest.approx(4 * 20 * 0.25 + summary["calibration_time"])


# ------------------------------------------------------------------------------ natural Langevin
class LinearMSE:
    """R independent 2-parameter linear models with rank-one data and weight decay μ:
    ℓ(θ) = ½‖J(θ − θ*)‖² + ½μ‖θ − θ*‖², J = blockdiag(√g·u_rᵀ); the GGN of the data term is
    G = JᵀJ (H = I), the Hessian K = G + μI. In each block the mode along u_r has g_K = g + μ,
    f = g + λ; the mode across it g_K = μ, f = λ."""

    def __init__(self, R: int, g: float, mu: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        ang = rng.uniform(0, np.pi, R)
        self.U = np.stack([np.cos(ang), np.sin(ang)], axis=1)          # u_r
        self.W = np.stack([-np.sin(ang), np.cos(ang)], axis=1)         # across
        self.J = scipy.linalg.block_diag(*[math.sqrt(g) * u[None, :] for u in self.U])
        self.mu, self.P = mu, 2 * R
        self.theta_star = rng.standard_normal(self.P)

    def value_and_grad(self, theta, X, y):
        e = theta - self.theta_star
        r = self.J @ e
        return 0.5 * float(r @ r + self.mu * e @ e), self.J.T @ r + self.mu * e

    def ggn_factors(self, theta, X, y):
        return self.J.copy(), np.eye(self.J.shape[0])

    def modes(self, theta):
        e = (theta - self.theta_star).reshape(-1, 2)
        return np.einsum("ri,ri->r", e, self.U), np.einsum("ri,ri->r", e, self.W)


def natural_mode_law(k: float, f: float, h: float, tau: float, t: float, dt: float) -> tuple[float, float, float]:
    """For one mode (Hessian k, coupling f) of the natural Langevin chain as the emulator runs it
    (x from 0, EM substeps, read after t): (drift factor μ_t, x-noise variance / κ, stationary
    ⟨e²⟩). The ideal limit t → ∞, dt → 0 is (1, 1/f, τ/(k(1 − hk/2f)))."""
    n = max(1, math.ceil(t / dt * (1 - 1e-12)))
    a, var = 1.0, 0.0
    for d in [dt] * (n - 1) + [t - (n - 1) * dt]:
        a, var = (1 - d * f) * a, (1 - d * f) ** 2 * var + 2 * d
    mu_t = 1 - a
    kappa = 2 * tau / h
    m = 1 - h * mu_t * k / f
    return mu_t, var, h * h * kappa * var / (1 - m * m)


def test_natural_langevin_samples_the_predicted_stationary_covariance(local):
    """θ ← θ − h x, x ~ N(F⁻¹∇ℓ, (2τ/h)F⁻¹): on a quadratic with Hessian K and constant F,
    e = θ − θ* follows e' = (I − hF⁻¹K)e + N(0, 2τhF⁻¹), whose stationary covariance is
    Σ = τ (K − (h/2) K F⁻¹ K)⁻¹ (= τ F⁻¹/(1 − h/2) when F = K). Checked per mode, with the
    emulator's finite t and EM substep accounted for (and shown to be below the tolerance)."""
    R, g, mu, lam, h, tau, t = 32, 2.0, 1.0, 2.0, 1.0, 0.3, 5.0
    obj = LinearMSE(R, g, mu)
    dev = local(obj.P, seed=2, max_rank=R)
    opt = trainable(natural_langevin(h=h, tau=tau, lam=lam, t=t, device=dev, stability=0.02))
    st = opt.init(obj.theta_star.copy(), np.random.default_rng(0))
    along, across = [], []
    for n in range(700):
        st, info = opt.step(st, None, None, obj)
        if n >= 50:
            a, c = obj.modes(st.theta)
            along.append(np.mean(a * a))
            across.append(np.mean(c * c))
    assert info["kappa"] == pytest.approx(2 * tau / h)
    dt = dev.read("EMU_DT")
    for label, series, k, f in (("along u (K = g + μ, F = g + λ)", along, g + mu, g + lam),
                                ("across u (K = μ, F = λ)", across, mu, lam)):
        ideal = tau / (k * (1 - h * k / (2 * f)))
        exact = natural_mode_law(k, f, h, tau, t, dt)[2]
        m, se, tau_int = mean_and_error(np.asarray(series))
        print(f"  natural Langevin ⟨e²⟩ {label}: {m:.5f} ± {se:.5f} (τ(K − (h/2)KF⁻¹K)⁻¹ = {ideal:.5f}, "
              f"emulated map {exact:.5f}: {abs(exact - ideal) / se:.2f} s.e.), |Δ|/se = {abs(m - exact) / se:.2f}, "
              f"τ_int {tau_int:.1f}")
        assert len(series) > 200 * tau_int and se < 0.02 * ideal
        assert abs(exact - ideal) < Z * se / 4
        assert abs(m - exact) < Z * se


@pytest.mark.parametrize("t", [5.0, 0.3])
def test_natural_langevin_mean_step_is_the_natural_gradient_step(local, t):
    """From a fixed θ, the mean of many steps is −h (I − e^{−Ft}) F⁻¹∇ℓ: the natural-gradient
    step −h F⁻¹∇ℓ once t ≫ 1/λ_min(F), shortened per mode at short t (x starts at 0). χ² of the
    mean over all coordinates, with the exact covariance of one step."""
    R, g, mu, lam, h, tau = 16, 2.0, 1.0, 2.0, 0.5, 0.3
    obj = LinearMSE(R, g, mu, seed=1)
    dev = local(obj.P, seed=3, max_rank=R)
    opt = trainable(natural_langevin(h=h, tau=tau, lam=lam, t=t, device=dev, stability=0.02))
    theta0 = obj.theta_star + np.random.default_rng(5).standard_normal(obj.P)
    st = opt.init(theta0, np.random.default_rng(0))
    reps = 250
    steps = np.empty((reps, obj.P))
    for i in range(reps):
        st.theta, st.step = theta0.copy(), 0
        st, _ = opt.step(st, None, None, obj)
        steps[i] = st.theta - theta0
    _, grad = obj.value_and_grad(theta0, None, None)
    F = obj.J.T @ obj.J + lam * np.eye(obj.P)
    w, V = np.linalg.eigh(F)
    dt = dev.read("EMU_DT")
    law = [natural_mode_law(1.0, f, h, tau, t, dt) for f in w]      # k does not enter μ_t, var
    mu_t, var = np.array([x[0] for x in law]), np.array([x[1] for x in law])
    expected = -h * V @ (mu_t * (V.T @ grad) / w)
    cov_step = V @ np.diag(h * h * (2 * tau / h) * var) @ V.T
    d = steps.mean(axis=0) - expected
    chi2 = float(d @ np.linalg.solve(cov_step / reps, d))
    natural = -h * np.linalg.solve(F, grad)
    rel = np.linalg.norm(steps.mean(axis=0) - natural) / np.linalg.norm(natural)
    print(f"  t = {t}: χ² of the mean step = {chi2:.1f} for {obj.P} dof; |mean − (−hF⁻¹∇ℓ)|/|hF⁻¹∇ℓ| = {rel:.4f}; "
          f"slowest mode moves {mu_t.min():.4f} of its natural step")
    assert chi2 < obj.P + 5 * math.sqrt(2 * obj.P)
    if t >= 5:
        assert np.max(1 - mu_t) < 1e-4                               # = the natural-gradient step
    else:
        assert mu_t.min() < 0.6                                      # visibly shortened


# ------------------------------------------------------------------------------ natural groups
class NaturalPlusQuadratic:
    """θ = [θ_lin (2R, a LinearMSE) | θ_q (m, ½ Σ k θ_q²)]: group 0 for a natural scheme (its GGN
    block is JᵀJ), group 1 for a momentum scheme."""

    def __init__(self, R: int, g: float, mu: float, k: np.ndarray, seed: int = 0) -> None:
        self.lin, self.k = LinearMSE(R, g, mu, seed), np.asarray(k, float)
        self.n_lin = self.lin.P
        self.P = self.n_lin + self.k.size
        self.theta_star = np.concatenate([self.lin.theta_star, np.zeros(self.k.size)])

    def value_and_grad(self, theta, X, y):
        v, g = self.lin.value_and_grad(theta[:self.n_lin], X, y)
        q = theta[self.n_lin:]
        return v + 0.5 * float(q @ (self.k * q)), np.concatenate([g, self.k * q])

    def ggn_sqrt(self, theta, X, y):
        return np.hstack([self.lin.J, np.zeros((self.lin.J.shape[0], self.k.size))])

    def modes(self, theta):
        return self.lin.modes(theta[:self.n_lin])


def test_natural_sample_has_the_exact_mean_and_covariance():
    """natural_sample draws N(F⁻¹b, κF⁻¹), F = UᵀU + λI, by one push-through solve: κ = 0 gives
    F⁻¹b to rounding; 4·10⁴ draws have the covariance κF⁻¹ entry by entry within 4 s.e."""
    from host.optim.splitting import natural_sample
    rng = np.random.default_rng(0)
    U, b, lam, kappa = rng.standard_normal((3, 6)), rng.standard_normal(6), 0.7, 0.4
    F = U.T @ U + lam * np.eye(6)
    np.testing.assert_allclose(natural_sample(U, lam, b, 0.0, rng), np.linalg.solve(F, b), rtol=1e-12)
    np.testing.assert_allclose(natural_sample(np.zeros((0, 6)), lam, b, 0.0, rng), b / lam)
    x = np.array([natural_sample(U, lam, b, kappa, rng) for _ in range(40_000)])
    C = kappa * np.linalg.inv(F)
    se = np.sqrt((C * C + np.outer(np.diag(C), np.diag(C))) / len(x))    # s.e. of a Gaussian covariance
    assert np.all(np.abs(np.cov(x.T) - C) < Z * se)
    assert np.all(np.abs(x.mean(0) - np.linalg.solve(F, b)) < Z * np.sqrt(np.diag(C) / len(x)))


def test_natural_group_in_a_partition_samples_its_law_digital_and_on_the_device(local):
    """'0:natural, 1:langevin': the natural group's ⟨e²⟩ per mode is τ(K − (h/2)KF⁻¹K)⁻¹ and the
    Langevin group's configurational temperature is τ, digitally and on the device — there in
    ONE packet per step (the natural run of t, then the momentum run of h) — and the twins
    agree. Fidelity 0.01 for both runs, so the EMU_DT read back is the substep of each."""
    R, g, mu, lam, h, t = 48, 2.0, 1.0, 2.0, 0.5, 3.0
    tau_n, tau_l, gamma = 0.3, 0.5, 1.0
    k = stiffnesses([0.5, 1.0, 2.0], 40)
    obj = NaturalPlusQuadratic(R, g, mu, k)
    groups = [slice(0, obj.n_lin), slice(obj.n_lin, obj.P)]
    spec = f"0:natural(tau={tau_n}, lam={lam}), 1:langevin(gamma={gamma}, tau={tau_l})"
    dev = local(obj.P, seed=4, max_rank=R)
    results = {}
    on_device = spec.replace(f"lam={lam})", f"lam={lam}, t={t}, drift_check=0)")   # its run: t
    for label, opt in (("device", partitioned(h=h, partition=on_device, device=dev, everywhere=True, stability=0.01)),
                       ("digital", partitioned(h=h, partition=spec))):
        opt = trainable(opt)
        st = opt.init(obj.theta_star.copy(), np.random.default_rng(1), groups=groups)
        along, across, conf = [], [], []
        for n in range(1400):
            packets = dev.stats.packets
            st, info = opt.step(st, None, None, obj)
            if label == "device":
                assert dev.stats.packets - packets == 1 and info["device_time"] == pytest.approx(h + t)
            if n >= 100:
                a, c = obj.modes(st.theta)
                along.append(np.mean(a * a))
                across.append(np.mean(c * c))
                q = st.theta[obj.n_lin:]
                conf.append(float(q @ (k * q)) / q.size)
        results[label] = (np.array(along), np.array(across), np.array(conf))
    dt = dev.read("EMU_DT")
    for i, (name, kk, f) in enumerate((("along u", g + mu, g + lam), ("across u", mu, lam))):
        ideal = tau_n / (kk * (1 - h * kk / (2 * f)))
        exact = natural_mode_law(kk, f, h, tau_n, t, dt)[2]
        for where, target in (("device", exact), ("digital", ideal)):
            m, se, tau_int = mean_and_error(results[where][i])
            print(f"  natural group ⟨e²⟩ {name}, {where}: {m:.5f} ± {se:.5f} (target {target:.5f}; ideal "
                  f"{ideal:.5f}), |Δ|/se = {abs(m - target) / se:.2f}, τ_int {tau_int:.1f}")
            assert len(results[where][i]) > 200 * tau_int and se < 0.02 * ideal
            assert abs(m - target) < Z * se and abs(exact - ideal) < Z * se / 4
        agree(results["device"][i], results["digital"][i], f"natural group {name}")
    c, var = em_ou(gamma, tau_l, h, dt)
    target = np.mean([baoab_stationary(kk, h, c, var)[0] for kk in (0.5, 1.0, 2.0)])
    assert abs(target - tau_l) < Z * mean_and_error(results["device"][2])[1] / 4
    assert_temperature(results["device"][2], target, "Langevin group beside it (device)")
    assert_temperature(results["digital"][2], tau_l, "Langevin group beside it (digital)")
    agree(results["device"][2], results["digital"][2], "Langevin group configurational")


def test_natural_group_needs_the_ggn_and_fits_the_rank(local):
    obj = Quadratic(np.ones(4))
    opt = trainable(partitioned(h=0.1, partition="0:natural"))
    st = opt.init(np.zeros(4), np.random.default_rng(0), groups=[slice(0, 4)])
    with pytest.raises(ValueError, match="ggn_sqrt"):
        opt.step(st, None, None, obj)
    big = NaturalPlusQuadratic(6, 1.0, 1.0, np.ones(2))
    dev = local(big.P, max_rank=4)
    opt = trainable(partitioned(h=0.1, partition="0:natural, 1:langevin", device=dev, everywhere=True))
    st = opt.init(big.theta_star.copy(), np.random.default_rng(0), groups=[slice(0, big.n_lin), slice(big.n_lin, big.P)])
    with pytest.raises(ValueError, match="MAX_RANK 4"):
        opt.step(st, None, None, big)


def test_a_friction_the_realistic_dacs_cannot_program_is_taken_on_the_host():
    """Realistic profile (12-bit FRICTION DAC): a Langevin group with γ = 0.001 beside one with
    γ = 10 would quantise to no friction (and no noise) at the packet's full scale; it is refused
    and its O-step taken exactly on the host — variance τ(1 − e^{−2γh}) — while the other group
    stays on the device."""
    n, h, tau, gamma = 400, 0.5, 0.5, 1e-3
    dev = host.connect(f"local://?cells={2 * n}&seed=1&profile=realistic")
    try:
        opt = trainable(partitioned(h=h, partition=f"0:langevin-device(gamma=10, tau={tau}), "
                                                   f"1:langevin-device(gamma={gamma}, tau={tau})", device=dev))
        st = opt.init(np.zeros(2 * n), np.random.default_rng(0), groups=[slice(0, n), slice(n, 2 * n)])
        obj, out = Quadratic(np.zeros(2 * n)), []
        for _ in range(25):
            st.opt = tuple({**g, "count": 1, "p": np.zeros(n)} for g in st.opt)
            st, info = opt.step(st, None, None, obj)
            assert info["group1.on_host"] == 1.0 and info["group0.on_host"] == 0.0
            out.append(st.opt[1]["p"].copy())
    finally:
        dev.close()
    x = np.concatenate(out)
    var = tau * -math.expm1(-2 * gamma * h)
    assert abs(x.var() - var) < Z * var * math.sqrt(2 / x.size)


def test_a_saturated_packet_is_retried_larger_for_that_step_only(local, monkeypatch):
    """A run that reaches the rails re-runs the packet with every scale ×16: that step's momenta
    come from the larger scale, the retry is counted in the step's info, and the next step starts
    again from the scale the optimizer asked for — a ×16 scale kept for good (the hysteresis
    keeps one up to 64× too large) would cost every later read-out four bits. The saturation is
    real: every cell's momentum starts at 95 % of full scale, and over a run of h = 2.5 its
    position, which integrates it, passes the rails."""
    import importlib
    module = importlib.import_module("host.optim.langevin")     # (host.optim.langevin is also the function)
    from host.optim.backend.scaling import RETRY_FACTOR
    chosen, asked, squeeze_at = module.momentum_scale, [], 3

    def momentum_scale(p, thermal, t_run, room, old):
        s = chosen(p, thermal, t_run, room, old)
        if len(asked) == squeeze_at:
            s = float(np.max(np.abs(p))) / (0.95 * dev.vmax)
        asked.append((old, s))
        return s
    monkeypatch.setattr(module, "momentum_scale", momentum_scale)
    k = stiffnesses([0.1], 50)
    dev = local(k.size)
    opt = trainable(langevin(h=2.5, gamma=0.1, tau=1.0, device=dev))
    st = opt.init(np.zeros(k.size), np.random.default_rng(0))
    infos = []
    for n in range(squeeze_at + 3):
        if n == squeeze_at:
            st.opt = {**st.opt, "p": np.full(k.size, 3.0)}
        st, info = opt.step(st, None, None, Quadratic(k))
        infos.append(info)
    retried = infos[squeeze_at]
    assert [i.get("saturation_retries", 0) for i in infos] == [0] * squeeze_at + [1, 0, 0]
    assert retried["scale"] == asked[squeeze_at][1] * RETRY_FACTOR
    assert np.all(np.isfinite(st.theta)) and np.all(np.abs(st.opt["p"]) < 10)
    assert asked[squeeze_at + 1][0] == asked[squeeze_at][1]      # the next step starts from what was asked
