"""The studies of docs/experiments.md, one command each:

    python -m host.experiments tngd-compare      [--seeds 3] [--epochs 5] [--out docs/figures]
    python -m host.experiments tngd-t-sweep
    python -m host.experiments tngd-delay-sweep
    python -m host.experiments tngd-kappa-sweep
    python -m host.experiments spiral-langevin   [--seeds 5] [--epochs 4000] [--only "LABEL,..."]
    python -m host.experiments spiral-step-sweep [--seeds 3] [--epochs 4000] [--only "METHOD,..."]
    python -m host.experiments tngd-hardware     [--seeds 3] [--epochs 5]
    python -m host.experiments tngd-dac-bits     [--seeds 3] [--epochs 5]
    python -m host.experiments langevin-hardware [--seeds 3] [--epochs 400]
    python -m host.experiments tngd-direction    [--seeds 1] [--epochs 1]

Each study trains every arm for every seed with ``host.training.train`` (device arms on a private
``spawn://`` emulator: the ideal profile, or the arm's own), evaluates every ``--eval-every`` steps, and writes
``OUT/STUDY.json`` (per-arm mean ± sd curves), ``OUT/STUDY.png`` (test loss against iterations and
against projected hardware time) and ``OUT/STUDY.md`` (the table of final numbers). Runs are kept
under ``--runs`` (default runs/experiments) and reused when a later study has the same arm, seed and settings.
A step-size sweep instead trains each method at its default step × 2^k and writes the table of
final test accuracies (which methods keep working over the widest range) and its figure. A run
that diverges is a result: it is recorded as such and counts as chance accuracy. A run whose
device fails (it died, stopped answering, was taken over) is not: it stays unfinished, the
other runs go on, the command ends with an error naming it, and the same command resumes it
from its checkpoint. The runs themselves (``Job``, ``run_job``) are ``host/study_runs.py``.

With ``--ray [ADDRESS]`` every arm × seed is a Ray task (digital arms) or a call to a device-
owning actor (device arms) across a cluster (``host/farm.py``); the results are the same runs,
so the same numbers. A worker that dies mid-run costs that run's steps since its checkpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from host.plots import pyplot
from host.study_runs import Arm, Job, StudyError, evaluation_rows, run_dir_of, run_jobs


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
LALA_PER_LAYER = {"gammas": "1,0.1"}   # LaLa with distinct per-layer values: more friction on layer 0
STUDIES["spiral-langevin"] = ("spiral (Leimkuhler et al. 2019 setup): test accuracy, Langevin family vs SGD and Adam", [
    Arm("SGD lr=0.05", "sgd", {"lr": 0.05}),
    Arm("Adam lr=0.005", "adam", {"lr": 0.005}),          # the authors' Adam setting
    Arm("Langevin", "langevin", {}),
    Arm("LOL", "lol", {}),
    Arm("LaLa", "lala", {}),                              # one (γ, τ) for all layers: = Langevin
    Arm("LaLa γ=1/0.1", "lala", LALA_PER_LAYER),
    Arm("AdLaLa", "adlala", {}),                          # the authors' spiral settings
    Arm("AdLaLa (device)", "adlala-device", {}),
])
SETTINGS: dict[str, dict[str, Any]] = {"spiral-langevin": SPIRAL}

# Non-ideal hardware: TNGD and TNGD-Adam at the paper's settings on each profile, with the host's
# mitigation (calibration, drift checks, the factor upload) and without it.
RAW = {"drift_check": 0}
#: The published SPU's converters and tolerances (as assumed in device/profiles/spu-8.toml) on a
#: chip with TNGD's low-rank coupling, which the SPU itself does not have.
SPU_CONVERTERS = {"dac_bits_coupling": 4, "dac_bits_bias": 12, "gain_sigma": 0.05, "cap_sigma": 0.05}
PAPER_ADAM = {"lr": 1e-3, "lam": 1.0, "t": 50.0}
STUDIES["tngd-hardware"] = ("TNGD on non-ideal hardware: test loss per profile, with and without mitigation", [
    Arm("TNGD ideal", "tngd", PAPER, profile="ideal"),
    Arm("TNGD realistic", "tngd", PAPER, profile="realistic"),
    Arm("TNGD realistic uncalibrated", "tngd", {**PAPER, **RAW}, profile="realistic", calibrate=False),
    Arm("TNGD realistic (J H) upload", "tngd", {**PAPER, "upload": "hessian"}, profile="realistic"),
    Arm("TNGD realistic unmitigated", "tngd", {**PAPER, **RAW, "upload": "hessian"},
        profile="realistic", calibrate=False),
    Arm("TNGD realistic unmitigated norm-scale", "tngd",
        {**PAPER, **RAW, "upload": "hessian", "scale": "norm"}, profile="realistic", calibrate=False),
    Arm("TNGD tngd-asic", "tngd", PAPER, profile="tngd-asic"),
    Arm("TNGD spu-8 converters", "tngd", PAPER, profile="realistic", edits=SPU_CONVERTERS),
    Arm("TNGD-Adam ideal", "tngd-adam", PAPER_ADAM, profile="ideal"),
    Arm("TNGD-Adam realistic", "tngd-adam", PAPER_ADAM, profile="realistic"),
    Arm("TNGD-Adam tngd-asic", "tngd-adam", PAPER_ADAM, profile="tngd-asic"),
])
# How far the device's direction is from the exact (G + λI)⁻¹∇ℓ, per profile: with t = 800 τ0 ≫
# 1/λ the ideal device relaxes fully, so what is left is the hardware's (one seed, one epoch).
FIDELITY = {**PAPER, "t": 800.0, "fidelity_every": 2}
STUDIES["tngd-direction"] = ("TNGD's direction against the exact natural gradient, per profile (t = 800 τ0)", [
    Arm("ideal", "tngd", FIDELITY, profile="ideal"),
    Arm("realistic", "tngd", FIDELITY, profile="realistic"),
    Arm("realistic uncalibrated", "tngd", {**FIDELITY, **RAW}, profile="realistic", calibrate=False),
    Arm("realistic (J H) upload", "tngd", {**FIDELITY, "upload": "hessian"}, profile="realistic"),
    Arm("tngd-asic", "tngd", FIDELITY, profile="tngd-asic"),
    Arm("spu-8 converters", "tngd", FIDELITY, profile="realistic", edits=SPU_CONVERTERS),
    *[Arm(f"realistic DAC {b} bits", "tngd", FIDELITY, profile="realistic",
          edits={"dac_bits_coupling": b, "dac_bits_bias": b}) for b in (8, 10, 14, 16)],
])
SETTINGS["tngd-direction"] = {"seeds": 1, "epochs": 1}
STUDIES["langevin-hardware"] = ("AdLaLa with its momenta in device cells, per hardware profile (spiral)", [
    Arm(f"AdLaLa (device) {p}", "adlala-device", {}, profile=p)
    for p in ("ideal", "realistic", "tngd-asic")
])
SETTINGS["langevin-hardware"] = {**SPIRAL, "epochs": 400, "eval_every": 40, "seeds": 3}
DAC_BITS = (8, 10, 12, 14, 16)
STUDIES["tngd-dac-bits"] = ("TNGD's test loss against DAC resolution (coupling and bias DACs)", [
    *[Arm(f"{base} DAC {b} bits", "tngd", PAPER, profile=base,
          edits={"dac_bits_coupling": b, "dac_bits_bias": b})
      for base in ("ideal", "realistic") for b in DAC_BITS],
])


# ------------------------------------------------------------------------------ step-size sweeps
@dataclass(frozen=True)
class Sweep:
    """One method at every value of its step-size parameter (``default`` × 2^k). At the default
    the parameter is left unset when ``spelled_at_default`` is false, so the run is the same
    (cached) run as the spiral-langevin study's arm."""
    label: str
    algo: str
    param: str
    default: float
    hyper: dict[str, Any] = field(default_factory=dict)
    spelled_at_default: bool = True

    def arm(self, value: float) -> Arm:
        hyper = dict(self.hyper)
        if value != self.default or self.spelled_at_default:
            hyper[self.param] = value
        return Arm(f"{self.label} {self.param}={value:g}", self.algo, hyper)

    def values(self, octaves: tuple[int, ...]) -> list[float]:
        return [self.default * 2.0**k for k in octaves]


