"""The transform interface: pure init/update pairs, chain, partition, the registry generated
from the builders, and one packet per step for a partition whose groups share the device.

Every transform here is checked against a literal transcription of its update rule, step for
step; device runs use a real emulated device (``local://``: the firmware in this process,
packets through the wire codec)."""
from __future__ import annotations

import ast
import json
import pathlib

import numpy as np
import pytest

import host
from host.nn import MLP, SoftmaxCrossEntropy
from host.objective import Objective
from host.optim import (ALGORITHMS, Optimizer, Transform, adam, apply_updates, chain, natural_langevin, partition,
                        rmsprop, scale_by_learning_rate, sgd, tngd, trace)
from host.optim.langevin import langevin
from host.optim.state_io import flatten, restore


def problem(widths=(4, 6, 3), batch=8, seed=0):
    model = MLP(list(widths))
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((batch, widths[0])), rng.integers(0, widths[-1], batch)
    return model, Objective(model, SoftmaxCrossEntropy()), X, y, model.init(rng)


def steps_of(transform, objective, X, y, theta, n, groups=None):
    opt = Optimizer("test", transform)
    st = opt.init(theta, np.random.default_rng(0), groups=groups)
    thetas = []
    for _ in range(n):
        st, info = opt.step(st, X, y, objective)
        thetas.append(st.theta.copy())
    return st, thetas, info


def test_sgd_adam_and_rmsprop_follow_their_update_rules_bit_for_bit():
    model, obj, X, y, theta0 = problem()
    _, got, _ = steps_of(adam(lr=0.01, b1=0.8, b2=0.99), obj, X, y, theta0, 5)
    th, m, v = theta0.copy(), 0.0, 0.0
    for n in range(5):
        g = obj.value_and_grad(th, X, y)[1]
        m, v = 0.8 * m + (1 - 0.8) * g, 0.99 * v + (1 - 0.99) * g * g
        th = th - 0.01 * ((m / (1 - 0.8 ** (n + 1))) / (np.sqrt(v / (1 - 0.99 ** (n + 1))) + 1e-8))
        np.testing.assert_array_equal(got[n], th)
    _, got, _ = steps_of(sgd(lr=0.1, momentum=0.5), obj, X, y, theta0, 5)
    th, m = theta0.copy(), 0.0
    for n in range(5):
        m = 0.5 * m + obj.value_and_grad(th, X, y)[1]
        th = th - 0.1 * m
        np.testing.assert_array_equal(got[n], th)
    _, got, _ = steps_of(rmsprop(lr=0.01, decay=0.9), obj, X, y, theta0, 5)
    th, v = theta0.copy(), 0.0
    for n in range(5):
        g = obj.value_and_grad(th, X, y)[1]
        v = 0.9 * v + (1 - 0.9) * g * g
        th = th - 0.01 * (g / (np.sqrt(v) + 1e-8))
        np.testing.assert_array_equal(got[n], th)


def test_updates_are_pure_and_a_state_round_trips_through_a_checkpoint():
    model, obj, X, y, theta0 = problem()
    tx = adam(lr=0.01)
    state = tx.init(theta0)
    g = obj.value_and_grad(theta0, X, y)[1]
    before = {k: v.copy() for k, v in flatten(state).items()}
    u1, s1 = tx.update(g, state, theta0)
    u2, s2 = tx.update(g, state, theta0)          # the same inputs: the same outputs
    np.testing.assert_array_equal(u1, u2)
    assert all(np.array_equal(before[k], v) for k, v in flatten(state).items())    # untouched
    back = restore(tx.init(theta0), {k: v.copy() for k, v in flatten(s1).items()})
    np.testing.assert_array_equal(tx.update(g, back, theta0)[0], tx.update(g, s1, theta0)[0])
    with pytest.raises(ValueError, match="another model"):
        restore(tx.init(np.zeros(3)), flatten(s1))


