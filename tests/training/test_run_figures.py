"""A run directory's figures and overlays (host.run_figures) and `thermohil plot`: run
directories written by hand in the schema `thermohil train` writes (classification, regression,
the Langevin family's per-group diagnostics, a run stopped by an error, a config.json from
before it recorded the resolved hyperparameters), and one real run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from host.cli import main  # noqa: E402
from host.run_figures import figures_of_run, overlay, overlay_figure, plot_run  # noqa: E402
from host.training import TrainConfig, train  # noqa: E402

from support import REPO  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(path: Path, algo: str = "tngd", *, n_steps: int = 20, eval_every: int = 10,
              loss: str | None = None, resolved: bool = True, groups: tuple[str, ...] = (),
              single_group: bool = False, posterior: bool = False, error: str | None = None,
              hyper: dict | None = None, seed: int = 0, device: dict | None = None) -> Path:
    """A run directory as training writes it: config.json and metrics.jsonl."""
    path.mkdir(parents=True)
    hyper = {"lr": 0.01, "lam": 0.01} if hyper is None else hyper
    config = {"algo": algo, "dataset": "spiral", "seed": seed, "epochs": 2, "batch_size": 25,
              "hyper": hyper, "device": None}
    if loss:
        config["loss"] = loss
    if resolved:
        config["resolved"] = {"hyper": {**hyper, "t": 50.0, "t_delay": 0.0, "form": "lowrank", "kappa": 0.0},
                              "model": {"kind": "mlp", "n_params": 401, "sizes": [2, 100, 1]},
                              "device": device, "library_version": "0.0-test"}
    totals = {"wall_time_s": 0.0, "device_time": 0.0, "projected_hw_time_s": 0.0, "bytes_sent": 0,
              "bytes_received": 0, "calibration_time": 0.0}

    def evaluation(step: int) -> dict:
        score = 0.5 + step / (2.0 * max(n_steps, 1)) if loss != "mse" else -0.3 + step / max(n_steps, 1)
        key = "r2" if loss == "mse" else "accuracy"          # as training writes them
        row = {"step": step, "epoch": step // 10, "train_loss": 1.0 / (1 + step), f"train_{key}": score,
               "test_loss": 1.1 / (1 + step), f"test_{key}": score - 0.02, **totals}
        if posterior:
            row.update({"posterior_test_loss": 1.0 / (1 + step), f"posterior_test_{key}": score})
        return row
    rows = [evaluation(0)]
    for step in range(1, n_steps + 1):
        totals["wall_time_s"] += 0.01
        totals["projected_hw_time_s"] += 2e-4
        totals["device_time"] += 50.0
        row = {"step": step, "epoch": 1 + (step - 1) // 10, "batch_loss": 1.2 / step, "wall_time_s": 0.01,
               "digital_time_s": 0.008, "projected_hw_time_s": 2e-4, "device_time": 50.0, "bytes_sent": 4000,
               "rank": 25, "scale": 1.0, "direction_error": 0.01, "cumulative": dict(totals)}
        if groups:
            row["groups"] = {f"{g}.{q}": 0.001 * step * (i + 1) for i, g in enumerate(groups)
                             for q in ("xi", "kinetic_temperature", "momentum_norm")}
        if single_group:
            row.update(xi=0.01 * step, kinetic_temperature=1e-3 * step)
        rows.append(row)
        if step % eval_every == 0:
            rows.append(evaluation(step))
    if error:
        rows.append({"step": n_steps, "error": error, "link": {"packets": 40, "retries": 3}})
    (path / "config.json").write_text(json.dumps(config, indent=1))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 2000


def suptitle(fig) -> str:
    return fig.get_suptitle() if hasattr(fig, "get_suptitle") else fig._suptitle.get_text()  # < 3.8


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def close(figures: dict) -> None:
    import matplotlib.pyplot as plt
    for fig in figures.values():
        plt.close(fig)


def test_a_device_run_gets_its_title_loss_accuracy_and_time_panels(tmp_path):
    run = write_run(tmp_path / "tngd", "tngd", hyper={"lr": 0.05, "lam": 0.01},
                    device={"url": "spawn://?cells=401", "profile": "realistic", "serial": 7})
    figures = figures_of_run(run)
    fig = figures["loss.png"]
    title = suptitle(fig)
    assert title.startswith("tngd on spiral · mlp 2-100-1, 401 params · device realistic · seed 0\n")
    assert "lr=0.05 lam=0.01 t=50" in title            # given first, then the resolved ones
    assert titles(fig) == ["loss", "accuracy", "test loss against time"]
    loss, acc, timed = fig.axes
    assert loss.get_yscale() == "log" and acc.get_ylabel() == "accuracy"
    assert [line.get_label() for line in timed.get_lines()] == ["projected hardware time", "wall time"]
    assert max(timed.get_lines()[0].get_xdata()) == pytest.approx(20 * 2e-4)
    assert set(figures) == {"loss.png"}                   # no Langevin diagnostics, no langevin.png
    close(figures)
    (run / "langevin.png").write_bytes(PNG)               # left by an earlier run in the directory
    assert plot_run(run) == [run / "loss.png"] and is_png(run / "loss.png")
    assert not (run / "langevin.png").exists()


def test_langevin_groups_get_a_figure_of_xi_and_kinetic_temperature_per_group(tmp_path):
    run = write_run(tmp_path / "adlala", "adlala", groups=("layer0", "layer1"), posterior=True,
                    hyper={"h": 0.05, "tau1": 1e-4, "split": 1})
    figures = figures_of_run(run)
    fig = figures["langevin.png"]
    assert "adlala" in suptitle(fig) and "h=0.05 tau1=0.0001 split=1" in suptitle(fig)
    xi, temp = fig.axes
    assert "ξ" in xi.get_title() and "kinetic temperature" in temp.get_title()
    assert [line.get_label() for line in xi.get_lines()] == ["layer0", "layer1"]
    assert [line.get_label() for line in temp.get_lines()] == ["layer0", "layer1"]
    acc = figures["loss.png"].axes[1]
    assert "test, posterior predictive" in [line.get_label() for line in acc.get_lines()]
    close(figures)
    written = plot_run(run)
    assert written == [run / "loss.png", run / "langevin.png"] and all(map(is_png, written))


def test_a_single_group_langevin_run_reports_its_diagnostics_at_the_top_level(tmp_path):
    run = write_run(tmp_path / "langevin", "langevin", single_group=True, hyper={"h": 0.1})
    figures = figures_of_run(run)
    assert [line.get_label() for line in figures["langevin.png"].axes[0].get_lines()] == ["all"]
    close(figures)


def test_a_regression_run_says_r2(tmp_path):
    run = write_run(tmp_path / "mse", "adam", loss="mse", hyper={"lr": 0.001})
    figures = figures_of_run(run)
    acc = figures["loss.png"].axes[1]
    assert acc.get_title() == "R²" and acc.get_ylabel() == "R²"
    assert acc.get_lines() and len(acc.get_lines()[0].get_xdata()) == 3      # the test_r2 rows are drawn
    close(figures)
    assert overlay_figure([run], metric="test_accuracy").axes[0].get_ylabel() == "test R²"


@pytest.mark.parametrize("kind", ["old-config", "error-row", "epoch-0-only", "no-config", "torn-line"])
def test_runs_cut_short_or_written_before_resolved_are_drawn(kind, tmp_path):
    run = write_run(tmp_path / kind, "sgd", resolved=kind != "old-config", error=(
        "DeviceReset: the device rebooted" if kind == "error-row" else None),
        n_steps=0 if kind == "epoch-0-only" else 20, hyper={"lr": 0.1})
    if kind == "no-config":
        (run / "config.json").unlink()
    if kind == "torn-line":
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"step": 21, "epoch": 3, "batch_lo')
    figures = figures_of_run(run)
    fig = figures["loss.png"]
    title = suptitle(fig)
    assert ("no-config" if kind == "no-config" else "sgd on spiral") in title
    if kind == "old-config":
        assert "lr=0.1" in title and "params" not in title
    notes = [t.get_text() for t in fig.texts]
    assert any("stopped at step 20: DeviceReset" in n for n in notes) == (kind == "error-row")
    close(figures)
    assert all(map(is_png, plot_run(run)))


def test_overlay_labels_runs_and_tells_apart_two_of_one_algorithm(tmp_path):
    a = write_run(tmp_path / "a", "tngd", hyper={"lr": 0.05, "lam": 0.01})
    b = write_run(tmp_path / "b", "tngd", hyper={"lr": 0.05, "lam": 0.1}, seed=1)
    c = write_run(tmp_path / "c", "adam", hyper={"lr": 0.001}, resolved=False)
    fig = overlay_figure([a, b, c], x="hw_time", metric="test_loss")
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["tngd lr=0.05 lam=0.01 t=50 s0 [a]", "tngd lr=0.05 lam=0.1 t=50 s1 [b]",
                      "adam lr=0.001 s0"]
    assert fig.axes[0].get_xlabel() == "cumulative projected hardware time (s)"
    out = overlay([a, b, c], tmp_path / "figs" / "o.png", x="wall_time", metric="batch_loss")
    assert out == tmp_path / "figs" / "o.png" and is_png(out)
    with pytest.raises(ValueError, match="unknown metric 'loss'; known: test_loss, test_accuracy"):
        overlay_figure([a], metric="loss")
    with pytest.raises(ValueError, match="none of the runs records posterior_test_accuracy"):
        overlay_figure([a, c], metric="posterior_test_accuracy")


def test_cli_plot_redraws_a_run_and_overlays_several(tmp_path, capsys, monkeypatch):
    a = write_run(tmp_path / "a", "adlala", groups=("layer0",), hyper={"h": 0.05})
    b = write_run(tmp_path / "b", "sgd", hyper={"lr": 0.1})
    assert main(["plot", str(a)]) == 0
    assert capsys.readouterr().out.split() == [str(a / "loss.png"), str(a / "langevin.png")]
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(a), str(b), "--metric", "test_accuracy", "--x", "hw_time"]) == 0
    assert capsys.readouterr().out.strip() == "overlay.png" and is_png(tmp_path / "overlay.png")
    assert main(["plot", str(b), "--out", "one.png"]) == 0 and is_png(tmp_path / "one.png")


@pytest.mark.parametrize("setup, args, needle", [
    (None, ["missing"], "thermohil plot: no such directory: "),
    ("empty", ["empty"], "thermohil plot: "),
    ("file", ["file"], "thermohil plot: not a directory: "),
    ("run", ["run", "--metric", "accuracy"], "thermohil plot: unknown metric 'accuracy'; known: test_loss, "),
    ("run", ["run", "run", "--metric", "posterior_test_loss"], "thermohil plot: none of the runs records"),
])
def test_cli_plot_refuses_in_one_line(setup, args, needle, tmp_path, capsys):
    if setup == "empty":
        (tmp_path / "empty").mkdir()
    elif setup == "file":
        (tmp_path / "file").write_text("{}")
    elif setup == "run":
        write_run(tmp_path / "run")
    args = [str(tmp_path / a) if a in ("missing", "empty", "file", "run") else a for a in args]
    assert main(["plot", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(needle) and err.count("\n") == 1, err
    if setup == "empty":
        assert "holds no metrics.jsonl" in err


def test_without_matplotlib_nothing_is_drawn_and_the_command_says_so(tmp_path, monkeypatch, capsys):
    import host.run_figures
    run = write_run(tmp_path / "run")
    monkeypatch.setattr(host.run_figures, "pyplot", lambda: None)   # what pyplot() gives then
    assert plot_run(run) == [] and overlay([run], tmp_path / "o.png") is None
    assert main(["plot", str(run)]) == 1 and not (run / "loss.png").exists()


def test_a_real_run_is_plotted_by_the_command(tmp_path):
    """A real (digital, tiny) Langevin run, then `thermohil plot` as its own process."""
    out = tmp_path / "run"
    train(TrainConfig(algo="adlala", dataset="spiral", device=None, epochs=2, out=str(out), progress=False))
    for name in ("loss.png", "langevin.png"):
        (out / name).unlink(missing_ok=True)
    p = subprocess.run([sys.executable, "-m", "host.cli", "plot", str(out)], capture_output=True,
                       text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(out / "loss.png"), str(out / "langevin.png")]
    assert is_png(out / "loss.png") and is_png(out / "langevin.png")
