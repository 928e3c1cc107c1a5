"""A user's own data as a ``Dataset``: from arrays, or from anything a loader returns.

    ds = data.from_arrays(X, y)                         # split 75/25, seeded
    ds = data.from_arrays(X_tr, y_tr, X_te, y_te, loss="mse")
    ds = data.resolve("wine_data.py:load")               # what the CLI's --dataset does

Integer labels (an integer dtype) mean classification (cross-entropy; 'bce' for two classes on request), real
targets mean regression (MSE). Classification splits are stratified.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from host.data.dataset import Dataset
from host.data.digits import stratified_split

LOSS_NAMES = {"ce": "ce", "cross_entropy": "ce", "bce": "bce", "mse": "mse"}


def loss_name(loss: str) -> str:
    """The canonical name ('ce', 'bce', 'mse') of a loss name, or a clear error."""
    key = str(loss).lower()
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSS_NAMES)}")
    return LOSS_NAMES[key]


def _features(X: Any, what: str) -> np.ndarray:
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} must be numeric: {e}") from None
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{what} must have one row per example and at least one example, got shape {X.shape}")
    bad = ~np.all(np.isfinite(X.reshape(len(X), -1)), axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"{what} holds NaN or infinite values in {len(rows)} row(s), the first at rows "
                         f"{', '.join(map(str, rows[:5]))}")
    return X


def _targets(y: Any, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if len(y) != n:
        raise ValueError(f"{what} has {len(y)} rows but its inputs have {n}")
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric (integer labels or real targets), got dtype {y.dtype}")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        rows = np.flatnonzero(~np.all(np.isfinite(y.reshape(n, -1)), axis=1))
        raise ValueError(f"{what} holds NaN or infinite values in {len(rows)} row(s), the first at rows "
                         f"{', '.join(map(str, rows[:5]))}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]                       # one column (e.g. pandas' df[["label"]]): one target
    return y


def _is_labels(y: np.ndarray) -> bool:
    return y.ndim == 1 and (y.dtype.kind in "biu" or bool(np.all(y == np.round(y))))


def _infer_loss(y: np.ndarray) -> str:
    """'ce' for integer labels, 'mse' for real targets; targets that look like class labels in
    another form are refused rather than silently fitted as a regression."""
    if y.ndim == 1 and y.dtype.kind in "biu":
        return "ce"
    if y.ndim == 2 and y.shape[1] > 1 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        raise ValueError("the targets are one-hot rows: give the class indices (y.argmax(axis=1)), or "
                         "loss='mse' to fit them as real numbers")
    if y.ndim == 1 and _is_labels(y) and len(np.unique(y)) <= 20:
        values = ", ".join(f"{v:g}" for v in np.unique(y)[:6])
        raise ValueError(f"the targets are whole numbers stored as floats ({values}, …): say which task it "
                         "is — loss='ce' (class labels) or loss='mse' (regression)")
    return "mse"


def from_arrays(X_train: Any, y_train: Any, X_test: Any = None, y_test: Any = None, *,
                loss: str | None = None, test_fraction: float = 0.25, seed: int = 0,
                name: str = "arrays") -> Dataset:
    """A data set from arrays; without a test split, ``test_fraction`` of the rows (seeded).

    ``loss`` None infers it: integer labels → 'ce', real targets → 'mse'; whole numbers stored as
    floats and one-hot rows are ambiguous and refused without it. The split is seeded by
    ``seed`` (``host.train`` uses 0 for every run seed, so a seed sweep keeps one split).
    """
    X = _features(X_train, "X_train")
    y = _targets(y_train, len(X), "y_train")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither (then the rows are split)")
    loss = loss_name(loss) if loss is not None else _infer_loss(y)
    if X_test is None:
        rng = np.random.default_rng(seed)
        if loss == "mse":
            order = rng.permutation(len(X))
            k = int(round(test_fraction * len(X)))
            train, test = np.sort(order[k:]), np.sort(order[:k])
        else:
            train, test = stratified_split(np.asarray(y).reshape(len(y), -1)[:, 0], test_fraction, rng)
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"{len(X)} examples are too few to split {test_fraction:.0%} off for testing")
        X, Xt, y, yt = X[train], X[test], y[train], y[test]
    else:
        Xt = _features(X_test, "X_test")
        yt = _targets(y_test, len(Xt), "y_test")
        if Xt.shape[1:] != X.shape[1:]:
            raise ValueError(f"X_test rows have shape {Xt.shape[1:]}, X_train rows {X.shape[1:]}")
    if loss == "mse":
        return Dataset(X, y.astype(np.float64), Xt, yt.astype(np.float64), n_classes=0, name=name, loss=loss)
    for arr, what in ((y, "y_train"), (yt, "y_test")):
        if not _is_labels(arr):
            raise ValueError(f"{what}: {loss} needs integer class labels of shape (n,); for real "
                             "targets use loss='mse'")
    y, yt = y.astype(np.int64), yt.astype(np.int64)
    found = np.unique(np.concatenate([y, yt]))
    if found[0] < 0:
        raise ValueError(f"class labels must be 0, 1, 2, …; these are {', '.join(map(str, found[:6]))}"
                         f"{', …' if len(found) > 6 else ''}")
    n_classes = int(found[-1]) + 1
    empty = sorted(set(range(n_classes)) - set(np.unique(y).tolist()))
    if empty:
        raise ValueError(f"class label(s) {', '.join(map(str, empty[:6]))} have no training example (labels "
                         f"found: {', '.join(map(str, found[:8]))}): number the classes 0 … C−1")
    if loss == "bce" and n_classes > 2:
        raise ValueError(f"bce is for two classes (labels 0/1); these labels have {n_classes}: use 'ce'")
    return Dataset(X, y, Xt, yt, n_classes=n_classes, name=name, loss=loss)


def resolve(spec: Any, *, loss: str | None = None, seed: int = 0) -> Dataset:
    """A data set from a built-in name, ``file.py:loader`` / ``module:loader``, a ``Dataset``,
    or arrays: (X, y), (X_train, y_train, X_test, y_test) or a dict with those keys.

    A loader is called with no arguments and may return any of the above (a scikit-learn
    ``Bunch`` with ``data`` and ``target`` too).
    """
    from host.data import DATASETS
    if isinstance(spec, str):
        if spec in DATASETS:
            ds = DATASETS[spec]()
            return ds if loss is None else _with_loss(ds, loss)
        from host.user_code import is_reference, load_object
        if not is_reference(spec):
            raise ValueError(f"unknown data set {spec!r}; known: {', '.join(sorted(DATASETS))}, "
                             "or FILE.py:LOADER / MODULE:LOADER for your own")
        loader = load_object(spec, "data set")
        if not callable(loader):
            raise ValueError(f"data set {spec!r} is a {type(loader).__name__}, not a function returning the data")
        try:
            value = loader()
        except Exception as e:
            raise ValueError(f"data set {spec!r}: the loader raised {type(e).__name__}: {e}") from None
        if isinstance(value, str):
            raise ValueError(f"data set {spec!r}: the loader returned a string, not data")
        ds = resolve(value, loss=loss, seed=seed)
        if ds.name == "arrays":
            ds.name = spec       # the run's record names where the data came from
        return ds
    if isinstance(spec, Dataset):
        return spec if loss is None else _with_loss(spec, loss)
    if isinstance(spec, dict) or (hasattr(spec, "data") and hasattr(spec, "target")):
        get = spec.get if isinstance(spec, dict) else lambda k, d=None: getattr(spec, k, d)
        if get("X_train") is not None:
            return from_arrays(get("X_train"), get("y_train"), get("X_test"), get("y_test"), loss=loss,
                               seed=seed, name=get("name") or "arrays")
        X, y = get("X", get("data")), get("y", get("target"))
        if X is None or y is None:
            raise ValueError("a data dict needs X_train/y_train (and X_test/y_test), or X/y, or data/target")
        return from_arrays(X, y, loss=loss, seed=seed, name=get("name") or "arrays")
    if isinstance(spec, (tuple, list)) and len(spec) in (2, 4):
        return from_arrays(*spec, loss=loss, seed=seed)
    raise ValueError(f"cannot make a data set of a {type(spec).__name__}: give a name, FILE.py:LOADER, "
                     "a host.data.Dataset, (X, y) or (X_train, y_train, X_test, y_test)")


def _with_loss(ds: Dataset, loss: str) -> Dataset:
    """The data set under another loss (a checked view, e.g. digits' labels under 'mse' are not)."""
    loss = loss_name(loss)
    if loss == ds.loss:
        return ds
    if loss == "mse" or ds.loss == "mse":
        raise ValueError(f"data set {ds.name!r} is for {ds.loss!r}; it cannot be trained with {loss!r} "
                         "(regression and classification targets differ)")
    if loss == "bce" and ds.n_classes > 2:
        raise ValueError(f"bce is for two classes; {ds.name!r} has {ds.n_classes}: use 'ce'")
    return Dataset(ds.X_train, ds.y_train, ds.X_test, ds.y_test, ds.n_classes, ds.name, loss)