def test_a_chain_of_small_transforms_is_the_optimizer():
    model, obj, X, y, theta0 = problem()
    by_hand = chain(trace(0.9), scale_by_learning_rate(0.05))
    np.testing.assert_array_equal(steps_of(by_hand, obj, X, y, theta0, 4)[1][-1],
                                  steps_of(sgd(0.05, 0.9), obj, X, y, theta0, 4)[1][-1])
    assert apply_updates(np.ones(2), np.array([0.5, -1.0])).tolist() == [1.5, 0.0]


def test_a_partition_gives_each_layer_its_transform_and_state():
    """Adam on layer 0, SGD on layer 1: each group's θ moves as that optimizer alone would move
    it with the whole gradient's block; the state holds one entry per group."""
    model, obj, X, y, theta0 = problem()
    tx = partition({"a": adam(lr=0.01), "s": sgd(lr=0.1)}, {0: "a", "*": "s"})
    st, got, _ = steps_of(tx, obj, X, y, theta0, 4, groups=model.groups)
    sl0, sl1 = model.groups[0].slice, model.groups[1].slice
    th, m, v = theta0.copy(), 0.0, 0.0
    for n in range(4):
        g = obj.value_and_grad(th, X, y)[1]
        m, v = 0.9 * m + (1 - 0.9) * g[sl0], 0.999 * v + (1 - 0.999) * g[sl0] * g[sl0]
        th = th.copy()
        th[sl0] = th[sl0] - 0.01 * (m / (1 - 0.9 ** (n + 1))) / (np.sqrt(v / (1 - 0.999 ** (n + 1))) + 1e-8)
        th[sl1] = th[sl1] - 0.1 * g[sl1]
        np.testing.assert_allclose(got[n], th, rtol=0, atol=1e-15)
    assert len(st.opt) == 2 and st.opt[0][0]["m"].shape == (sl0.stop - sl0.start,)


@pytest.fixture
def local():
    devs = []

    def make(cells: int, max_rank: int):
        devs.append(host.connect(f"local://?cells={cells}&seed=1&max_rank={max_rank}"))
        return devs[-1]
    yield make
    for d in devs:
        d.close()


@pytest.mark.parametrize("rest", ["sgd", "langevin-device"])
def test_tngd_on_one_layer_solves_that_layers_block_in_one_packet_per_step(local, rest):
    """'0:tngd, *:REST': layer 0 moves by −η(G₀₀ + λI)⁻¹g₀ (G₀₀ its diagonal block of the GGN),
    solved by the device, and every group's device work — the relax run and, with
    langevin-device, the momenta's run — is ONE packet per step."""
    model, obj, X, y, theta0 = problem()
    dev = local(model.n_params, max_rank=X.shape[0] * 3)
    lam, lr = 0.5, 0.3
    tx = partition({"t": tngd(dev, lr=lr, lam=lam, t=200.0, drift_check=0),
                    "r": sgd(lr=0.1) if rest == "sgd" else langevin(h=0.05, tau=0.0, device=dev)}, {0: "t", "*": "r"})
    opt = Optimizer("test", tx)
    st = opt.init(theta0, np.random.default_rng(0), groups=model.groups)
    sl0 = model.groups[0].slice
    for _ in range(3):
        theta = st.theta.copy()
        g = obj.value_and_grad(theta, X, y)[1]
        U = obj.ggn_sqrt(theta, X, y)[:, sl0]
        want = theta[sl0] - lr * np.linalg.solve(U.T @ U + lam * np.eye(U.shape[1]), g[sl0])
        packets = dev.stats.packets
        st, info = opt.step(st, X, y, obj)
        assert dev.stats.packets - packets == 1
        np.testing.assert_allclose(st.theta[sl0], want, rtol=1e-6, atol=1e-9)
        assert info["layer0.rank"] == X.shape[0] * 3 and info["device_time"] == pytest.approx(
            200.0 + (0.05 if rest != "sgd" else 0.0))


