"""The studies of docs/experiments.md, one command each:

    python -m host.experiments tngd-compare      [--seeds 3] [--epochs 5] [--out docs/figures]
    python -m host.experiments tngd-t-sweep
    python -m host.experiments tngd-delay-sweep
    python -m host.experiments tngd-kappa-sweep

Each study trains every arm for every seed with ``host.training.train`` (device arms on a private
``spawn://`` emulator, ideal profile), evaluates every ``--eval-every`` steps, and writes
``OUT/STUDY.json`` (per-arm mean ± sd curves), ``OUT/STUDY.png`` (test loss against iterations and
against projected hardware time) and ``OUT/STUDY.md`` (the table of final numbers). Runs are kept
under ``--runs`` (default runs/experiments) and reused when a later study has the same arm, seed and settings.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.training import TrainConfig, train


@dataclass(frozen=True)
class Arm:
    label: str
    algo: str
    hyper: dict[str, Any] = field(default_factory=dict)


# The paper's TNGD settings (Donatella et al. 2024): η = 0.01, t = 50τ, λ = 0.01.
PAPER = {"lr": 0.01, "lam": 0.01, "t": 50.0}
NGD_EXACT = Arm("NGD (exact)", "ngd", {"lr": 0.01, "lam": 0.01, "solver": "exact"})

STUDIES: dict[str, tuple[str, list[Arm]]] = {
    "tngd-compare": ("TNGD vs Adam vs exact NGD on digits (paper settings)", [
        Arm("Adam lr=1e-3", "adam", {"lr": 1e-3}),
        Arm("Adam lr=1e-2", "adam", {"lr": 1e-2}),
        NGD_EXACT,
        Arm("TNGD", "tngd", PAPER),
        Arm("TNGD-Adam lr=1e-3", "tngd-adam", {"lr": 1e-3, "lam": 1.0, "t": 50.0}),  # paper: λ = 1
        Arm("NGD (exact) lr=0.1", "ngd", {"lr": 0.1, "lam": 0.01, "solver": "exact"}),
        Arm("TNGD lr=0.1", "tngd", {**PAPER, "lr": 0.1}),
    ]),
    "tngd-t-sweep": ("analog time per iteration t ∈ {5, 10, 20, 50} τ0", [
        *[Arm(f"TNGD t={t:g}", "tngd", {**PAPER, "t": float(t)}) for t in (5, 10, 20, 50)],
        NGD_EXACT,
    ]),
    "tngd-delay-sweep": ("delay t_d ∈ {0, 10, 50} τ0 at t = 20 τ0", [
        Arm(f"TNGD t_d={td:g}", "tngd", {**PAPER, "t": 20.0, **({"t_delay": float(td)} if td else {})})
        for td in (0, 10, 50)
    ]),
    "tngd-kappa-sweep": ("device temperature κ ∈ {0, 1e-3, 1e-2} at t = 50 τ0", [
        Arm(f"TNGD κ={k:g}", "tngd", {**PAPER, **({"kappa": float(k)} if k else {})})
        for k in (0.0, 1e-3, 1e-2)
    ]),
}


# Per-study settings that differ from the digits defaults (--seeds/--epochs/... override them).
SPIRAL = {"dataset": "spiral", "batch": 25, "epochs": 4000, "eval_every": 400, "seeds": 5,
          "metric": "test_accuracy"}
STUDIES["spiral-langevin"] = ("spiral (DESIGN §7): test accuracy, Langevin family vs SGD and Adam", [
    Arm("SGD lr=0.05", "sgd", {"lr": 0.05}),
    Arm("Adam lr=0.005", "adam", {"lr": 0.005}),          # the authors' Adam setting
    Arm("Langevin", "langevin", {}),
    Arm("LOL", "lol", {}),
    Arm("LaLa", "lala", {}),
    Arm("AdLaLa", "adlala", {}),                          # the authors' spiral settings
    Arm("AdLaLa (device)", "adlala-device", {}),
])
SETTINGS: dict[str, dict[str, Any]] = {"spiral-langevin": SPIRAL}


def _run_dir(root: Path, arm: Arm, seed: int, epochs: int, batch: int, eval_every: int) -> Path:
    key = json.dumps([arm.algo, arm.hyper, epochs, batch, eval_every], sort_keys=True)
    return root / f"{arm.algo}-{hashlib.sha1(key.encode()).hexdigest()[:10]}-s{seed}"


def run_arm(arm: Arm, seed: int, *, root: Path, dataset: str, epochs: int, batch: int,
            eval_every: int, device: str) -> list[dict]:
    """The evaluation rows of one training run (reused from disk when already done)."""
    out = _run_dir(root, arm, seed, epochs, batch, eval_every)
    done = out / "summary.json"
    if not done.exists():
        from host.optim import ALGORITHMS
        cfg = TrainConfig(algo=arm.algo, dataset=dataset, epochs=epochs, batch_size=batch, seed=seed,
                          out=str(out), hyper=dict(arm.hyper), progress=False, eval_every=eval_every,
                          device=device if ALGORITHMS[arm.algo].uses_device else None)
        t0 = time.perf_counter()
        summary = train(cfg)
        print(f"  {arm.label:<22} seed {seed}: test loss {summary['final_test_loss']:.4f}, "
              f"accuracy {summary['test_accuracy']:.2%} ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)
        done.write_text(json.dumps(summary))
    return [r for r in map(json.loads, open(out / "metrics.jsonl")) if "test_loss" in r]


def aggregate(runs: list[list[dict]]) -> dict[str, list[float]]:
    """Mean and sd across seeds of each evaluated quantity, at the common evaluation steps."""
    n = min(len(r) for r in runs)
    out: dict[str, list[float]] = {"step": [float(r["step"]) for r in runs[0][:n]]}
    for key in ("train_loss", "test_loss", "test_accuracy", "projected_hw_time_s", "wall_time_s"):
        vals = np.array([[row[key] for row in r[:n]] for r in runs])
        out[key] = vals.mean(0).tolist()
        out[key + "_sd"] = (vals.std(0, ddof=1) if len(runs) > 1 else np.zeros(n)).tolist()
    return out


def _plot(path: Path, title: str, curves: dict[str, dict], metric: str = "test_loss") -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'thermohil[plots]'): no figure", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, c in curves.items():
        m, s = np.array(c[metric]), np.array(c[metric + "_sd"])
        for ax, x in ((axes[0], np.array(c["step"])), (axes[1], np.array(c["projected_hw_time_s"]))):
            ax.plot(x, m, label=label)
            ax.fill_between(x, m - s, m + s, alpha=0.2)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("projected hardware time (s)")
    axes[1].set_xscale("symlog", linthresh=1e-3)
    for ax in axes:
        ax.set_ylabel(metric.replace("_", " "))
        if metric.endswith("loss"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(curves: dict[str, dict], n_seeds: int) -> str:
    lines = [f"| arm | final train loss | final test loss | test accuracy | projected hw time (s) |",
             "|---|---|---|---|---|"]
    for label, c in curves.items():
        cell = lambda k, f: f"{c[k][-1]:{f}} ± {c[k + '_sd'][-1]:{f}}"  # noqa: E731
        lines.append(f"| {label} | {cell('train_loss', '.4f')} | {cell('test_loss', '.4f')} | "
                     f"{cell('test_accuracy', '.4f')} | {cell('projected_hw_time_s', '.3g')} |")
    lines.append(f"\nmean ± sd over {n_seeds} seeds")
    return "\n".join(lines)


def run_study(name: str, *, seeds: int, epochs: int, batch: int, eval_every: int, out: Path,
              runs_dir: Path, dataset: str = "digits", device: str = "spawn://",
              only: str | None = None) -> dict:
    title, arms = STUDIES[name]
    metric = SETTINGS.get(name, {}).get("metric", "test_loss")
    if only:  # run a subset (e.g. in a second process); the full study then reuses the runs
        wanted = {s.strip() for s in only.split(",")}
        arms = [a for a in arms if a.label in wanted]
        name = f"{name}-only-{hashlib.sha1(only.encode()).hexdigest()[:6]}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {title} — {len(arms)} arms x {seeds} seeds, {epochs} epochs", file=sys.stderr)
    curves = {}
    for arm in arms:
        runs = [run_arm(arm, s, root=runs_dir, dataset=dataset, epochs=epochs, batch=batch,
                        eval_every=eval_every, device=device) for s in range(seeds)]
        curves[arm.label] = {"algo": arm.algo, "hyper": arm.hyper, **aggregate(runs)}
    result = {"study": name, "title": title, "dataset": dataset, "seeds": seeds, "epochs": epochs,
              "batch_size": batch, "eval_every": eval_every, "curves": curves}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(_table(curves, seeds) + "\n")
    _plot(out / f"{name}.png", title, curves, metric)
    print(_table(curves, seeds))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("--seeds", type=int, default=None, help="default 3 (spiral: 5)")
    p.add_argument("--epochs", type=int, default=None, help="default 5 (spiral: 4000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (spiral: 25)")
    p.add_argument("--eval-every", type=int, default=None, help="default 10 steps (spiral: 400)")
    p.add_argument("--device", default="spawn://", help="device URL for the device arms")
    p.add_argument("--out", default="docs/figures", help="where the figure, table and JSON go")
    p.add_argument("--runs", default="runs/experiments", help="the individual training runs")
    p.add_argument("--only", default=None, help="comma-separated arm labels to run")
    a = p.parse_args(argv)
    s = {"dataset": "digits", "seeds": 3, "epochs": 5, "batch": 32, "eval_every": 10,
         **SETTINGS.get(a.study, {})}
    for key, arg in (("seeds", "seeds"), ("epochs", "epochs"), ("batch", "batch_size"),
                     ("eval_every", "eval_every")):
        if getattr(a, arg) is None:
            setattr(a, arg, s[key])
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)  # as `thermohil train`: digital baselines timed without BLAS thread contention
    if a.seeds < 1 or a.epochs < 1 or a.batch_size < 1 or a.eval_every < 0:
        p.error("--seeds, --epochs and --batch-size must be >= 1, --eval-every >= 0")
    run_study(a.study, seeds=a.seeds, epochs=a.epochs, batch=a.batch_size, eval_every=a.eval_every,
              out=Path(a.out), runs_dir=Path(a.runs), device=a.device, dataset=s["dataset"], only=a.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
