"""A user's own data, model and loss through host.train and `thermohil train`, without touching
any library table: scikit-learn's wine (classification) and diabetes (regression, MSE), a torch
model from a factory file, the run directory's record, restoring a run, and the posterior-
predictive average of a Langevin chain."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from host.data import Dataset, from_arrays
from host.run_record import load_run
from host.training import TrainConfig, TrainingError, train

from support import REPO

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_diabetes, load_wine  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def wine() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_wine(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


USER_FILES = {
    "mydata.py": """
        from sklearn.datasets import load_diabetes, load_wine
        from sklearn.preprocessing import StandardScaler

        def wine():
            X, y = load_wine(return_X_y=True)
            return StandardScaler().fit_transform(X), y

        def diabetes():
            X, y = load_diabetes(return_X_y=True)
            return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()

        def broken():
            raise RuntimeError("the share is not mounted")
        """,
    "nets.py": """
        import torch

        def build(n_inputs, n_outputs):
            return torch.nn.Sequential(torch.nn.Linear(n_inputs, 12), torch.nn.Tanh(),
                                       torch.nn.Linear(12, n_outputs))

        def too_wide(n_inputs, n_outputs):
            return torch.nn.Linear(n_inputs, n_outputs + 1)

        def raises(n_inputs, n_outputs):
            raise TypeError("build() wants a config")

        def not_a_model(n_inputs, n_outputs):
            return [n_inputs, n_outputs]

        WIDTH = 12
        """,
}


@pytest.fixture
def user_dir(tmp_path):
    for name, text in USER_FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def thermohil(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "host.cli", "train", *args, "--no-progress"],
                          capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": REPO})


# ---------------------------------------------------------------------------------- from Python
def test_wine_arrays_train_from_python_and_the_run_directory_says_what_ran(tmp_path, monkeypatch):
    """Arrays in, no out=: the run directory is written by default, and its config.json names
    the data, the resolved hyperparameters, the model's size and the library version."""
    monkeypatch.chdir(tmp_path)
    s = train(TrainConfig(algo="adam", dataset=wine(), epochs=10, progress=False))
    assert s["test_accuracy"] > 0.8            # chance is 0.40 (the largest class)
    from host.data import from_arrays
    from host.run_record import fingerprint
    run = tmp_path / "runs" / f"adam-arrays-{fingerprint(from_arrays(*wine()))[:8]}-s0"
    assert s["out"] == str(run.relative_to(tmp_path))
    cfg = json.loads((run / "config.json").read_text())
    r = cfg["resolved"]
    assert cfg["loss"] == "ce" and r["data"]["n_classes"] == 3 and r["data"]["input_shape"] == [13]
    assert r["data"]["n_train"] + r["data"]["n_test"] == 178
    assert r["hyper"] == {"lr": 0.001, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
    assert r["model"] == {"kind": "mlp", "sizes": [13, 32, 3], "activation": "relu", "n_params": 13 * 32 + 32 + 33 * 3}
    assert r["device"] is None and r["library_version"] not in ("", None)


def test_regression_with_mse_reports_r2(tmp_path):
    s = train(TrainConfig(algo="adam", dataset=diabetes(), epochs=10, hyper={"lr": 0.003},
                          out=str(tmp_path / "run"), progress=False))
    assert s["loss"] == "mse" and "test_accuracy" not in s
    # R² on held-out data: 0 is predicting the mean; a linear fit of this set reaches about 0.45
    assert 0.25 < s["test_r2"] < 0.7
    evals = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl") if "test_loss" in x]
    assert all("test_r2" in r and "test_accuracy" not in r for r in evals)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["resolved"]["model"]["sizes"] == [10, 32, 1]


def test_a_dataset_object_and_an_explicit_loss(tmp_path):
    X, y = wine()
    two = y < 2                                     # classes 0 and 1 only: a binary problem
    ds = from_arrays(X[two], y[two], loss="bce", name="wine01")
    assert isinstance(ds, Dataset) and ds.n_outputs() == 1
    s = train(TrainConfig(algo="adam", dataset=ds, epochs=5, hyper={"lr": 0.01}, out=str(tmp_path / "r"),
                          progress=False))
    assert s["dataset"] == "wine01" and s["loss"] == "bce" and s["test_accuracy"] > 0.9


@pytest.mark.parametrize("kw, needle", [
    (dict(dataset="digits", loss="mse"), "it cannot be trained with 'mse'"),
    (dict(dataset="digits", loss="bce"), "bce is for two classes"),
    (dict(dataset="digits", loss="hinge"), "unknown loss 'hinge'; known: ce, cross_entropy, bce, mse"),
    (dict(dataset=(np.zeros((4, 2)), np.zeros(3))), "y_train has 3 rows but its inputs have 4"),
    (dict(dataset=(np.full((8, 2), np.nan), np.zeros(8))), "NaN or infinite values in 8 row.s., the first at rows 0, 1"),
    (dict(dataset=(np.zeros((40, 2)), np.arange(40) % 3 * 1.0)), "whole numbers stored as floats .0, 1, 2, …."),
    (dict(dataset=(np.zeros((40, 2)), np.eye(4)[np.arange(40) % 4])), "one-hot rows"),
    (dict(dataset=(np.zeros((40, 2)), 1 + np.arange(40) % 3)), "class label.s. 0 have no training example"),
    (dict(dataset=(np.zeros((40, 2)), np.where(np.arange(40) % 2, 1, -1))), "class labels must be 0, 1, 2, …; these are -1, 1"),
    (dict(dataset=np.zeros(3)), "cannot make a data set of a ndarray"),
    (dict(dataset="digits", hidden=(8,), model=lambda n_in, n_out: None), "hidden widths shape the built-in MLP"),
])
def test_bad_data_model_or_loss_is_refused_before_anything_is_written(kw, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        train(TrainConfig(algo="adam", out=str(tmp_path / "run"), progress=False, **kw))
    assert not (tmp_path / "run").exists()


def test_torch_model_from_python_trains_with_tngd_and_the_run_restores(tmp_path):
    """A torch module object, TNGD on a spawn:// device sized for it; the checkpoint comes back
    as a model (the same architecture passed in) giving the same outputs, and model.pt loads
    into a fresh module with torch alone."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    s = train(TrainConfig(algo="tngd", dataset=wine(), model=net, epochs=2, batch_size=16,
                          out=str(tmp_path / "run"), progress=False))
    assert s["n_params"] == 13 * 8 + 8 + 8 * 3 + 3 and s["final_train_loss"] < 0.9   # ln 3 = 1.10 at the start
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    dev = cfg["resolved"]["device"]
    assert dev["cells"] == s["n_params"] and dev["max_rank"] == 16 * 3 and dev["seed"] == 0
    assert dev["profile"] == "ideal" and dev["url"].startswith("spawn://?cells=")
    with pytest.raises(ValueError, match="pass one of the same architecture"):
        load_run(tmp_path / "run")
    fresh = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    run = load_run(tmp_path / "run", model=fresh)
    X = wine()[0][:5]
    np.testing.assert_allclose(run.predict(X), net(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    other = torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    other.load_state_dict(torch.load(tmp_path / "run" / "model.pt"))
    np.testing.assert_allclose(other(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(),
                               run.predict(X), rtol=1e-5, atol=1e-5)


def test_a_builtin_mlp_run_restores_from_its_directory_alone(tmp_path):
    s = train(TrainConfig(algo="adam", dataset="spiral", epochs=2, out=str(tmp_path / "run"), progress=False))
    run = load_run(tmp_path / "run")
    from host.data import spiral
    ds = spiral()
    from host.nn import SigmoidBCE
    assert run.step == s["iterations"]
    assert SigmoidBCE().value(run.predict(ds.X_test), ds.y_test) == pytest.approx(s["final_test_loss"], rel=1e-12)


# ---------------------------------------------------------------------------------- the chain
def test_posterior_predictive_average_and_its_resume(tmp_path):
    """Langevin on the spiral keeps every 5th step after the burn-in; the averaged prediction
    is scored at each evaluation, the samples are on disk, and a run resumed mid-chain gives
    exactly the uninterrupted run's average."""
    common = dict(algo="langevin", dataset="spiral", progress=False, posterior_every=5, posterior_burn_in=1)
    whole = train(TrainConfig(epochs=3, out=str(tmp_path / "whole"), **common))
    assert whole["posterior_samples"] == 2 * 20 // 5          # 20 steps per epoch, epochs 2 and 3
    samples = np.concatenate([np.load(f) for f in sorted((tmp_path / "whole" / "samples").glob("epoch-*.npy"))])
    assert samples.shape == (8, 401)
    # the average is of these samples' predictive probabilities (recomputed here from the files)
    from host.data import spiral
    from host.nn import MLP
    from host.nn.losses import sigmoid
    ds, mlp = spiral(), MLP([2, 100, 1])
    p = np.mean([sigmoid(mlp.apply(t, ds.X_test))[:, 0] for t in samples], axis=0)
    assert whole["posterior_test_accuracy"] == pytest.approx(np.mean((p > 0.5) == (ds.y_test > 0.5)))
    train(TrainConfig(epochs=2, out=str(tmp_path / "split"), **common))
    resumed = train(TrainConfig(epochs=3, out=str(tmp_path / "split"), resume=True, **common))
    for key in ("posterior_samples", "posterior_test_accuracy", "posterior_test_loss", "final_test_loss"):
        assert resumed[key] == whole[key], key


def test_posterior_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="posterior_burn_in must be in 0 … epochs − 1 = 1"):
        train(TrainConfig(algo="langevin", dataset="spiral", epochs=2, posterior_every=5, posterior_burn_in=2,
                          out=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="posterior_every must be >= 0"):
        train(TrainConfig(algo="langevin", dataset="spiral", posterior_every=-1, out=str(tmp_path / "r")))


# ---------------------------------------------------------------------------------- the CLI
def test_cli_trains_user_data_and_a_torch_model_from_files(user_dir):
    p = thermohil("--algo", "adam", "--dataset", "mydata.py:wine", "--model", "nets.py:build",
                  "--epochs", "8", "--json", cwd=user_dir)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.splitlines()[-1])
    assert s["dataset"] == "mydata.py:wine" and s["out"].startswith("runs/adam-mydata-wine-s0-")
    assert s["test_accuracy"] > 0.8 and s["n_params"] == 13 * 12 + 12 + 13 * 3
    cfg = json.loads((user_dir / s["out"] / "config.json").read_text())
    assert cfg["resolved"]["model"]["factory"] == "nets.py:build"
    # the directory alone gives the model back, from anywhere: its factory file is re-imported
    run = load_run(user_dir / s["out"])
    X = wine()[0]
    assert run.predict(X).shape == (178, 3)
    # … and refuses when that file has changed the network since
    (user_dir / "nets.py").write_text((user_dir / "nets.py").read_text().replace("Tanh", "ReLU"))
    with pytest.raises(ValueError, match="architecture differs from the one the run trained"):
        load_run(user_dir / s["out"])


def test_cli_regression_with_mse(user_dir):
    p = thermohil("--algo", "adam", "--dataset", "mydata.py:diabetes", "--lr", "0.003", "--epochs", "10",
                  cwd=user_dir)
    assert p.returncode == 0, p.stderr
    assert "test R² 0." in p.stdout


@pytest.mark.parametrize("model, needle", [
    ("missing.py:build", "thermohil: error: model factory: no such file 'missing.py'"),
    ("nets.py:bild", "thermohil: error: model factory 'nets.py:bild': nets.py defines no 'bild'; it defines: build"),
    ("nets.py:WIDTH", "thermohil: error: model factory nets.py:WIDTH: it is an object of type int, not a function"),
    ("nets.py:raises", "thermohil: error: model factory nets.py:raises: calling it with (n_inputs=13, "
                       "n_outputs=3) raised TypeError: build() wants a config"),
    ("nets.py:not_a_model", "thermohil: error: model factory nets.py:not_a_model returned list: it must "
                            "return a torch.nn.Module"),
    ("nets.py:too_wide", "thermohil: error: model nets.py:too_wide gives 4 output(s) per example; "
                         "mydata.py:wine under loss ce needs one logit per class (3)"),
    ("build", "thermohil: error: model factory 'build': give FILE.py:NAME or MODULE:NAME"),
])
def test_cli_model_errors_are_one_clear_line(user_dir, model, needle):
    p = thermohil("--algo", "adam", "--dataset", "mydata.py:wine", "--model", model, "--epochs", "1",
                  cwd=user_dir)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == needle or needle in p.stderr.strip().splitlines()[-1], p.stderr
    assert "Traceback" not in p.stderr
    assert not (user_dir / "runs").exists()


@pytest.mark.parametrize("dataset, needle, code", [
    ("wine", "unknown data set 'wine'; known: digits, spiral, or FILE.py:LOADER", 2),
    ("mydata.py:broken", "data set 'mydata.py:broken': the loader raised RuntimeError: the share is not mounted", 1),
    ("nodata.py:load", "data set: no such file 'nodata.py'", 1),
])
def test_cli_data_errors_are_one_clear_line(user_dir, dataset, needle, code):
    p = thermohil("--algo", "adam", "--dataset", dataset, "--epochs", "1", cwd=user_dir)
    assert p.returncode == code and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (user_dir / "runs").exists()


def test_a_resume_with_another_model_is_refused(user_dir):
    assert thermohil("--algo", "adam", "--dataset", "mydata.py:wine", "--model", "nets.py:build",
                     "--epochs", "1", "--out", "r", cwd=user_dir).returncode == 0
    p = thermohil("--algo", "adam", "--dataset", "mydata.py:wine", "--epochs", "2", "--out", "r",
                  "--resume", cwd=user_dir)
    assert p.returncode == 1 and "--resume: model was 'nets.py:build' in r, now None" in p.stderr


def test_training_error_still_names_the_checkpoint(tmp_path):
    """A step size that overflows the model on user data stops with the usual typed error."""
    with pytest.raises(TrainingError, match="non-finite"):
        train(TrainConfig(algo="sgd", dataset=diabetes(), epochs=3, hyper={"lr": 1e6},
                          out=str(tmp_path / "r"), progress=False))


def test_integer_label_columns_and_float_labels_with_a_loss_train(tmp_path):
    X, y = wine()
    s = train(TrainConfig(algo="adam", dataset=(X, y[:, None]), epochs=1, out=str(tmp_path / "a"), progress=False))
    assert s["loss"] == "ce" and "test_accuracy" in s
    s = train(TrainConfig(algo="adam", dataset=(X, y.astype(float)), loss="ce", epochs=1, out=str(tmp_path / "b"),
                          progress=False))
    assert s["loss"] == "ce"


def test_a_run_that_fails_at_once_leaves_the_earlier_run_alone(tmp_path):
    """The run directory is prepared only after the first step worked: a command that fails on
    its first step (a step size that overflows at once), or earlier (a torch loss that does not
    fit the targets), leaves the earlier run's files as they were."""
    out = tmp_path / "run"
    train(TrainConfig(algo="adam", dataset="spiral", epochs=1, out=str(out), progress=False))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"config.json", "metrics.jsonl", "checkpoint.npz"} <= set(before)
    X, y = wine()
    with pytest.raises(TrainingError, match="non-finite update at step 0"):   # the first step overflows
        train(TrainConfig(algo="sgd", dataset=(X * 1e10, y), epochs=1, hyper={"lr": 1e300}, out=str(out),
                          progress=False))
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="gives 3 output.s. per example; arrays under loss mse needs one"):
        train(TrainConfig(algo="adam", dataset=wine(), model=torch.nn.Linear(13, 3), loss=torch.nn.MSELoss(),
                          out=str(out), progress=False))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_default_directories_differ_by_settings_and_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    X, y = wine()
    a = train(TrainConfig(algo="adam", dataset=(X, y), epochs=1, progress=False))["out"]
    b = train(TrainConfig(algo="adam", dataset=(X, y), epochs=1, hyper={"lr": 0.01}, progress=False))["out"]
    c = train(TrainConfig(algo="adam", dataset=(X[:, :5], y), epochs=1, progress=False))["out"]
    d = train(TrainConfig(algo="adam", dataset=(X, y), epochs=2, progress=False))["out"]
    assert len({a, b, c}) == 3 and d == a       # epochs are not a setting: --resume finds the run


