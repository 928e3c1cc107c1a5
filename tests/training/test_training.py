"""The training loop and TNGD against a real daemon subprocess (tcp), and `thermohil train`."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import host
from host.objective import Objective
from host.training import TrainConfig, TrainingError, train

from support import REPO, start_daemon

P_SMALL = 64 * 8 + 8 + 8 * 10 + 10  # digits MLP 64-8-10: one cell per parameter
SMALL = dict(dataset="digits", hidden=(8,), batch_size=16, progress=False)


@pytest.fixture(scope="module")
def daemon():
    """A daemon sized exactly for the small model (N = P), low rank up to B·K = 160."""
    d = start_daemon("tcp://127.0.0.1:0", "--cells", str(P_SMALL), "--max-rank", "160", "--seed", "5")
    yield d
    assert d.stop() == 0


def thermohil(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def rows(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_lowrank_upload_is_rN_plus_r2_plus_N_words_per_iteration(daemon, tmp_path):
    """Bytes per iteration: U (r·N) + H = I (r²) + bias (N) words, plus a fixed header; the DIAG
    (λ, N words) and the cells' configuration (MODE, MOBILITY, NOISE_GAIN: N words each) go up
    once, in the first packet. r changes with the last, smaller batch of the epoch."""
    train(TrainConfig(algo="tngd", device=daemon.endpoint, epochs=1, out=str(tmp_path),
                      hyper={"t": 5.0}, **SMALL))
    steps = [r for r in rows(tmp_path / "metrics.jsonl") if "batch_loss" in r]
    n_train = len(host.data.load("digits").X_train)
    assert len(steps) == -(-n_train // 16)
    assert {s["rank"] for s in steps} == {160, 10 * (n_train % 16)} - {0}
    N = P_SMALL
    for i, s in enumerate(steps):
        r = s["rank"]
        # the warm start is re-uploaded after a new scale, and after a drift check (which resets x)
        rescaled = i > 0 and (s["scale"] != steps[i - 1]["scale"] or s["calibration_time"] > 0)
        words = r * N + r * r + N + (N if i == 0 or rescaled else 0) + (3 * N if i == 0 else 0)
        header = s["bytes_sent"] - 4 * words
        assert 0 < header < 600, (i, r, s["bytes_sent"], 4 * words)
        # the read-back: the N-word state, the N-word saturation map, a small reply header
        assert 8 * N < s["bytes_received"] < 8 * N + 600
    # the link's own counters, cumulative: a clean loopback link needed no retry
    links = [s["link"] for s in steps]
    assert all(set(k) >= {"packets", "retries", "timeouts", "crc_errors", "link_errors"}
               for k in links)
    assert [k["packets"] for k in links] == sorted(k["packets"] for k in links)
    assert links[-1]["packets"] >= len(steps) and links[-1]["retries"] == 0


def test_tngd_at_large_t_matches_exact_ngd(daemon, tmp_path):
    """Ideal profile, κ = 0, t_d = 0, t = 60 ≫ 1/λ = 10: the device relaxes to (G + λI)⁻¹∇ℓ, so a
    TNGD run follows exact NGD on the same seeds and batches (the criterion is 5%)."""
    hyper = {"lr": 0.05, "lam": 0.1}
    ngd = train(TrainConfig(algo="ngd", device=None, epochs=1, seed=2, out=str(tmp_path / "ngd"),
                            hyper={**hyper, "solver": "exact"}, **SMALL))
    tngd = train(TrainConfig(algo="tngd", device=daemon.endpoint, epochs=1, seed=2, out=str(tmp_path / "tngd"),
                             hyper={**hyper, "t": 60.0}, **SMALL))
    rel = abs(tngd["final_train_loss"] - ngd["final_train_loss"]) / ngd["final_train_loss"]
    assert rel < 0.05
    assert tngd["final_train_loss"] < 0.8 * train(TrainConfig(
        algo="ngd", device=None, epochs=1, seed=2, hyper={**hyper, "lr": 1e-9}, out=str(tmp_path / "still"),
        **SMALL))["final_train_loss"]


def test_delay_overlaps_and_is_counted_as_device_time(daemon, tmp_path):
    """With t_d > 0 the device keeps running after the read-out; every iteration costs t + t_d
    of device time, and DEVICE_TIME on the board agrees with what the metrics claim."""
    with host.connect(daemon.endpoint, claim=False) as dev:
        before = dev.read("DEVICE_TIME")
    s = train(TrainConfig(algo="tngd", device=daemon.endpoint, epochs=1, out=str(tmp_path),
                          hyper={"t": 4.0, "t_delay": 2.0, "readout": "mean"}, **SMALL))
    with host.connect(daemon.endpoint, claim=False) as dev:
        after = dev.read("DEVICE_TIME")
    assert s["device_time"] == pytest.approx(6.0 * s["iterations"] + s["calibration_time"])
    assert after - before == pytest.approx(s["device_time"], rel=0.02)
    assert np.isfinite(s["final_train_loss"]) and s["test_accuracy"] > 0.3


def test_dense_form_gives_the_same_direction_as_lowrank(daemon):
    ds = host.data.load("digits")
    model = host.nn.MLP([64, 8, 10])
    obj = Objective(model, host.nn.SoftmaxCrossEntropy())
    X, y = ds.X_train[:8], ds.y_train[:8]
    out = {}
    with host.connect(daemon.endpoint) as dev:
        for form in ("lowrank", "dense"):
            opt = host.optim.Optimizer("tngd", host.optim.tngd(dev, lr=0.1, lam=0.1, t=120.0, form=form))
            st = opt.init(model.init(np.random.default_rng(0)), np.random.default_rng(0))
            st, info = opt.step(st, X, y, obj)
            out[form] = st.theta
    theta0 = model.init(np.random.default_rng(0))
    d_low, d_dense = (theta0 - out["lowrank"]) / 0.1, (theta0 - out["dense"]) / 0.1
    assert np.linalg.norm(d_low - d_dense) < 1e-3 * np.linalg.norm(d_dense)


def test_cli_train_json_checkpoint_and_resume(tmp_path):
    out = tmp_path / "run"
    p = thermohil("train", "--algo", "adam", "--dataset", "digits", "--epochs", "1", "--out", str(out),
                  "--json", "--lr", "0.01")
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout.strip().splitlines()[-1])
    assert "adam on digits: epoch 1/1, step" in p.stderr      # no terminal: plain progress lines
    for key in ("algo", "dataset", "epochs", "iterations", "final_train_loss", "final_test_loss",
                "test_accuracy", "wall_time_s", "device_time", "projected_hw_time_s"):
        assert key in first
    assert (out / "checkpoint.npz").exists() and (out / "loss.png").exists()
    p = thermohil("train", "--algo", "adam", "--dataset", "digits", "--epochs", "2", "--out", str(out),
                  "--json", "--lr", "0.01", "--resume")
    assert p.returncode == 0, p.stderr
    second = json.loads(p.stdout.strip().splitlines()[-1])
    assert "epoch 2/2" in p.stderr and "epoch 1/2" not in p.stderr   # the resumed epoch only
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    assert second["iterations"] == 2 * first["iterations"]
    assert second["final_train_loss"] < first["final_train_loss"]
    evals = [r for r in rows(out / "metrics.jsonl") if "test_loss" in r]
    assert [r["epoch"] for r in evals] == [0, 1, 2]
    # resuming with a different hyperparameter is refused, the run directory untouched
    before = (out / "metrics.jsonl").read_text()
    p = thermohil("train", "--algo", "adam", "--dataset", "digits", "--epochs", "3", "--out", str(out),
                  "--lr", "0.02", "--resume")
    assert p.returncode == 1 and "--resume" in p.stderr and "lr" in p.stderr
    assert (out / "metrics.jsonl").read_text() == before
    # a refused fresh command into the same directory leaves the earlier run resumable
    config = (out / "config.json").read_text()
    p = thermohil("train", "--algo", "adam", "--dataset", "digits", "--out", str(out), "--lr", "-2")
    assert p.returncode == 1 and "lr must be" in p.stderr
    assert (out / "config.json").read_text() == config and (out / "metrics.jsonl").read_text() == before
    # asking to resume a run that already has its epochs is a clear error, not a traceback
    p = thermohil("train", "--algo", "adam", "--dataset", "digits", "--epochs", "2", "--out", str(out),
                  "--lr", "0.01", "--resume")
    assert p.returncode == 1 and "already holds 2 epoch(s)" in p.stderr


def test_cli_train_tngd_on_the_embedded_default(tmp_path):
    """No --device: a private spawn:// emulator sized for the model."""
    p = thermohil("train", "--algo", "tngd", "--dataset", "digits", "--epochs", "1", "--hidden", "8",
                  "--batch-size", "16", "--t", "5", "--lr", "0.05", "--lam", "0.1",
                  "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.strip().splitlines()[-1])
    # device time: the runs, and the drift checks (which the ideal profile always passes)
    assert s["algo"] == "tngd" and s["device_time"] == pytest.approx(5.0 * s["iterations"]
                                                                     + s["calibration_time"])
    assert s["calibration_time"] % 64 == 0 and 0 < s["calibration_time"] <= 64 * s["iterations"] / 8
    assert s["test_accuracy"] > 0.5 and s["projected_hw_time_s"] > 0


@pytest.mark.parametrize("args, code, needle", [
    (["--algo", "lbfgs", "--dataset", "digits"], 2, "invalid choice"),
    (["--algo", "adam", "--dataset", "mnist"], 2, "unknown data set 'mnist'; known: digits, spiral"),
    (["--algo", "adam", "--dataset", "digits", "--epochs", "0"], 2, "must be >= 1"),
    (["--algo", "adam", "--dataset", "digits", "--hidden", "8,x"], 2, "comma-separated"),
    (["--algo", "adam", "--dataset", "digits", "--lam", "0.1"], 1, "takes no --lam"),
    (["--algo", "tngd", "--dataset", "digits", "--device", "none"], 1, "runs on a device"),
    (["--algo", "sgd", "--dataset", "digits", "--device", "tcp://127.0.0.1:1"], 1, "uses no device"),
    (["--algo", "tngd", "--dataset", "digits", "--readout", "guess"], 1, "readout must be"),
    (["--algo", "adam", "--dataset", "digits", "--resume"], 1, "checkpoint"),
    (["--algo", "sgd", "--dataset", "digits", "--lr", "-1"], 1, "lr must be a finite number > 0"),
    (["--algo", "ngd", "--dataset", "digits", "--cg-iters", "0"], 1, "cg_iters must be >= 1"),
    (["--algo", "tngd", "--dataset", "digits", "--t", "0"], 1, "t must be a finite number > 0"),
    (["--algo", "tngd", "--dataset", "digits", "--stability", "0.9"], 1, "stability must be in"),
    (["--algo", "tngd", "--dataset", "digits", "--batch-size", "128"], 1, "--batch-size <= 102"),
    (["--algo", "adam", "--dataset", "digits", "--timeout", "0"], 2, "must be a finite number > 0"),
    (["--algo", "adam", "--dataset", "digits", "--eval-every", "-1"], 2, "must be >= 0"),
    (["--algo", "tngd", "--dataset", "digits", "--lease-ms", "10"], 2, "must be in 300"),
])
def test_cli_train_bad_arguments(args, code, needle, tmp_path):
    if "--resume" in args:
        args = [*args, "--out", str(tmp_path / "empty")]
    p = thermohil("train", *args)
    assert p.returncode == code and needle in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args, needle", [
    (["--algo", "lala", "--gammas", "1,2,3"], "(from --gammas/--taus: 3 per-layer values"),
    (["--algo", "adlala", "--split", "5"], "(from --split 5: the first 5 layer(s) run AdL)"),
    (["--algo", "lol-device", "--split", "3"], "(from --split 3"),
    (["--algo", "partitioned", "--partition", "0:adl, 2:langevin"], "names layer 2, which does not exist"),
])
def test_a_partition_that_does_not_fit_the_model_is_refused_before_the_run_directory(args, needle, tmp_path):
    """The spiral MLP has 2 layers: the error says where the partition came from, and nothing
    is written (the layout is checked against the model before OUT is created)."""
    out = tmp_path / "run"
    p = thermohil("train", *args, "--dataset", "spiral", "--epochs", "1", "--out", str(out))
    assert p.returncode == 1 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not out.exists()


