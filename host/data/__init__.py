"""The experiments' data sets (docs/experiments.md), a user's own, and seeded minibatching.

    ds = data.load("spiral")                       # or data.spiral(seed=3), data.digits()
    ds = data.from_arrays(X, y)                    # your own arrays (a seeded 75/25 split)
    for Xb, yb in data.minibatches(ds.X_train, ds.y_train, 25, rng): ...
"""
from __future__ import annotations

from typing import Any, Callable

from host.data.arrays import from_arrays, loss_name, resolve
from host.data.dataset import Dataset, epoch_batches, minibatches, n_batches
from host.data.digits import digits
from host.data.spiral import spiral

DATASETS: dict[str, Callable[..., Dataset]] = {"spiral": spiral, "digits": digits}


def load(name: str, **kwargs: Any) -> Dataset:
    """The data set registered as ``name``, built with ``kwargs`` (e.g. ``seed``)."""
    try:
        make = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    return make(**kwargs)


__all__ = ["Dataset", "DATASETS", "load", "from_arrays", "resolve", "loss_name", "spiral", "digits", "minibatches", "epoch_batches",
           "n_batches"]