def solve_block(obj, theta, X, y, sl, lam):
    g = obj.value_and_grad(theta, X, y)[1][sl]
    U = obj.ggn_sqrt(theta, X, y)[:, sl]
    return np.linalg.solve(U.T @ U + lam * np.eye(U.shape[1]), g)


def test_two_relax_groups_at_different_times_keep_their_own_warm_starts(local):
    """TNGD on both layers with different run times t (two relax phases in one packet) and a
    fixed scale: runs too short to converge alone, so each layer's direction reaches its block
    solve only by continuing, step after step, from where its own cells stopped."""
    model, obj, X, y, theta0 = problem()
    dev = local(model.n_params, max_rank=2 * X.shape[0] * 3)
    lam = 0.5
    kw = dict(lr=1e-12, lam=lam, scale="norm", drift_check=0)
    tx = partition({"a": tngd(dev, t=1.0, **kw), "b": tngd(dev, t=2.0, **kw)}, {0: "a", 1: "b"})
    opt = Optimizer("test", tx)
    st = opt.init(theta0, np.random.default_rng(0), groups=model.groups)
    for _ in range(40):
        st, info = opt.step(st, X, y, obj)
    assert info["device_time"] == pytest.approx(3.0)
    for i, group in enumerate(model.groups):
        want = solve_block(obj, st.theta, X, y, group.slice, lam)
        got = st.opt[i][0]["last"]
        print(f"  layer {i}: |d − d*|/|d*| = {np.linalg.norm(got - want) / np.linalg.norm(want):.2e}")
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.max(np.abs(want)))


def test_a_new_optimizer_does_not_inherit_the_cells_of_the_last(local):
    """Two optimizers in turn on one device: the second's first direction is what a fresh
    device gives, not a continuation of the first's solution."""
    model, obj, X, y, theta0 = problem()

    def first_direction(dev):
        opt = Optimizer("tngd", tngd(dev, lr=1.0, lam=0.5, t=0.5, drift_check=0))
        st = opt.init(theta0, np.random.default_rng(0))
        return opt.step(st, X, y, obj)[0].theta - theta0

    shared = local(model.n_params, max_rank=24)
    used = Optimizer("tngd", tngd(shared, lr=1.0, lam=0.5, t=0.5, drift_check=0))
    st = used.init(theta0 + 0.3, np.random.default_rng(0))
    for _ in range(3):
        st, _ = used.step(st, X, y, obj)
    np.testing.assert_allclose(first_direction(shared), first_direction(local(model.n_params, 24)),
                               rtol=1e-7, atol=1e-12)


def test_a_refused_packet_leaves_no_stale_register_behind(local):
    """A step refused mid-packet (the curvature's rank is above MAX_RANK) is forgotten whole:
    the next step sends its configuration again, so the device runs at the temperature the
    step reports."""
    model, obj, X, y, theta0 = problem()
    dev = local(model.n_params, max_rank=16)
    opt = Optimizer("natural", natural_langevin(h=0.1, tau=0.3, lam=1.0, t=5.0, device=dev, drift_check=0))
    st = opt.init(theta0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="MAX_RANK 16"):
        opt.step(st, X, y, obj)                         # 8 examples × 3 outputs = rank 24
    st, info = opt.step(st, X[:4], y[:4], obj)          # rank 12
    assert dev.read("TEMPERATURE") == pytest.approx(info["temperature"], rel=1e-6)