def test_nonfinite_gradient_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    real = Objective.value_and_grad
    calls = {"n": 0}

    def poisoned(self, theta, X, y):
        calls["n"] += 1
        loss, g = real(self, theta, X, y)
        if calls["n"] > 100:  # during epoch 2 (85 steps per epoch)
            g = g.copy()
            g[3] = np.nan
        return loss, g
    monkeypatch.setattr(Objective, "value_and_grad", poisoned)
    with pytest.raises(TrainingError, match="non-finite gradient at step 100.*checkpoint"):
        train(TrainConfig(algo="sgd", device=None, epochs=3, out=str(tmp_path), **SMALL))
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert np.all(np.isfinite(z["theta"]))
        assert json.loads(str(z["meta"]))["epoch"] == 0  # epoch 1 (0-based 0) completed


def test_saturating_curvature_stops_with_a_message_and_keeps_the_checkpoint(daemon, tmp_path, monkeypatch):
    """A curvature that is not positive definite drives the device into its rails; TNGD rescales,
    retries, then stops naming the cause. The daemon is unharmed."""
    real = Objective.ggn_factors
    calls = {"n": 0}

    def indefinite(self, theta, X, y):
        calls["n"] += 1
        J, H = real(self, theta, X, y)
        return (J, -H) if calls["n"] > 90 else (J, H)  # G → −G: unstable modes
    monkeypatch.setattr(Objective, "ggn_factors", indefinite)
    with pytest.raises(TrainingError, match="saturated.*not positive definite.*checkpoint"):
        train(TrainConfig(algo="tngd", device=daemon.endpoint, epochs=3, out=str(tmp_path),
                          hyper={"t": 20.0, "upload": "hessian"}, **SMALL))
    with np.load(tmp_path / "checkpoint.npz") as z:
        assert np.all(np.isfinite(z["theta"])) and json.loads(str(z["meta"]))["epoch"] == 0
    with host.connect(daemon.endpoint) as dev:  # still answers; a correct system runs clean
        dev.clear_saturation()
        dev.load_coupling(np.eye(4))
        dev.load_bias(np.full(4, 0.1))
        dev.commit()
        dev.run(20.0)
        assert np.allclose(dev.state(), 0.1, atol=1e-3)