def test_a_resume_records_each_session_s_device(tmp_path):
    out = tmp_path / "run"
    common = dict(algo="tngd", dataset="spiral", batch_size=10, progress=False, out=str(out))
    train(TrainConfig(epochs=1, device="spawn://?seed=4", **common))
    train(TrainConfig(epochs=2, device="spawn://?seed=9", resume=True, **common))
    r = json.loads((out / "config.json").read_text())["resolved"]
    assert r["device"]["seed"] == 4
    assert [(x["from_step"], x["device"]["seed"]) for x in r["sessions"]] == [(0, 4), (50, 9)]


# ---------------------------------------------------------------------------------- review fixes
def test_a_torch_loss_module_is_named_by_its_closed_form(tmp_path):
    """MSELoss() is the closed-form MSE: the run says 'mse' and scores by R², as loss='mse' does."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    X, y = diabetes()
    by_module = train(TrainConfig(algo="adam", dataset=(X, y), model=torch.nn.Linear(10, 1), loss=torch.nn.MSELoss(),
                                  epochs=2, out=str(tmp_path / "m"), progress=False))
    torch.manual_seed(0)
    by_name = train(TrainConfig(algo="adam", dataset=(X, y), model=torch.nn.Linear(10, 1), loss="mse",
                                epochs=2, out=str(tmp_path / "n"), progress=False))
    assert by_module["loss"] == by_name["loss"] == "mse"
    assert by_module["test_r2"] == by_name["test_r2"] and "test_accuracy" not in by_module


def test_a_generic_loss_without_accuracy_writes_valid_json(tmp_path):
    torch = pytest.importorskip("torch")
    X, y = diabetes()
    s = train(TrainConfig(algo="adam", dataset=(X, y), model=torch.nn.Linear(10, 1),
                          loss=torch.nn.HuberLoss(delta=0.5), epochs=1, out=str(tmp_path / "h"), progress=False))
    assert s["loss"].startswith("HuberLoss()") and "delta': 0.5" in s["loss"]
    for line in open(tmp_path / "h" / "metrics.jsonl"):
        row = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))
        assert "test_accuracy" not in row and "test_r2" not in row


def test_a_module_passed_in_trains_from_its_own_weights(tmp_path):
    """A (possibly pretrained) module keeps its weights at the start; a factory's module is
    initialised from the run's seed."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(13, 3)
    with torch.no_grad():
        net.weight.fill_(0.01)
        net.bias.zero_()
    X, y = wine()
    train(TrainConfig(algo="adam", dataset=(X, y), model=net, epochs=1, out=str(tmp_path / "p"), progress=False))
    first = json.loads(open(tmp_path / "p" / "metrics.jsonl").readline())
    ds = from_arrays(X, y)
    z = ds.X_test @ np.full((13, 3), 0.01)
    expected = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), ds.y_test]))
    assert first["step"] == 0 and first["test_loss"] == pytest.approx(expected, rel=1e-6)


