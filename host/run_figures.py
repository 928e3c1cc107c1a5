"""Figures of a training run directory (``config.json`` + ``metrics.jsonl``), and overlays of
several runs: what ``thermohil train`` leaves in its directory and ``thermohil plot`` redraws.
Runs are read leniently (a run cut short, stopped by an error, or older than the ``resolved``
record is still drawn), so a figure never costs a run its summary. Headless (Agg); without
matplotlib nothing is drawn and the caller is told so."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from host.plots import pyplot

#: What an overlay can draw: the evaluation rows' metrics, and the step rows' batch loss.
METRICS = ("test_loss", "test_accuracy", "train_loss", "train_accuracy",
           "posterior_test_loss", "posterior_test_accuracy", "batch_loss",
           "test_r2", "train_r2", "posterior_test_r2")
#: An overlay's x axes: the iteration, or the run's cumulative time so far.
X_AXES = {"step": "iteration", "hw_time": "cumulative projected hardware time (s)",
          "wall_time": "cumulative wall time (s)"}
_TIME_KEYS = {"hw_time": "projected_hw_time_s", "wall_time": "wall_time_s"}
#: Hyperparameters worth naming in a title, the most telling first.
KEY_HYPER = ("lr", "h", "lam", "t", "t_delay", "tau", "tau1", "tau2", "gamma", "gammas", "taus",
             "momentum", "split", "partition", "kappa", "sigma_a", "form", "readout")
Series = tuple[list[float], list[float]]


@dataclass
class RunRows:
    """One run directory as figures see it: its configuration and its metric rows, sorted by
    kind (``host.load_run`` is the other reading, the trained model)."""
    path: Path
    config: dict
    steps: list[dict]          # one per optimizer step (they carry "batch_loss")
    evals: list[dict]          # one per evaluation (they carry "test_loss")
    error: dict | None         # the row a run stopped by an error ends with

    @property
    def algo(self) -> str:
        return str(self.config.get("algo", self.path.name))

    @property
    def regression(self) -> bool:
        """MSE runs report R² (``*_r2``) where classification runs report accuracy."""
        return self.config.get("loss") == "mse"

    @property
    def score_key(self) -> str:
        """'r2' or 'accuracy': the rows' key (runs written before the R² keys used 'accuracy')."""
        return "r2" if any("test_r2" in r for r in self.evals) else "accuracy"

    def hyper(self) -> dict[str, Any]:
        """The hyperparameters actually used when the run recorded them, else those given."""
        given, used = self.config.get("hyper"), _resolved(self.config, "hyper")
        return {**(given if isinstance(given, dict) else {}), **(used if isinstance(used, dict) else {})}

    def key_hyper(self, n: int) -> str:
        """The n most telling hyperparameters, those the user gave first: 'lr=0.01 lam=0.01'."""
        values, given = self.hyper(), self.config.get("hyper") or {}
        rank = {k: i for i, k in enumerate(KEY_HYPER)}
        keys = sorted(values, key=lambda k: (k not in given, rank.get(k, len(rank)), k))
        keys = [k for k in keys if (k in given or k in rank) and values[k] is not None]
        return " ".join(f"{k}={_fmt(values[k])}" for k in keys[:n])

    def title(self) -> str:
        """Two lines: what ran on what (model, seed), then the key hyperparameters."""
        parts = [f"{self.algo} on {_dataset(self.config)}"]
        parts += [text for text in (_model(self.config), _device(self.config)) if text]
        parts.append(f"seed {self.config.get('seed', '?')}")
        return " · ".join(parts) + "\n" + (self.key_hyper(6) or "default hyperparameters")

    def label(self, n: int = 3) -> str:
        return " ".join(filter(None, (self.algo, self.key_hyper(n), f"s{self.config.get('seed', '?')}")))


def read_rows(run_dir: str | Path) -> RunRows:
    """Read a run directory; lines that are not JSON objects (a line cut short by a killed run)
    are skipped rather than refusing the whole run."""
    path = Path(run_dir)
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{path} holds no metrics.jsonl (not a training run directory?)")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    steps, evals, error = [], [], None
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        if "error" in row:
            error = row
        elif "test_loss" in row:
            evals.append(row)
        elif "batch_loss" in row:
            steps.append(row)
    return RunRows(path, config if isinstance(config, dict) else {}, steps, evals, error)


def _fmt(v: Any, width: int = 24) -> str:
    if isinstance(v, float):
        text = f"{v:.3g}"
    elif isinstance(v, (list, tuple)):
        text = ",".join(_fmt(x) for x in v)
    else:
        text = str(v)
    return text if len(text) <= width else text[:width - 1] + "…"


