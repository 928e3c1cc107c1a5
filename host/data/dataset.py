"""The Dataset container and seeded minibatching.

Every shuffle takes an explicit ``np.random.Generator`` so a run is reproducible from its seed
and a resumed run can continue the same stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass
class Dataset:
    """A train/test split. X rows are examples (float64); y are integer class labels, or real
    targets (n,) / (n, k) for regression (``n_classes`` 0).

    ``loss`` is the loss the data set is meant for ('ce', 'bce' or 'mse'): what a run trains
    with unless it is told otherwise; by default 'mse' without classes, else 'ce'.
    """
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    loss: str | None = None

    def __post_init__(self) -> None:
        if self.loss is None:               # regression sets have no classes
            self.loss = "mse" if self.n_classes == 0 else "ce"

    def n_outputs(self, loss: str | None = None) -> int:
        """Network outputs the data set needs under ``loss``: one logit per class (ce), one
        logit (bce), one column per target (mse)."""
        loss = loss or self.loss
        if loss == "bce":
            return 1
        if loss == "mse":
            return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])
        return self.n_classes

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.X_train.shape}, test={self.X_test.shape}, "
                f"n_classes={self.n_classes}, loss={self.loss!r})")


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Minibatches per epoch (for progress bars and schedules)."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def minibatches(X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
                drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch: a fresh permutation from ``rng``, cut into batches of ``batch_size``.

    Each example appears exactly once; the last batch is smaller unless ``drop_last``.
    """
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]


def epoch_batches(X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator,
                  epochs: int, drop_last: bool = False) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(epoch, X_batch, y_batch)`` over ``epochs`` epochs, reshuffling each epoch."""
    for epoch in range(epochs):
        for Xb, yb in minibatches(X, y, batch_size, rng, drop_last):
            yield epoch, Xb, yb
