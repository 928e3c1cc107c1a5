"""A training run's directory: its name, its config.json, and what a resume must match.

The directory is the run's record (see ``host.run_record`` for what it holds and how a model
comes back from it). Its default name says the algorithm, the data and the seed, with a short
tag of every setting that differs from the defaults, so another run never lands in it and the
same command finds it again. A resume is refused unless the data (by fingerprint), the model
(by architecture) and every option that shapes the run are the ones it continues.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from host.optim import ALGORITHMS
from host.run_record import data_record, describe, fingerprint, library_version, resolved_hyper, slug

#: What a resumed run must share with the run it continues, and each key's value in a
#: config.json written before the key existed.
RESUME_KEYS = {"algo": None, "dataset": None, "seed": None, "batch_size": None, "hidden": None,
               "activation": "relu", "hyper": {}, "model": None, "loss": None, "posterior_every": 0,
               "posterior_burn_in": None}
#: What a resume compares in ``resolved``: the data's fingerprint and the model's architecture.
RESUME_RESOLVED = (("data", "sha1"), ("model", "n_params"), ("model", "architecture"))
FIGURES = ("loss.png", "langevin.png")


def default_out(cfg: Any, problem: Any) -> Path:
    """runs/ALGO-DATA-sSEED[-TAG], TAG a hash of the settings that differ from the defaults
    (hyperparameters, the model's architecture, the loss, widths, batch, posterior options)."""
    data = problem.data.name if problem.data.name != "arrays" else f"arrays-{fingerprint(problem.data)[:8]}"
    settings = {k: describe(getattr(cfg, k)) for k in ("hyper", "loss", "hidden", "posterior_every",
                                                       "posterior_burn_in")
                if getattr(cfg, k) not in (None, {}, 0)}
    if cfg.model is not None:
        settings["model"] = problem.record.get("architecture") or describe(cfg.model)
    if cfg.batch_size not in (None, problem.defaults["batch"]):
        settings["batch_size"] = cfg.batch_size
    if cfg.activation != "relu":
        settings["activation"] = cfg.activation
    tag = "-" + hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6] if settings else ""
    return Path("runs") / f"{cfg.algo}-{slug(data)}-s{cfg.seed}{tag}"


def config_record(cfg: Any, problem: Any) -> dict:
    """config.json: the options as given (objects by their description) and what they resolved to."""
    given = {f.name: describe(getattr(cfg, f.name)) for f in fields(cfg) if f.name != "on_evaluation"}
    if not isinstance(cfg.dataset, str):
        given["dataset"] = problem.data.name if problem.data.name != "arrays" else given["dataset"]
    given["loss"] = problem.loss
    spec = ALGORITHMS[cfg.algo]
    given["resolved"] = {"hyper": resolved_hyper(spec, cfg.hyper), "data": data_record(problem.data),
                         "model": problem.record, "n_outputs": problem.n_outputs,
                         "algorithm": spec.doc or cfg.algo, "device": None,
                         "posterior_burn_in": (cfg.posterior_burn_in if cfg.posterior_burn_in is not None
                                               else cfg.epochs // 2) if cfg.posterior_every else None,
                         "library_version": library_version()}
    return given


def check_resume(cfg: Any, out: Path, config: dict) -> tuple[dict, dict]:
    """The saved config and checkpoint meta of the run ``cfg`` continues, or why it cannot."""
    ckpt = out / "checkpoint.npz"
    if not ckpt.exists():
        raise ValueError(f"--resume: {out} holds no checkpoint.npz (no earlier run there, or it "
                         "stopped before its first epoch ended)")
    saved = json.loads((out / "config.json").read_text())
    for key, before in RESUME_KEYS.items():
        was = saved.get(key, config[key] if key in ("model", "loss") else before)
        if was != config[key]:
            raise ValueError(f"--resume: {key} was {was!r} in {out}, now {config[key]!r}")
    for section, key in RESUME_RESOLVED:
        was = (saved.get("resolved") or {}).get(section, {}).get(key)
        now = config["resolved"][section].get(key)
        if was is not None and now is not None and was != now:
            what = {"sha1": "the data differ (another fingerprint)", "n_params": "the model's size differs",
                    "architecture": "the model's architecture differs"}[key]
            raise ValueError(f"--resume: {what} from the run in {out}")
    meta = checkpoint_meta(ckpt)
    done = meta["epoch"] + 1
    if done >= cfg.epochs:
        raise ValueError(f"--resume: {out} already holds {done} epoch(s); ask for more with --epochs")
    return saved, meta


def prepare(out: Path, config: dict, saved: dict | None, meta: dict | None, device: dict | None) -> None:
    """Make ``out`` this run's: a fresh run clears an earlier one's files; a resumed one drops
    rows after its checkpoint and records this session's device."""
    out.mkdir(parents=True, exist_ok=True)
    if saved is None:
        if (out / "metrics.jsonl").exists():
            print(f"thermohil: note: {out} held an earlier run; it is replaced (--resume continues "
                  "a run instead)", file=sys.stderr)
        write_atomic(out / "config.json", json.dumps(config, indent=1))
        for name in ("checkpoint.npz", "model.pt", "summary.json", *FIGURES):   # none of them is ours
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / "samples", ignore_errors=True)
        return
    assert meta is not None
    trim_metrics(out / "metrics.jsonl", meta["step"])
    saved["epochs"] = config["epochs"]          # the run now aims at the new epoch count
    resolved = saved.setdefault("resolved", {})
    resolved.setdefault("sessions", [{"from_step": 0, "device": resolved.get("device")}])
    resolved["sessions"].append({"from_step": meta["step"], "device": device})
    write_atomic(out / "config.json", json.dumps(saved, indent=1))


def checkpoint_meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(str(z["meta"]))


def trim_metrics(path: Path, step: int) -> None:
    """Drop rows written after the checkpoint's step (a run interrupted mid-epoch) and a last
    line a kill cut short, so a resumed run logs no step twice."""
    if not path.exists():
        return
    rows = path.read_text().splitlines(keepends=True)
    keep = []
    for line in rows:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("step", 0) <= step:
            keep.append(line if line.endswith("\n") else line + "\n")
    if keep != rows:
        write_atomic(path, "".join(keep))


def write_atomic(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole or its old contents, never part (a temporary of this
    process's own, so writers in several processes never share one)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_module(out: Path, model: Any, theta: np.ndarray) -> None:
    """A torch model's trained weights as DIR/model.pt (``module.load_state_dict(torch.load(...))``),
    so the run is usable with torch alone; the module holds them too."""
    if hasattr(model, "module") and hasattr(model, "load"):
        import torch
        model.load(theta)
        tmp = out / "model.pt.tmp"
        torch.save(model.module.state_dict(), tmp)
        os.replace(tmp, out / "model.pt")


class MetricsLog:
    """metrics.jsonl, one row per line, flushed each row. Rows wait in memory until ``open()``:
    the directory is prepared (an earlier run in it replaced) only once the run has shown it
    can take a step."""

    def __init__(self, path: Path, *, append: bool, prepare: Any) -> None:
        self.path, self.append, self.prepare = path, append, prepare
        self._file: Any = None
        self._pending: list[dict] = []

    def write(self, row: dict) -> None:
        if self._file is None:
            self._pending.append(row)
            return
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def open(self) -> None:
        if self._file is not None:
            return
        self.prepare()
        self._file = open(self.path, "a" if self.append else "w")
        for row in self._pending:
            self.write(row)
        self._pending = []

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

