"""What a run directory records, so that the directory alone says what ran — and gives the
trained model back.

``config.json`` holds the options as given (what ``--resume`` compares) and ``resolved``: every
hyperparameter's value, the data set, the model and its size, the device actually used (URL,
cells, rank, profile, seed, serial) and the library version. ``load_run(DIR)`` rebuilds the
model from that record (the built-in MLP from its sizes, a torch model from its factory, or
the module you pass) and loads the last checkpoint's parameters into it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def library_version() -> str:
    try:
        return metadata.version("thermohil")
    except metadata.PackageNotFoundError:      # run from a source tree that is not installed
        return "unknown (not installed)"


def describe(value: Any) -> Any:
    """A JSON-able description of an option: names stay names, objects become their kind."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, (int, float, str)) for v in value):
        return list(value)
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    name = getattr(value, "name", None)
    if isinstance(name, str) and hasattr(value, "X_train"):
        return f"Dataset {name}"
    if isinstance(value, (tuple, list)):
        return f"arrays ({', '.join('x'.join(map(str, np.shape(v))) for v in value)})"
    if callable(value) and hasattr(value, "__qualname__"):          # a function: by its name only
        return f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    if type(value).__repr__ is not object.__repr__:                  # schedules, torch modules: with
        settings = {k: v for k, v in vars(value).items()             # their settings (HuberLoss(delta=…))
                    if not k.startswith("_") and k != "training" and isinstance(v, (int, float, str, bool))} \
            if hasattr(value, "__dict__") else {}
        text = " ".join(repr(value).split())[:300]
        return text + (f" {settings}" if settings and "(" in text and text.endswith("()") else "")
    return f"{type(value).__module__}.{type(value).__qualname__}"


def slug(text: str) -> str:
    """A directory-name part for a data set's name (``path/wine.py:load`` → ``wine-load``)."""
    text = text.rsplit("/", 1)[-1].replace(".py:", "-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "data"


def device_record(info: dict) -> dict:
    emu = info.get("emulator") or {}
    return {"url": info.get("url"), "protocol": info.get("protocol"), "firmware": info.get("firmware"),
            "serial": info.get("serial"), "cells": info.get("n_cells"), "max_rank": info.get("max_rank"),
            "dac_bits": info.get("dac_bits"), "adc_bits": info.get("adc_bits"),
            **({"profile": emu.get("profile"), "seed": emu.get("seed"), "integrator": emu.get("integrator")}
               if emu else {"emulated": False})}


def fingerprint(ds: Any) -> str:
    """SHA-1 of the split's arrays: two runs on the same data say so, whatever it was called."""
    h = hashlib.sha1()
    for a in (ds.X_train, ds.y_train, ds.X_test, ds.y_test):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def data_record(ds: Any) -> dict:
    return {"name": ds.name, "sha1": fingerprint(ds), "n_train": int(len(ds.X_train)),
            "n_test": int(len(ds.X_test)), "input_shape": list(ds.X_train.shape[1:]),
            "n_classes": int(ds.n_classes), "loss": ds.loss, "split_seed": 0}


def resolved_hyper(spec: Any, given: dict) -> dict:
    """Every hyperparameter of the algorithm with the value the run used (None: a partition's
    'each entry's own')."""
    return {k: describe(given.get(k, default)) for k, (_t, default, _h) in spec.params.items()}


@dataclass
class Run:
    """A finished (or checkpointed) run: its record, its model with the trained θ in it."""
    path: Path
    config: dict
    model: Any
    theta: np.ndarray
    step: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The network's raw outputs (logits, or predictions for regression)."""
        return np.asarray(self.model.apply(self.theta, X))


def load_run(path: str | Path, model: Any = None) -> Run:
    """The run in ``path`` with its last checkpoint loaded into a rebuilt model.

    ``model`` is needed only for a torch model given as an object (not a factory file): pass a
    module of the same architecture and the parameters are loaded into it.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise ValueError(f"{path} holds no config.json: not a run directory")
    ckpt = path / "checkpoint.npz"
    if not ckpt.exists():
        raise ValueError(f"{path} holds no checkpoint.npz (the run ended before its first epoch)")
    config = json.loads((path / "config.json").read_text())
    rec = (config.get("resolved") or {}).get("model") or {}
    if model is None:
        if rec.get("kind") == "mlp":
            from host.nn import MLP
            model = MLP(rec["sizes"], activation=rec.get("activation", "relu"))
        elif rec.get("factory"):
            model = _from_factory(path, rec)
        else:
            raise ValueError(f"{path}: the model was a {rec.get('class', 'model')} given as an object; "
                             "pass one of the same architecture: load_run(path, model=...)")
    elif not hasattr(model, "linearize"):
        from host.torch import TorchModel
        model = TorchModel(model)
    _check_architecture(path, rec, model)
    with np.load(ckpt) as z:
        theta = np.array(z["theta"]) if "theta" in z.files else None
        meta = json.loads(str(z["meta"]))
    if theta is None or theta.shape != (model.n_params,):
        got = None if theta is None else theta.shape
        raise ValueError(f"{path}: the checkpoint holds parameters of shape {got}, the model has "
                         f"{model.n_params}")
    if hasattr(model, "load"):
        model.load(theta)               # a torch module holds the trained weights too
    return Run(path, config, model, theta, int(meta.get("step", 0)))


def _from_factory(path: Path, rec: dict) -> Any:
    """The model rebuilt by its factory (the file as recorded, from any directory), called with
    the recorded input and output sizes: no data needs loading."""
    from host.problem import build_model
    ref = rec["factory"]
    if rec.get("factory_file"):
        ref = f"{rec['factory_file']}:{ref.rpartition(':')[2]}"
    n_in = rec.get("n_inputs")
    n_out = rec.get("n_outputs")
    if n_in is None or n_out is None:
        raise ValueError(f"{path}: the record does not say the model's input and output sizes; pass "
                         "the model: load_run(path, model=...)")
    shape = tuple(n_in) if isinstance(n_in, list) else n_in
    from host.data import Dataset
    probe = Dataset(np.zeros((1, *((shape,) if isinstance(shape, int) else shape))), np.zeros(1, int),
                    np.zeros((1, 1)), np.zeros(1, int), n_classes=int(n_out), name="probe")
    model, _ = build_model(ref, probe, int(n_out), None, "relu")
    return model


def _check_architecture(path: Path, rec: dict, model: Any) -> None:
    """The model must be the one the run trained: same parameter count and, for a torch model,
    the same printed architecture (a factory file edited since the run would load its weights
    into another network)."""
    if rec.get("n_params") is not None and rec["n_params"] != model.n_params:
        raise ValueError(f"{path}: the run trained {rec['n_params']} parameters, this model has {model.n_params}")
    recorded, module = rec.get("architecture"), getattr(model, "module", None)
    if recorded and module is not None and repr(module)[:4000] != recorded:
        raise ValueError(f"{path}: this model's architecture differs from the one the run trained "
                         f"(recorded in config.json under resolved.model.architecture): "
                         f"{' '.join(repr(module).split())[:120]} … vs {' '.join(recorded.split())[:120]} …")
