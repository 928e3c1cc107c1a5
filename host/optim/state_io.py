"""An optimizer state as flat named arrays (a checkpoint) and back.

The state is a tree of tuples, lists and dicts whose leaves are arrays and numbers; a leaf's
name is its path ('opt/0/p'). Restoring fills a freshly initialised state of the same
structure, so a checkpoint of another model or optimizer is refused, not misread.
"""
from __future__ import annotations

from typing import Any

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
        raise ValueError(f"the checkpoint was written by another optimizer: it has {extra[:4]} this one "
                         f"does not, and lacks {missing[:4]}")
    return _fill(template, arrays, prefix)


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
