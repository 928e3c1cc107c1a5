"""scikit-learn's bundled 8×8 handwritten digits (1797 images, no download) — the
small stand-in for the TNGD paper's MNIST. scikit-learn is an optional extra (``[data]``)."""
from __future__ import annotations

import numpy as np

from host.data.dataset import Dataset

INSTALL_HINT = "pip install 'thermohil[data]'"


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(f"the digits data set ships with scikit-learn, which is not installed: "
                          f"{INSTALL_HINT}  (or pip install scikit-learn)") from e
    d = load_digits()
    return np.asarray(d.data, dtype=np.float64), np.asarray(d.target, dtype=np.int64)


def stratified_split(y: np.ndarray, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (train, test): round(test_fraction·n_c) test examples from each class c,
    chosen by ``rng``; each array sorted so the split is the only thing the seed decides."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """64 pixel features scaled from 0..16 to [0, 1]; labels 0..9; stratified, seeded split."""
    X, y = _load_digits()
    X /= 16.0
    train, test = stratified_split(y, test_fraction, np.random.default_rng(seed))
    return Dataset(X[train], y[train], X[test], y[test], n_classes=10, name="digits")