OCTAVES = tuple(range(-3, 4))   # ×1/8 … ×8 of each method's default
WORKING = 0.85                  # final test accuracy that counts as "still working"
SWEEPS: dict[str, tuple[str, list[Sweep]]] = {
    "spiral-step-sweep": ("spiral: final test accuracy against the step size (h, or the learning rate)", [
        Sweep("SGD", "sgd", "lr", 0.05),
        Sweep("Adam", "adam", "lr", 0.005),
        Sweep("Langevin", "langevin", "h", 0.25, spelled_at_default=False),
        Sweep("LOL", "lol", "h", 0.25, spelled_at_default=False),
        Sweep("LaLa γ=1/0.1", "lala", "h", 0.25, LALA_PER_LAYER, spelled_at_default=False),
        Sweep("AdLaLa", "adlala", "h", 0.25, spelled_at_default=False),
    ]),
}
SETTINGS["spiral-step-sweep"] = {**SPIRAL, "seeds": 3}


def working_range(values: list[float], means: list[float], threshold: float = WORKING) -> tuple[float, float] | None:
    """The widest run of consecutive grid values whose mean accuracy is ≥ threshold."""
    best: tuple[int, int] | None = None
    start = None
    for i, m in enumerate([*means, -1.0]):
        if m >= threshold and start is None:
            start = i
        elif m < threshold and start is not None:
            if best is None or i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return None if best is None else (values[best[0]], values[best[1]])