def test_short_t_started_at_the_gradient_is_sgd(daemon):
    """The other regime of the paper: t → 0 with g̃0 = ∇ℓ gives g̃ ≈ ∇ℓ, i.e. an SGD step."""
    ds = host.data.load("digits")
    model = host.nn.MLP([64, 8, 10])
    obj = Objective(model, host.nn.SoftmaxCrossEntropy())
    X, y = ds.X_train[:16], ds.y_train[:16]
    theta0 = model.init(np.random.default_rng(1))
    _, grad = obj.value_and_grad(theta0, X, y)
    with host.connect(daemon.endpoint) as dev:
        opt = host.optim.Optimizer("tngd", host.optim.tngd(dev, lr=1.0, lam=0.01, t=1e-3, init="grad"))
        st = opt.init(theta0, np.random.default_rng(0))
        st, _ = opt.step(st, X, y, obj)
    d = theta0 - st.theta
    assert np.linalg.norm(d - grad) < 0.01 * np.linalg.norm(grad)


@pytest.mark.slow
def test_tngd_matches_exact_ngd_at_the_paper_damping(tmp_path):
    """λ = 0.01 (the paper's): the slowest mode relaxes in 1/λ = 100 τ0, so t = 800 τ0 per
    iteration (e^-8, plus the warm start) brings TNGD to exact NGD — the 5% criterion."""
    hyper = {"lr": 0.05, "lam": 0.01}
    common = dict(SMALL, epochs=1, seed=3)
    ngd = train(TrainConfig(algo="ngd", device=None, hyper={**hyper, "solver": "exact"},
                            out=str(tmp_path / "ngd"), **common))
    tngd = train(TrainConfig(algo="tngd", device=f"spawn://?cells={P_SMALL}&max_rank=160",
                             hyper={**hyper, "t": 800.0}, out=str(tmp_path / "tngd"), **common))
    rel = abs(tngd["final_train_loss"] - ngd["final_train_loss"]) / ngd["final_train_loss"]
    assert rel < 0.05