def _resolved(config: dict, key: str) -> Any:
    resolved = config.get("resolved")
    return resolved.get(key) if isinstance(resolved, dict) else None


def _dataset(config: dict) -> str:
    data = _resolved(config, "data")
    name = data.get("name") if isinstance(data, dict) else None
    return _fmt(name or config.get("dataset", "?"), 40)


def _device(config: dict) -> str:
    """Which device a run used, when it used one: its hardware profile, else its URL."""
    device = _resolved(config, "device")
    if not isinstance(device, dict):
        return ""
    return f"device {_fmt(device.get('profile') or device.get('url') or '?', 32)}"


def _model(config: dict) -> str:
    model = _resolved(config, "model")
    if not isinstance(model, dict):
        return ""
    sizes = model.get("sizes")
    shape = "-".join(str(s) for s in sizes) if isinstance(sizes, list) else model.get("description")
    text = " ".join(_fmt(p, 32) for p in (model.get("kind"), shape) if p)
    if isinstance(model.get("n_params"), int):
        text += f"{', ' if text else ''}{model['n_params']} params"
    return text


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def series(rows: Iterable[dict], key: str, x: str = "step") -> Series:
    """(x, y) of the rows that carry both; time axes read a step row's running totals."""
    xs, ys = [], []
    for r in rows:
        totals = r.get("cumulative") if isinstance(r.get("cumulative"), dict) else r
        xv, yv = _num(r.get("step") if x == "step" else totals.get(_TIME_KEYS[x])), _num(r.get(key))
        if xv is not None and yv is not None:
            xs.append(xv)
            ys.append(yv)
    return xs, ys


def _plot(ax: Any, xy: Series, fmt: str = "-", **kw: Any) -> None:
    if xy[0]:
        ax.plot(*xy, fmt, **kw)


def _finish(ax: Any, logx: bool = False, logy: bool = False) -> None:
    """Log axes only where there is something positive to show; legend where there are lines."""
    lines = ax.get_lines()
    xs = [v for line in lines for v in line.get_xdata() if 0 < v < float("inf")]
    if logx and xs:   # logarithmic beyond the first positive time, linear down to the start at 0
        ax.set_xscale("symlog", linthresh=min(xs), linscale=1.0)
        ax.set_xlim(left=0)
    if logy and any(0 < v < float("inf") for line in lines for v in line.get_ydata()):
        ax.set_yscale("log")
    if lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "nothing recorded yet", ha="center", va="center", transform=ax.transAxes)


def _langevin(steps: list[dict]) -> dict[str, dict[str, Series]]:
    """ξ and kinetic temperature per group, from ``groups`` (or the top level: one group)."""
    out: dict[str, dict[str, Series]] = {"xi": {}, "kinetic_temperature": {}}
    for r in steps:
        groups = r.get("groups") if isinstance(r.get("groups"), dict) else {}
        for key, v in {**{f"all.{k}": r[k] for k in out if k in r}, **groups}.items():
            group, _, quantity = key.rpartition(".")
            if group and quantity in out and _num(v) is not None and _num(r.get("step")) is not None:
                xs, ys = out[quantity].setdefault(group, ([], []))
                xs.append(float(r["step"]))
                ys.append(float(v))
    return out


def _stamp(fig: Any, run: RunRows) -> None:
    """The run's title on top, and why it stopped at the bottom; fixed margins, because
    matplotlib's automatic layout costs more than the drawing."""
    fig.suptitle(run.title(), fontsize=10)
    if run.error is not None:
        text = f"stopped at step {run.error.get('step', '?')}: {_fmt(run.error.get('error', ''), 160)}"
        fig.text(0.01, 0.015, text, color="crimson", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.82, wspace=0.3,
                        bottom=0.13 if run.error is None else 0.17)