def run_sweep(name: str, *, seeds: int, epochs: int, batch: int, eval_every: int, out: Path,
              runs_dir: Path, dataset: str, device: str = "spawn://", only: str | None = None,
              ray_address: str | None = None, devices: int = 2) -> dict:
    """Final test accuracy of every method at every step size; a diverged run counts as chance
    (0.5) and is reported as such."""
    title, sweeps = SWEEPS[name]
    study = name
    if only:
        sweeps = _select(sweeps, only, "method")
        name = f"{name}-only-{hashlib.sha1(only.encode()).hexdigest()[:6]}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {title} — {len(sweeps)} methods x {len(OCTAVES)} step sizes x {seeds} seeds, "
          f"{epochs} epochs", file=sys.stderr)
    def job(arm: Arm, seed: int) -> Job:
        return Job(arm, seed, str(runs_dir.resolve()), dataset, epochs, batch, eval_every, device)
    run_jobs([job(sw.arm(v), seed) for sw in sweeps for v in sw.values(OCTAVES) for seed in range(seeds)],
             ray_address, devices)
    methods = {}
    for sw in sweeps:
        cells = []
        for v in sw.values(OCTAVES):
            arm = sw.arm(v)
            finals, diverged = [], 0
            for seed in range(seeds):
                rows = evaluation_rows(job(arm, seed))
                failed = rows[-1].get("diverged", False)
                diverged += failed
                finals.append(0.5 if failed else rows[-1]["test_accuracy"])
            cells.append({"value": v, "mean": float(np.mean(finals)),
                          "sd": float(np.std(finals, ddof=1)) if seeds > 1 else 0.0,
                          "diverged": diverged, "finals": finals})
        rng = working_range([c["value"] for c in cells], [c["mean"] for c in cells])
        methods[sw.label] = {"algo": sw.algo, "param": sw.param, "default": sw.default, "hyper": sw.hyper,
                             "cells": cells, "working_range": rng}
    result = {"study": name, "title": title, "dataset": dataset, "seeds": seeds, "epochs": epochs,
              "batch_size": batch, "octaves": list(OCTAVES), "working_threshold": WORKING, "methods": methods}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    table = _sweep_table(methods, seeds)
    (out / f"{name}.md").write_text(_heading(title, study, seeds, epochs, batch, eval_every, only) + table + "\n")
    _plot_sweep(out / f"{name}.png", title, methods)
    print(table)
    return result


def _sweep_table(methods: dict[str, dict], n_seeds: int) -> str:
    head = " | ".join(f"×{2.0**k:g}" for k in OCTAVES)
    lines = [f"| method (default step) | {head} | working range (accuracy ≥ {WORKING:.0%}) | mean over the grid |",
             "|---|" + "---|" * len(OCTAVES) + "---|---|"]
    for label, m in methods.items():
        cells = []
        for c in m["cells"]:
            text = f"{c['mean']:.3f} ± {c['sd']:.3f}" if n_seeds > 1 else f"{c['mean']:.3f}"
            if c["diverged"]:
                text += f" ({c['diverged']} div.)"
            cells.append(f"**{text}**" if c["mean"] >= WORKING else text)
        rng = m["working_range"]
        span = "none" if rng is None else f"{rng[0]:g}–{rng[1]:g} (×{rng[1] / rng[0]:g})"
        grid_mean = float(np.mean([c["mean"] for c in m["cells"]]))
        lines.append(f"| {label} ({m['param']} = {m['default']:g}) | {' | '.join(cells)} | {span} | {grid_mean:.3f} |")
    spread = f"mean ± sd over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    lines.append(f"\nfinal test accuracy, {spread}; column = multiple of the method's default step; "
                 f"bold: ≥ {WORKING:.0%}; a diverged run counts as 0.5")
    return "\n".join(lines)


