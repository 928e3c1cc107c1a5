"""The two-arm spiral of Leimkuhler, Matthews & Vlaar (2019), the seed paper's task.

As in the authors' generator: per arm draw t ~ U[0, 1) independently for each point; class 0
sits at r(t)·(cos φ(t), sin φ(t)) with r = a·√t and φ = 2π·turns·√t, and class 1 is its point
reflection −(class 0) using the SAME t; then i.i.d. N(0, noise²) is added to every coordinate.
So the radius runs from 0 to a in ``turns`` full turns; r = a√t has density ∝ r, and since the
arc length of this Archimedean spiral grows ∝ r dr, points lie roughly uniformly along each arm.
"""
from __future__ import annotations

import numpy as np

from host.data.dataset import Dataset


def spiral_points(n: int, turns: float, noise: float, a: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points (n/2 per class) and labels 0/1, rows in a random order (one permutation drawn
    last from ``rng``) so that any prefix of the set holds both classes."""
    if n < 2 or n % 2:
        raise ValueError(f"the spiral needs an even number of points ≥ 2 (two equal arms), got {n}")
    half = n // 2
    s = np.sqrt(rng.random(half))                  # √t, t ~ U[0, 1)
    phi = 2.0 * np.pi * turns * s
    arm = a * s[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    X = np.concatenate([arm, -arm]) + noise * rng.standard_normal((n, 2))
    y = np.repeat(np.array([0, 1], dtype=np.int64), half)
    order = rng.permutation(n)
    return X[order], y[order]


def spiral(n_train: int = 500, n_test: int = 1000, turns: float = 4, noise: float = 0.02,
           a: float = 2.0, seed: int = 1) -> Dataset:
    """Train and test sets drawn independently (train from one child stream of ``seed``, test
    from another, so changing n_test never changes the training set). Labels 0/1 for BCE."""
    if noise < 0:
        raise ValueError(f"noise must be ≥ 0, got {noise}")
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    X_train, y_train = spiral_points(n_train, turns, noise, a, train_rng)
    X_test, y_test = spiral_points(n_test, turns, noise, a, test_rng)
    return Dataset(X_train, y_train, X_test, y_test, n_classes=2, name="spiral", loss="bce")