def test_a_device_state_round_trips_through_a_checkpoint_and_a_foreign_one_is_refused(local):
    """TNGD's state (warm start, scale, drift counters) restored into a new optimizer on a new
    device continues as the uninterrupted run does: the warm start is written back."""
    model, obj, X, y, theta0 = problem()
    make = lambda dev: Optimizer("tngd", tngd(dev, lr=0.5, lam=0.5, t=1.0))
    opt = make(local(model.n_params, 24))
    st = opt.init(theta0, np.random.default_rng(0))
    for _ in range(6):
        st, _ = opt.step(st, X, y, obj)
    saved = (st.theta.copy(), st.step, st.rng.copy(), {k: v.copy() for k, v in flatten(st.opt).items()})
    straight = opt.step(st, X, y, obj)[0].theta
    again = make(local(model.n_params, 24))
    fresh = again.init(np.zeros_like(theta0), np.random.default_rng(5))
    resumed = type(fresh)(saved[0], saved[1], restore(fresh.opt, saved[3]), saved[2], fresh.groups)
    np.testing.assert_allclose(again.step(resumed, X, y, obj)[0].theta, straight, rtol=1e-7, atol=1e-10)
    with pytest.raises(ValueError, match="another optimizer"):
        restore(Optimizer("sgd", sgd()).init(theta0, np.random.default_rng(0)).opt, flatten(st.opt))


def test_the_registry_is_generated_from_the_builders():
    """Defaults come from the signatures, help from the docstrings; a new transform is one
    module plus one line in the catalog (rmsprop is that example)."""
    spec = ALGORITHMS["rmsprop"]
    assert {k: v[1] for k, v in spec.params.items()} == {"lr": 1e-3, "decay": 0.9, "eps": 1e-8}
    assert spec.params["decay"][2].startswith("ρ") and not spec.uses_device
    assert ALGORITHMS["tngd"].params["stability"][1] == 0.5          # one default, Python and CLI
    for name, (_typ, value, text) in ALGORITHMS["tngd"].params.items():   # one source of defaults
        if name not in ("lr", "lam"):
            assert ALGORITHMS["tngd-adam"].params[name][1:] == (value, text)
    assert ALGORITHMS["partitioned"].needs_device({"partition": "0:tngd, *:adam"})
    assert not ALGORITHMS["partitioned"].needs_device({"partition": "0:adam, *:adl"})
    assert isinstance(ALGORITHMS["rmsprop"].build().transform, Transform)


def test_partition_entries_are_checked_with_clear_errors():
    with pytest.raises(ValueError, match="scheme 'adam' takes no parameter.*it takes: lr, b1, b2, eps"):
        ALGORITHMS["partitioned"].build(partition="0:adam(tau=1), *:sgd")
    with pytest.raises(ValueError, match="unknown scheme 'lion'.*known: sgd, adam"):
        ALGORITHMS["partitioned"].build(partition="0:lion, *:sgd")
    with pytest.raises(ValueError, match="runs on a device"):
        ALGORITHMS["partitioned"].build(partition="0:langevin-device, *:sgd")
    with pytest.raises(ValueError, match="unknown NGD solver"):
        ALGORITHMS["partitioned"].build(partition="0:ngd(solver=qr), *:sgd")
    with pytest.raises(ValueError, match="lr is given twice"):
        ALGORITHMS["partitioned"].build(partition="0:adam(lr=0.1, lr=0.2), *:sgd")
    with pytest.raises(ValueError, match="'overdamped' has no device form"):
        ALGORITHMS["partitioned"].build(partition="0:overdamped-device, *:sgd")
    with pytest.raises(ValueError, match="label.*'b' have no transform"):
        partition({"a": sgd()}, ["a", "b"])
    with pytest.raises(ValueError, match="stability must be in"):
        ALGORITHMS["partitioned"].build(partition="0:langevin-device(stability=0.8)", device=object())
    assert isinstance(ALGORITHMS["partitioned"].build(partition="adam(lr=0.1)").transform, Transform)


def test_the_import_graph_of_optim_has_no_cycle():
    root = pathlib.Path(__file__).resolve().parents[2] / "host" / "optim"
    deps = {}
    for f in root.rglob("*.py"):
        name = ".".join(f.relative_to(root.parents[1]).with_suffix("").parts).removesuffix(".__init__")
        deps[name] = {n.module for n in ast.walk(ast.parse(f.read_text()))
                      if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("host.optim")}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in deps.get(m, ()):
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [d])}"
            if d not in state:
                visit(d, path + [d])
        state[m] = 2
    for m in deps:
        if m not in state:
            visit(m, [m])
    assert max(len(f.read_text().splitlines()) for f in root.rglob("*.py")) <= 300