def figures_of_run(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's figures by file name ("loss.png", and "langevin.png" when the steps carry
    Langevin diagnostics), not yet saved; None without matplotlib."""
    run = read_rows(run_dir)
    plt = pyplot()
    if plt is None:
        return None
    score = "R²" if run.regression else "accuracy"
    fig, (loss, acc, timed) = plt.subplots(1, 3, figsize=(15, 4.4))
    _plot(loss, series(run.steps, "batch_loss"), lw=0.6, alpha=0.5, label="batch")
    for key, fmt, color, label in (("train", "o-", "C1", "train"), ("test", "s-", "C2", "test"),
                                   ("posterior_test", "^-", "C3", "test, posterior predictive")):
        _plot(loss, series(run.evals, f"{key}_loss"), fmt, ms=3, color=color, label=label)
        _plot(acc, series(run.evals, f"{key}_{run.score_key}"), fmt, ms=3, color=color, label=label)
    loss.set(xlabel="iteration", ylabel="loss", title="loss")
    acc.set(xlabel="iteration", ylabel=score, title=score)
    _plot(timed, series(run.evals, "test_loss", "hw_time"), "s-", ms=3, label="projected hardware time")
    _plot(timed, series(run.evals, "test_loss", "wall_time"), "o--", ms=3, alpha=0.7, label="wall time")
    timed.set(xlabel="cumulative time (s)", ylabel="test loss", title="test loss against time")
    for ax, logy in ((loss, True), (acc, False), (timed, True)):
        _finish(ax, logx=ax is timed, logy=logy)
    _stamp(fig, run)
    figures = {"loss.png": fig}
    diag = _langevin(run.steps)
    if any(diag.values()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, (quantity, title) in zip(axes, (("xi", "ξ (friction) per group"),
                                                ("kinetic_temperature", "kinetic temperature per group"))):
            for group, xy in sorted(diag[quantity].items()):
                _plot(ax, xy, lw=0.8, label=group)
            ax.set(xlabel="iteration", ylabel=quantity.replace("_", " ").replace("xi", "ξ"), title=title)
            _finish(ax, logy=quantity == "kinetic_temperature")
        _stamp(fig, run)
        figures["langevin.png"] = fig
    return figures


def plot_run(run_dir: str | Path) -> list[Path]:
    """Draw the run's figures into its directory; the files written ([] without matplotlib).
    A langevin.png left by an earlier run in the same directory is removed when this run has
    no Langevin diagnostics, so the directory never shows another run's figure."""
    figures = figures_of_run(run_dir)
    if figures is None:
        return []
    plt, written = pyplot(), [Path(run_dir) / name for name in figures]
    for path, fig in zip(written, figures.values()):
        fig.savefig(path, dpi=110)
        plt.close(fig)
    if "langevin.png" not in figures:
        (Path(run_dir) / "langevin.png").unlink(missing_ok=True)
    return written


def overlay_figure(run_dirs: Sequence[str | Path], x: str = "step", metric: str = "test_loss") -> Any | None:
    """One metric of several runs against one x axis, each labelled by algorithm, key
    hyperparameters and seed (and its directory when two runs share an algorithm); None
    without matplotlib. Runs without the metric are left out, saying so."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    if x not in X_AXES:
        raise ValueError(f"unknown x axis {x!r}; known: {', '.join(X_AXES)}")
    runs = [read_rows(d) for d in run_dirs]
    def key(run: RunRows) -> str:      # an accuracy asked of a regression run is its R², and back
        return metric.replace("accuracy", "r2") if run.score_key == "r2" else metric.replace("r2", "accuracy")
    data = [series(r.steps if metric == "batch_loss" else r.evals, key(r), x) for r in runs]
    if not any(xs for xs, _ in data):
        raise ValueError(f"none of the runs records {metric}")
    plt = pyplot()
    if plt is None:
        return None
    twins = Counter(r.algo for r in runs)
    fig, ax = plt.subplots(figsize=(8, 5))
    for run, xy in zip(runs, data):
        if not xy[0]:
            print(f"thermohil plot: {run.path} records no {metric}: left out", file=sys.stderr)
            continue
        label = run.label() + (f" [{run.path.name}]" if twins[run.algo] > 1 else "")
        fmt = "-" if metric == "batch_loss" else ".-"
        ax.plot(*xy, fmt, lw=0.6 if metric == "batch_loss" else 1.2, ms=4, label=label)
    name = metric.replace("_", " ")
    if metric.endswith(("accuracy", "r2")):
        kinds = {r.regression for r in runs}     # R² for regression runs
        score = "R²" if kinds == {True} else "accuracy / R²" if True in kinds else "accuracy"
        name = name.replace("accuracy", score).replace("r2", score)
    ax.set(xlabel=X_AXES[x], ylabel=name, title=f"{name} against {X_AXES[x].replace('cumulative ', '')}")
    _finish(ax, logx=x != "step", logy=metric.endswith("loss"))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.93, bottom=0.1)
    return fig


def overlay(run_dirs: Sequence[str | Path], out_path: str | Path, x: str = "step",
            metric: str = "test_loss") -> Path | None:
    """Draw ``overlay_figure`` into out_path (its folder created); None without matplotlib."""
    fig = overlay_figure(run_dirs, x, metric)
    if fig is None:
        return None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out
