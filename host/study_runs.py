"""The runs of a study: an arm (algorithm, hyperparameters, device profile) × a seed is a
``Job``, trained by ``run_job`` into a directory named by its settings, so a finished run is
reused by any later study that asks for the same, and an unfinished one resumes from its
checkpoint. The same ``run_job`` runs a job here (``run_jobs``) or on a cluster's worker
(``host.farm``), so a study's numbers do not depend on where its runs ran.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.errors import DeviceError
from host.run_dir import checkpoint_meta, write_atomic
from host.training import DeviceFailed, TrainConfig, TrainingError, train


@dataclass(frozen=True)
class Arm:
    label: str
    algo: str
    hyper: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    """Hardware profile of the device arms (None: the study's --device as given)."""
    edits: dict[str, Any] = field(default_factory=dict)
    """Changes to that profile (``{"dac_bits_coupling": 10}``): the run gets a profile file of
    its own, written next to the runs, as a user would write one."""
    calibrate: bool = True


def profile_file(base: str, edits: dict[str, Any], root: Path) -> Path:
    """A profile file: the built-in ``base`` with ``edits`` applied (the study's own chips)."""
    from device.analog.profiles import SECTIONS, get_profile
    prof = get_profile(base)
    tag = "-".join(f"{k}{v}" for k, v in sorted(edits.items()))
    name = f"{base}-{tag}"
    lines = [f'name = "{name}"', f'description = "{prof.description} — with {tag}"']
    for section, keys in SECTIONS.items():
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {_toml_value(edits.get(k, getattr(prof, k)))}" for k in keys]
    lines += ["\n[sources]", f'edits = "{base} with {tag} (a study\'s variant)"']
    path = root / "profiles" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")     # runs of one arm may start it at once
    return path


def _toml_value(value: Any) -> str:
    """A TOML literal for the values profiles hold (numbers, strings, lists of strings)."""
    if isinstance(value, (tuple, list, str)):
        return json.dumps(list(value) if not isinstance(value, str) else value)
    return repr(value)


def arm_device(arm: Arm, device: str, root: Path) -> str:
    """The study's device URL with the arm's profile (a file of its own when edited)."""
    if arm.profile is None:
        return device
    profile = str(profile_file(arm.profile, arm.edits, root).resolve()) if arm.edits else arm.profile
    return f"{device}{'&' if '?' in device else '?'}profile={profile}"


def run_dir_of(root: Path, arm: Arm, seed: int, epochs: int, batch: int, eval_every: int) -> Path:
    key = [arm.algo, arm.hyper, epochs, batch, eval_every]
    if arm.profile is not None or not arm.calibrate:  # (the older studies' runs keep their keys)
        key += [arm.profile, arm.edits, arm.calibrate]
    key = json.dumps(key, sort_keys=True)
    return root / f"{arm.algo}-{hashlib.sha1(key.encode()).hexdigest()[:10]}-s{seed}"


@dataclass(frozen=True)
class Job:
    """One training run of a study: an arm, a seed and the study's settings (what a worker of a
    cluster needs to run it; paths absolute so any worker's directory will do)."""
    arm: Arm
    seed: int
    root: str
    dataset: str
    epochs: int
    batch: int
    eval_every: int
    device: str

    @property
    def needs_device(self) -> bool:
        from host.optim import ALGORITHMS
        return ALGORITHMS[self.arm.algo].needs_device(self.arm.hyper)

    @property
    def out(self) -> Path:
        return run_dir_of(Path(self.root), self.arm, self.seed, self.epochs, self.batch, self.eval_every)

    @property
    def done(self) -> bool:
        return (self.out / "summary.json").exists()


def run_job(job: Job, device: str | None = None) -> dict:
    """Train the job's run unless it is done; a run a dead worker left with a checkpoint is
    resumed from it (its steps since the checkpoint are dropped, none is counted twice).
    ``device`` replaces the study's device URL (a board a cluster node owns). The summary."""
    out, done = job.out, job.out / "summary.json"
    if done.exists():
        return json.loads(done.read_text())
    arm = job.arm
    ckpt = out / "checkpoint.npz"
    resume = ckpt.exists() and (out / "config.json").exists()
    if resume and _checkpoint_epochs(ckpt) >= job.epochs:      # died between the last checkpoint
        summary = _summary_from_metrics(out)                    # and the summary: nothing to train
        write_atomic(done, json.dumps(summary))
        return summary
    url = device or job.device
    # the run's chip is calibrated by the run itself, its trims kept in its own directory: which
    # run of a study calibrates first (its order, the cluster's timing, the user's cache) must
    # not change any run's numbers; a run started afresh calibrates afresh
    calibration = out / "calibration"
    if not resume:
        shutil.rmtree(calibration, ignore_errors=True)
    cfg = TrainConfig(algo=arm.algo, dataset=job.dataset, epochs=job.epochs, batch_size=job.batch, seed=job.seed,
                      out=str(out), hyper=dict(arm.hyper), progress=False, eval_every=job.eval_every,
                      device=arm_device(arm, url, Path(job.root)) if job.needs_device else None,
                      calibrate=arm.calibrate, calibration_dir=str(calibration), resume=resume)
    t0 = time.perf_counter()
    try:
        summary = train(cfg)
    except (DeviceFailed, DeviceError) as e:     # not a result: the run stays unfinished, to be resumed
        cause = e.__cause__ if isinstance(e, DeviceFailed) and e.__cause__ is not None else e
        when = "" if isinstance(e, DeviceFailed) else " before training"
        raise DeviceFailed(f"{arm.label} seed {job.seed}: the device failed{when}: {type(cause).__name__}: "
                           f"{cause} — run the study again: the run resumes from its checkpoint, if it "
                           "reached one") from e
    except TrainingError as e:   # a diverged chain is a result of the study, kept as such
        summary = {"diverged": str(e)}
        print(f"  {arm.label:<22} seed {job.seed}: diverged ({time.perf_counter() - t0:.0f} s): {e}",
              file=sys.stderr, flush=True)
    else:
        print(f"  {arm.label:<22} seed {job.seed}: test loss {summary['final_test_loss']:.4f}, "
              f"accuracy {summary['test_accuracy']:.2%} ({time.perf_counter() - t0:.0f} s"
              f"{', resumed' if resume else ''})", file=sys.stderr, flush=True)
    write_atomic(done, json.dumps(summary))     # a summary is the run's "done": never half written
    return summary


def _checkpoint_epochs(ckpt: Path) -> int:
    return int(checkpoint_meta(ckpt)["epoch"]) + 1


def _summary_from_metrics(out: Path) -> dict:
    last = [r for r in map(json.loads, open(out / "metrics.jsonl")) if "test_loss" in r][-1]
    return {"iterations": last["step"], "final_train_loss": last["train_loss"],
            "final_test_loss": last["test_loss"],
            **{k: last[k] for k in ("test_accuracy", "test_r2") if k in last},
            "out": str(out), "rebuilt_from": "metrics.jsonl"}


def evaluation_rows(job: Job) -> list[dict]:
    rows = [r for r in map(json.loads, open(job.out / "metrics.jsonl")) if "test_loss" in r]
    if "diverged" in json.loads((job.out / "summary.json").read_text()):
        rows.append({"diverged": True})
    return rows


class StudyError(RuntimeError):
    """Runs of a study could not finish (a device failed, a worker kept dying): the others are
    kept, and the same command resumes the unfinished ones."""


def run_jobs(jobs: list[Job], ray_address: str | None = None, devices: int = 2) -> None:
    """Train every job not yet done: in turn here, or across a Ray cluster (``ray_address``:
    its address, or 'local' for a cluster of this machine with ``devices`` emulated devices).
    A run whose device fails is left unfinished and the others go on; then StudyError names it."""
    todo = [j for j in jobs if not j.done]
    if not todo:
        return
    if ray_address is not None:
        from host.farm import run_on_ray
        run_on_ray(todo, address=None if ray_address == "local" else ray_address, devices=devices)
        return
    failed = []
    for job in todo:
        try:
            run_job(job)
        except DeviceFailed as e:
            print(f"  {e}", file=sys.stderr, flush=True)
            failed.append(str(e))
    if failed:
        raise StudyError(f"{len(failed)} of {len(todo)} runs did not finish (their device failed); the "
                         "others are kept and the same command resumes these: " + "; ".join(failed))