@pytest.mark.parametrize("args, dataset, device", [
    (["--partition", "0:tngd(lam=0.01), *:adam(lr=0.003)"], "digits", "spawn://"),
    (["--partition", "0:adam(lr=0.005), *:adl"], "spiral", None),
])
def test_the_partition_commands_train(tmp_path, args, dataset, device):
    """The two partitions of the docs, through host.training (what ``thermohil train`` calls;
    the command line itself: tests/training): the loss falls; the TNGD layer runs on the
    device, one analog run of t per step."""
    from host.training import TrainConfig, train
    hyper = {"partition": args[1]}
    s = train(TrainConfig(algo="partitioned", dataset=dataset, device=device, epochs=3 if device else 10,
                          out=str(tmp_path), hyper=hyper, progress=False))
    rows = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    evals = [r["train_loss"] for r in rows if "train_loss" in r]
    print(f"  {args[1]} on {dataset}: train loss by epoch {[round(x, 3) for x in evals]}, "
          f"test accuracy {s['test_accuracy']:.2%}")
    assert evals[-1] < 0.9 * evals[0]
    steps = [r for r in rows if "batch_loss" in r]
    if device:
        assert all(r["device_time"] == pytest.approx(50.0 + r["calibration_time"]) for r in steps)
        assert s["test_accuracy"] > 0.8
        assert json.loads((tmp_path / "config.json").read_text())["hyper"] == hyper


def test_a_users_transform_registers_by_name_and_its_run_resumes_from_a_saved_state(tmp_path):
    """A transform written outside the library (Lion) becomes a partition entry by one call to
    register; a run saved with state_io.save and loaded into a fresh optimizer continues bit for
    bit."""
    from host.optim import register, state_io
    from host.optim.catalog import TRANSFORMS

    def lion(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.99) -> Transform:
        """Lion (Chen et al. 2023): θ ← θ − η sign(β1 m + (1 − β1)∇ℓ), m ← β2 m + (1 − β2)∇ℓ

        Args:
            lr: step size η
            b1: β1, the interpolation that is signed
            b2: β2, the momentum kept
        """
        def update(g, state, params, **extra):
            return np.sign(b1 * state["m"] + (1 - b1) * g), {"m": b2 * state["m"] + (1 - b2) * g}
        return chain(Transform(lambda params: {"m": np.zeros_like(params)}, update), scale_by_learning_rate(lr))

    register("lion-test", lion)
    try:
        with pytest.raises(ValueError, match="already an algorithm"):
            register("lion-test", lion)
        assert ALGORITHMS["lion-test"].params["b2"] == (float, 0.99, "β2, the momentum kept")
        model, obj, X, y, theta0 = problem()
        opt = ALGORITHMS["partitioned"].build(partition="0:lion-test(lr=0.01), *:adam")
        st = opt.init(theta0, np.random.default_rng(0), groups=model.groups)
        for _ in range(3):
            st, _ = opt.step(st, X, y, obj)
        state_io.save(tmp_path / "ck.npz", st, {"epoch": 0})
        straight = st
        for _ in range(4):
            straight, _ = opt.step(straight, X, y, obj)
        again = ALGORITHMS["partitioned"].build(partition="0:lion-test(lr=0.01), *:adam")
        st, meta = state_io.load(tmp_path / "ck.npz", again.init(theta0 * 0, np.random.default_rng(9),
                                                                 groups=model.groups))
        assert meta == {"epoch": 0, "step": 3}
        for _ in range(4):
            st, _ = again.step(st, X, y, obj)
        np.testing.assert_array_equal(st.theta, straight.theta)
    finally:
        TRANSFORMS.pop("lion-test", None)
        ALGORITHMS.pop("lion-test", None)
