"""Finite-difference helpers shared by the host.nn tests (float64 central differences)."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pytest


def central_diff(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """∂f/∂x by central differences, shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    f0 = np.asarray(f(x))
    D = np.empty(f0.shape + x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        D[(..., *i)] = (np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * eps)
    return D


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / scale)


@pytest.fixture
def fd():
    return central_diff


@pytest.fixture
def close():
    """assert-style check: relative error (in the 2-norm) below tol."""
    def check(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> None:
        err = rel_err(a, b)
        assert err < tol, f"relative error {err:.2e} ≥ {tol:.0e}"
    return check
