"""host.data: the spiral and digits data sets, seeded minibatches, the registry."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from host import data
from host.data import Dataset, epoch_batches, minibatches, n_batches


def test_spiral_shapes_labels_and_balance():
    ds = data.spiral()
    assert isinstance(ds, Dataset) and ds.name == "spiral" and ds.n_classes == 2
    assert ds.X_train.shape == (500, 2) and ds.X_test.shape == (1000, 2)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype.kind == "i"
    assert np.bincount(ds.y_train).tolist() == [250, 250]
    assert np.bincount(ds.y_test).tolist() == [500, 500]


def test_spiral_is_deterministic_per_seed_and_test_set_independent_of_train_size():
    a, b, c = data.spiral(seed=1), data.spiral(seed=1), data.spiral(seed=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert not np.allclose(a.X_train, c.X_train)
    np.testing.assert_array_equal(data.spiral(n_train=100, seed=1).X_test, a.X_test)
    assert not np.allclose(a.X_train[:250], a.X_test[:250])    # train and test are fresh draws


def test_spiral_class_one_is_the_point_reflection_of_class_zero():
    ds = data.spiral(noise=0.0)
    rows = lambda A: A[np.lexsort(A.T)]
    for X, y in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        np.testing.assert_array_equal(rows(X[y == 1]), rows(-X[y == 0]))
    assert not np.allclose(rows(ds.X_train[ds.y_train == 1]), rows(ds.X_train[ds.y_train == 0]))


def test_spiral_rows_are_shuffled():
    y = data.spiral().y_train
    assert 0.3 < y[:50].mean() < 0.7                # a prefix holds both classes


def test_spiral_geometry_radius_turns_and_noise():
    clean, noisy = data.spiral(noise=0.0, a=2.0), data.spiral(noise=0.02, a=2.0)
    r = np.linalg.norm(clean.X_train, axis=1)
    assert r.max() <= 2.0 and r.max() > 1.9
    # on the arm the angle is 2π·turns·(r/a): a point at radius r sits at angle 4π r (turns=4, a=2)
    arm = clean.X_train[clean.y_train == 0]
    rr = np.linalg.norm(arm, axis=1)
    np.testing.assert_allclose(arm, rr[:, None] * np.c_[np.cos(4 * np.pi * rr), np.sin(4 * np.pi * rr)],
                               atol=1e-12)
    # t ~ U[0, 1) and r = a√t, so r/a has density 2s on [0, 1]: mean 2/3 (uniform-in-r gives 1/2)
    assert np.mean(rr / 2.0) == pytest.approx(2 / 3, abs=0.04)
    # the same seed draws the same t, so the difference is exactly the N(0, 0.02²) noise
    z = (noisy.X_train - clean.X_train) / 0.02
    assert abs(z.mean()) < 0.15 and abs(z.std() - 1) < 0.06


def test_spiral_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        data.spiral(n_train=501)


def test_digits_scaled_split_and_stratified():
    pytest.importorskip("sklearn")
    ds = data.digits()
    assert ds.name == "digits" and ds.n_classes == 10
    assert ds.X_train.shape[1] == 64 and len(ds.X_train) + len(ds.X_test) == 1797
    assert len(ds.X_test) == pytest.approx(0.25 * 1797, abs=10)
    for X in (ds.X_train, ds.X_test):
        assert X.min() == 0.0 and X.max() == 1.0
    assert sorted(set(ds.y_train)) == list(range(10)) and ds.y_train.dtype.kind == "i"
    total = np.bincount(ds.y_train) + np.bincount(ds.y_test)
    np.testing.assert_allclose(np.bincount(ds.y_test) / total, 0.25, atol=0.02)  # per class


def test_digits_split_is_seeded():
    pytest.importorskip("sklearn")
    a, b, c = data.digits(seed=0), data.digits(seed=0), data.digits(seed=1)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.X_test, c.X_test)
    assert len(data.digits(test_fraction=0.5).X_test) == pytest.approx(1797 / 2, abs=10)


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)           # makes `import sklearn…` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'thermohil\[data\]'"):
        data.digits()
    with pytest.raises(ImportError, match="thermohil"):
        data.load("digits")


def test_minibatches_cover_each_example_once_per_epoch():
    X = np.arange(23.0)[:, None] * np.ones((1, 2))
    y = np.arange(23)
    batches = list(minibatches(X, y, 5, np.random.default_rng(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3] and len(batches) == n_batches(23, 5)
    seen = np.concatenate([yb for _, yb in batches])
    np.testing.assert_array_equal(np.sort(seen), y)
    for Xb, yb in batches:
        np.testing.assert_array_equal(Xb[:, 0], yb)                # rows stay paired
    assert not np.array_equal(seen, y)                             # actually shuffled
    for bs in (1, 23, 100):
        got = np.concatenate([yb for _, yb in minibatches(X, y, bs, np.random.default_rng(1))])
        np.testing.assert_array_equal(np.sort(got), y)


def test_minibatches_drop_last_and_determinism():
    X, y = np.zeros((23, 1)), np.arange(23)
    dropped = list(minibatches(X, y, 5, np.random.default_rng(0), drop_last=True))
    assert [len(b) for _, b in dropped] == [5] * 4 and n_batches(23, 5, drop_last=True) == 4
    run = lambda seed: np.concatenate([b for _, b in minibatches(X, y, 5, np.random.default_rng(seed))])
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    with pytest.raises(ValueError):
        next(minibatches(X, y[:5], 5, np.random.default_rng(0)))


def test_epoch_batches_reshuffles_every_epoch():
    X, y = np.zeros((10, 1)), np.arange(10)
    out = list(epoch_batches(X, y, 4, np.random.default_rng(0), epochs=3))
    assert [e for e, _, _ in out] == [0] * 3 + [1] * 3 + [2] * 3
    orders = [np.concatenate([b for e, _, b in out if e == k]) for k in range(3)]
    for o in orders:
        np.testing.assert_array_equal(np.sort(o), y)
    assert not np.array_equal(orders[0], orders[1])


def test_load_registry():
    ds = data.load("spiral", n_train=40, n_test=20, seed=5)
    assert ds.X_train.shape == (40, 2) and ds.X_test.shape == (20, 2)
    with pytest.raises(ValueError, match="unknown data set 'mnist'; known: digits, spiral"):
        data.load("mnist")