@pytest.mark.parametrize("field, value, needle", [
    ("dataset", "wine", "unknown data set 'wine'; known: digits, spiral, or FILE.py:LOADER"),
    ("algo", "lion", "unknown algorithm 'lion'; known: adam, adl"),
])
def test_unknown_names_from_python_get_the_known_ones(field, value, needle, tmp_path):
    """From Python (no argparse choices to catch it) an unknown name says what exists, before
    anything is written."""
    cfg = {"algo": "adam", "dataset": "digits", "device": None, "out": str(tmp_path / "run"), field: value}
    with pytest.raises(ValueError, match=needle):
        train(TrainConfig(**cfg))
    assert not (tmp_path / "run").exists()


def test_eval_every_on_an_epoch_end_evaluates_that_step_once(tmp_path):
    """Spiral, batch 25: 20 steps per epoch; --eval-every 10 lands on every epoch end."""
    train(TrainConfig(algo="adlala", dataset="spiral", epochs=2, eval_every=10, out=str(tmp_path),
                      progress=False))
    steps = [r["step"] for r in rows(tmp_path / "metrics.jsonl") if "test_loss" in r]
    assert steps == [0, 10, 20, 30, 40]


def test_algorithm_help_lists_that_algorithms_options_only():
    p = thermohil("train", "--algo", "lala", "--help")
    assert p.returncode == 0 and "--gammas" in p.stdout and "(default 0.25)" in p.stdout
    assert "--lr" not in p.stdout and "--partition" not in p.stdout


def test_two_natural_groups_get_a_spawned_device_with_rank_for_both(tmp_path):
    """Each natural group stacks batch × outputs rows of J: the spawned device is sized for
    both (MAX_RANK 50 on the spiral), so the run trains instead of failing at its first step."""
    p = thermohil("train", "--algo", "partitioned-device", "--dataset", "spiral", "--partition",
                  "0:natural, 1:natural", "--epochs", "1", "--out", str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["iterations"] == 20 and s["device_time"] == pytest.approx(20 * 50.0 + s["calibration_time"])