def test_resume_refuses_other_data_architecture_or_schedule(tmp_path):
    torch = pytest.importorskip("torch")
    from host.optim import exponential_decay
    X, y = wine()
    out = str(tmp_path / "r")
    train(TrainConfig(algo="sgd", dataset=(X, y), epochs=1, hyper={"lr": exponential_decay(0.1, 0.9)}, out=out,
                      progress=False))
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["hyper"] == {"lr": "exponential_decay(0.1, 0.9, 1)"}
    with pytest.raises(ValueError, match="the data differ"):
        train(TrainConfig(algo="sgd", dataset=(X + 1.0, y), epochs=2, hyper={"lr": exponential_decay(0.1, 0.9)},
                          out=out, resume=True, progress=False))
    with pytest.raises(ValueError, match="hyper was"):
        train(TrainConfig(algo="sgd", dataset=(X, y), epochs=2, hyper={"lr": exponential_decay(5.0, 1.0)},
                          out=out, resume=True, progress=False))
    a = torch.nn.Sequential(torch.nn.Linear(13, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    b = torch.nn.Sequential(torch.nn.Linear(13, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))   # same size
    train(TrainConfig(algo="adam", dataset=(X, y), model=a, epochs=1, out=str(tmp_path / "t"), progress=False))
    with pytest.raises(ValueError, match=r"model was 'Sequential\(.*Tanh.*now 'Sequential\(.*ReLU"):
        train(TrainConfig(algo="adam", dataset=(X, y), model=b, epochs=2, out=str(tmp_path / "t"), resume=True,
                          progress=False))
    # the same factory reference, its file edited since: the recorded architecture tells
    nets = tmp_path / "nets.py"
    nets.write_text("import torch\ndef build(i, o):\n    return torch.nn.Sequential(torch.nn.Linear(i, 4), "
                    "torch.nn.Tanh(), torch.nn.Linear(4, o))\n")
    ref = f"{nets}:build"
    train(TrainConfig(algo="adam", dataset=(X, y), model=ref, epochs=1, out=str(tmp_path / "f"), progress=False))
    nets.write_text(nets.read_text().replace("Tanh", "ReLU"))
    with pytest.raises(ValueError, match="the model's architecture differs"):
        train(TrainConfig(algo="adam", dataset=(X, y), model=ref, epochs=2, out=str(tmp_path / "f"), resume=True,
                          progress=False))


def test_default_directories_of_two_architectures_differ(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    X, y = wine()
    outs = {train(TrainConfig(algo="adam", dataset=(X, y), model=m, epochs=1, progress=False))["out"]
            for m in (torch.nn.Linear(13, 3),
                      torch.nn.Sequential(torch.nn.Linear(13, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)))}
    assert len(outs) == 2


def test_a_float_label_column_is_ambiguous_too():
    X, y = wine()
    with pytest.raises(ValueError, match="whole numbers stored as floats"):
        from_arrays(X, y.astype(float)[:, None])
    assert from_arrays(X, y.astype(float)[:, None], loss="ce").loss == "ce"


def test_a_run_recorded_before_the_new_keys_resumes(tmp_path):
    out = tmp_path / "old"
    common = dict(algo="adam", dataset="spiral", progress=False, out=str(out))
    train(TrainConfig(epochs=1, **common))
    cfg = json.loads((out / "config.json").read_text())
    for key in ("model", "loss", "posterior_every", "posterior_burn_in", "resolved"):
        cfg.pop(key)
    (out / "config.json").write_text(json.dumps(cfg))
    assert train(TrainConfig(epochs=2, resume=True, **common))["iterations"] == 40


@pytest.mark.parametrize("loss", ["ce", "bce", "mse"])
def test_one_sample_s_predictive_average_is_that_model_s_evaluation(loss):
    """With one sample the posterior-predictive loss and score are the model's own."""
    from host.nn import LOSSES, MLP
    from host.objective import Objective
    from host.posterior import PredictiveAverage
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    y = {"ce": rng.integers(0, 3, 50), "bce": rng.integers(0, 2, 50), "mse": rng.normal(size=50)}[loss]
    mlp = MLP([4, 6, 3 if loss == "ce" else 1])
    theta = mlp.init(rng)
    avg = PredictiveAverage(loss, X, y)
    avg.add(mlp, theta)
    assert avg.scores() == pytest.approx(Objective(mlp, LOSSES[loss]()).evaluate(theta, X, y), rel=1e-12)