def _plot_sweep(path: Path, title: str, methods: dict[str, dict]) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, m in methods.items():
        x = [c["value"] / m["default"] for c in m["cells"]]
        ax.errorbar(x, [c["mean"] for c in m["cells"]], yerr=[c["sd"] for c in m["cells"]], marker="o",
                    capsize=3, label=f"{label} ({m['param']}₀ = {m['default']:g})")
    ax.axhline(WORKING, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("step size / method's default")
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def direction_errors(run_dir: Path) -> list[float]:
    """The logged ‖d − d*‖/‖d*‖ of a run (TNGD with fidelity_every > 0), step by step."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [r["direction_error"] for r in map(json.loads, open(path)) if "direction_error" in r]


def aggregate(runs: list[list[dict]]) -> dict[str, list[float]]:
    """Mean and sd across seeds of each evaluated quantity, at the common evaluation steps."""
    # one row per evaluated step (runs made before the trainer stopped evaluating an epoch end
    # twice hold such steps twice), divergence markers left out
    runs = [list({row["step"]: row for row in r if "diverged" not in row}.values()) for r in runs]
    n = min(len(r) for r in runs)
    out: dict[str, list[float]] = {"step": [float(r["step"]) for r in runs[0][:n]]}
    for key in ("train_loss", "test_loss", "test_accuracy", "projected_hw_time_s", "wall_time_s"):
        vals = np.array([[row[key] for row in r[:n]] for r in runs])
        out[key] = vals.mean(0).tolist()
        out[key + "_sd"] = (vals.std(0, ddof=1) if len(runs) > 1 else np.zeros(n)).tolist()
    return out


def _plot(path: Path, title: str, curves: dict[str, dict], metric: str = "test_loss") -> None:
    plt = pyplot()
    if plt is None:
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


def _heading(title: str, study: str, seeds: int, epochs: int, batch: int, eval_every: int,
             only: str | None) -> str:
    """The table's title and the command that reproduces it (from the settings, not argv)."""
    cmd = (f"python -m host.experiments {study} --seeds {seeds} --epochs {epochs} --batch-size {batch} "
           f"--eval-every {eval_every}" + (f' --only "{only}"' if only else ""))
    return f"# {title}\n\n`{cmd}`\n\n"


def _table(curves: dict[str, dict], n_seeds: int) -> str:
    fidelity = any("direction_error" in c for c in curves.values())
    extra = (" mean ‖d − d*‖/‖d*‖ |", "---|") if fidelity else ("", "")
    lines = [f"| arm | final train loss | final test loss | test accuracy | projected hw time (s) |{extra[0]}",
             "|---|---|---|---|---|" + extra[1]]
    for label, c in curves.items():
        cell = lambda k, f: f"{c[k][-1]:{f}} ± {c[k + '_sd'][-1]:{f}}"  # noqa: E731
        direction = f" {c['direction_error']:.3g} |" if "direction_error" in c else " — |" if fidelity else ""
        lines.append(f"| {label} | {cell('train_loss', '.4f')} | {cell('test_loss', '.4f')} | "
                     f"{cell('test_accuracy', '.4f')} | {cell('projected_hw_time_s', '.3g')} |{direction}")
    lines.append(f"\nmean ± sd over {n_seeds} seeds" if n_seeds > 1 else "\none seed")
    return "\n".join(lines)


def _select(items: list, only: str | None, what: str) -> list:
    """The items whose ``label`` is named in ``only`` (comma-separated); unknown labels refused."""
    if not only:
        return items
    wanted = [x.strip() for x in only.split(",") if x.strip()]
    labels = [i.label for i in items]
    unknown = [w for w in wanted if w not in labels]
    if unknown or not wanted:
        raise ValueError(f"--only: unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"this study has: {', '.join(labels)}")
    return [i for i in items if i.label in wanted]


def run_study(name: str, *, seeds: int, epochs: int, batch: int, eval_every: int, out: Path,
              runs_dir: Path, dataset: str = "digits", device: str = "spawn://",
              only: str | None = None, ray_address: str | None = None, devices: int = 2) -> dict:
    title, arms = STUDIES[name]
    study = name
    metric = SETTINGS.get(name, {}).get("metric", "test_loss")
    if only:  # run a subset (e.g. in a second process); the full study then reuses the runs
        arms = _select(arms, only, "arm")
        name = f"{name}-only-{hashlib.sha1(only.encode()).hexdigest()[:6]}"
    out.mkdir(parents=True, exist_ok=True)
    print(f"{name}: {title} — {len(arms)} arms x {seeds} seeds, {epochs} epochs", file=sys.stderr)
    def job(arm: Arm, seed: int) -> Job:
        return Job(arm, seed, str(runs_dir.resolve()), dataset, epochs, batch, eval_every, device)
    run_jobs([job(arm, s) for arm in arms for s in range(seeds)], ray_address, devices)
    curves = {}
    for arm in arms:
        runs = [evaluation_rows(job(arm, s)) for s in range(seeds)]
        curves[arm.label] = {"algo": arm.algo, "hyper": arm.hyper, **aggregate(runs)}
        errors = [direction_errors(run_dir_of(runs_dir, arm, s, epochs, batch, eval_every))
                  for s in range(seeds)]
        if any(errors):
            curves[arm.label]["direction_error"] = float(np.mean([e for run in errors for e in run]))
    result = {"study": name, "title": title, "dataset": dataset, "seeds": seeds, "epochs": epochs,
              "batch_size": batch, "eval_every": eval_every, "curves": curves}
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(_heading(title, study, seeds, epochs, batch, eval_every, only)
                                    + _table(curves, seeds) + "\n")
    _plot(out / f"{name}.png", title, curves, metric)
    print(_table(curves, seeds))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.experiments", description=__doc__.replace("``", "`"),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", choices=sorted([*STUDIES, *SWEEPS]))
    p.add_argument("--seeds", type=int, default=None,
                   help="default 3 (spiral-langevin: 5, spiral-step-sweep: 3)")
    p.add_argument("--epochs", type=int, default=None, help="default 5 (spiral studies: 4000)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (spiral studies: 25)")
    p.add_argument("--eval-every", type=int, default=None, help="default 10 steps (spiral studies: 400)")
    p.add_argument("--device", default="spawn://", help="device URL for the device arms")
    p.add_argument("--out", default="docs/figures",
                   help="where OUT/STUDY.{md,json,png} go (default docs/figures: regenerates the "
                        "committed figures; with --only the name is STUDY-only-HASH)")
    p.add_argument("--runs", default="runs/experiments", help="the individual training runs")
    p.add_argument("--only", default=None, help="comma-separated arm (sweeps: method) labels to run")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run every arm × seed across a Ray cluster: its ADDRESS (e.g. ray://head:10001 "
                        "or auto), or none for a local cluster of this machine (pip install "
                        "'thermohil[ray]'; docs/cluster.md)")
    p.add_argument("--devices", type=int, default=None,
                   help="with --ray and no ADDRESS: emulated devices of the local cluster (default 2); "
                        "a cluster at an ADDRESS has the thermo_device resources its nodes declare")
    a = p.parse_args(argv)
    if a.devices is not None and (a.ray is None or a.ray != "local"):
        p.error("--devices sizes the local cluster of --ray (without an ADDRESS); a cluster at an ADDRESS "
                "has the devices its nodes declare, and a study without --ray runs in turn here")
    if a.devices is not None and a.devices < 1:
        p.error("--devices must be >= 1")
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
    run = run_sweep if a.study in SWEEPS else run_study
    try:
        run(a.study, seeds=a.seeds, epochs=a.epochs, batch=a.batch_size, eval_every=a.eval_every,
            out=Path(a.out), runs_dir=Path(a.runs), device=a.device, dataset=s["dataset"], only=a.only,
            ray_address=a.ray, devices=a.devices or 2)
    except (ValueError, ImportError) as e:     # e.g. an unknown --only label: one line, nothing run
        print(f"python -m host.experiments: error: {e}", file=sys.stderr)
        return 1
    except StudyError as e:                    # some runs unfinished: the rest are kept
        print(f"python -m host.experiments: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("python -m host.experiments: interrupted; finished runs are kept, and the same command "
              "resumes the others from their checkpoints", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
