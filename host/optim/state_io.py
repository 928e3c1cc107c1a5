"""An optimizer state as flat named arrays (a checkpoint) and back.

The state is a tree of tuples, lists and dicts whose leaves are arrays and numbers; a leaf's
name is its path ('opt/0/p'). Restoring fills a freshly initialised state of the same
structure, so a checkpoint of another model or optimizer is refused, not misread.

    save(path, state, meta={"epoch": 3})          # a TrainState: θ, step, rng, the transform's state
    state, meta = load(path, opt.init(theta0, rng, groups=model.groups))
"""
from __future__ import annotations

from typing import Any

import dataclasses
import json
import os
from pathlib import Path

import numpy as np


def flatten(tree: Any, prefix: str = "opt") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}/{k}"))
    elif isinstance(tree, (tuple, list)):
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}/{i}"))
    else:
        out[prefix] = np.asarray(tree)
    return out


def restore(template: Any, arrays: dict[str, np.ndarray], prefix: str = "opt") -> Any:
    """``template`` with every leaf replaced by the array of the same path in ``arrays``, which
    must hold exactly the template's leaves under ``prefix`` (no more, no fewer)."""
    mine = set(flatten(template, prefix))
    theirs = {k for k in arrays if k == prefix or k.startswith(prefix + "/")}
    if mine != theirs:
        extra, missing = sorted(theirs - mine), sorted(mine - theirs)
        said = [f"it holds {', '.join(extra[:4])}, which this optimizer has not"] if extra else []
        said += [f"it lacks {', '.join(missing[:4])}"] if missing else []
        raise ValueError(f"the checkpoint was written by another optimizer: {'; '.join(said)}")
    return _fill(template, arrays, prefix)


def save(path: str | Path, state: Any, meta: dict | None = None) -> None:
    """Write a TrainState (θ, step, the generator, the transform's state) and ``meta`` (JSON)
    to ``path`` (.npz), atomically: a crash mid-write leaves the previous file."""
    path = Path(path)
    arrays = {"theta": state.theta, "rng": state.rng, **flatten(state.opt)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps({**(meta or {}), "step": state.step})), **arrays)
    os.replace(tmp, path)


def load(path: str | Path, fresh: Any) -> tuple[Any, dict]:
    """The TrainState saved in ``path``, restored into the structure of ``fresh`` (the
    optimizer's own ``init``), and the saved ``meta``."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files}
    theta = arrays["theta"].copy()
    if theta.shape != fresh.theta.shape:
        raise ValueError(f"{path} holds {theta.size} parameters, the model has {fresh.theta.size}")
    state = dataclasses.replace(fresh, theta=theta, step=int(meta["step"]), rng=arrays["rng"].copy(),
                                opt=restore(fresh.opt, arrays))
    return state, meta


def _fill(template: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    if isinstance(template, dict):
        return {k: _fill(v, arrays, f"{prefix}/{k}") for k, v in template.items()}
    if isinstance(template, (tuple, list)):
        return type(template)(_fill(v, arrays, f"{prefix}/{i}") for i, v in enumerate(template))
    saved = np.asarray(arrays[prefix])
    if isinstance(template, np.ndarray):
        if saved.shape != template.shape:
            raise ValueError(f"the checkpoint's {prefix!r} has shape {saved.shape}, this optimizer's "
                             f"{template.shape}: it was written for another model")
        return saved.astype(template.dtype, copy=True)
    return type(template)(saved.item()) if not isinstance(template, bool) else bool(saved.item())
