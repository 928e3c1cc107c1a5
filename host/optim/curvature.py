"""The mini-batch curvature an update may ask for, computed once per step and cut per group.

G = Jᵀ H J is the generalised Gauss–Newton matrix of the batch (see host.nn.curvature). An
objective offers some of ``ggn_sqrt`` (U with G = UᵀU), ``ggn_factors`` (J, H), ``ggn_dense``
and ``ggn_matvec``; ``Curvature`` gives every form it can derive from those, memoised for the
step, and ``block(slice)`` the view of one parameter group: its columns of U and J, its
diagonal block of G.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def sqrt_from_factors(J: np.ndarray, H: np.ndarray) -> np.ndarray:
    """U = (Q√w)ᵀJ from H = Q diag(w) Qᵀ (H is PSD; its zero and round-off-negative eigenvalues
    are dropped)."""
    w, Q = np.linalg.eigh(0.5 * (H + H.T))
    keep = w > 1e-12 * max(float(np.max(np.abs(w), initial=0.0)), 1e-300)
    return (Q[:, keep] * np.sqrt(w[keep])).T @ J


class Curvature:
    def __init__(self, objective: Any, theta: np.ndarray, X: Any, y: Any,
                 cells: slice | None = None, memo: dict | None = None) -> None:
        self.objective, self.theta, self.X, self.y = objective, theta, X, y
        self.cells = cells if cells is not None else slice(0, np.size(theta))
        self._memo = memo if memo is not None else {}
        self._whole = cells is None

    def block(self, cells: slice) -> "Curvature":
        """The curvature of one parameter group (cells relative to this view)."""
        start = self.cells.start + cells.start
        return Curvature(self.objective, self.theta, self.X, self.y,
                         slice(start, start + (cells.stop - cells.start)), self._memo)

    def _need(self, method: str) -> Any:
        fn = getattr(self.objective, method, None)
        if fn is None:
            raise ValueError(f"this update needs the GGN of the loss; the objective "
                             f"{type(self.objective).__name__} has no {method}")
        return fn

    def _full(self, key: str) -> Any:
        if key not in self._memo:
            obj, args = self.objective, (self.theta, self.X, self.y)
            if key == "sqrt":
                if hasattr(obj, "ggn_sqrt"):
                    self._memo[key] = obj.ggn_sqrt(*args)
                elif hasattr(obj, "ggn_factors"):
                    self._memo[key] = sqrt_from_factors(*self._full("factors"))
                else:
                    self._need("ggn_sqrt")
            elif key == "factors":
                self._memo[key] = self._need("ggn_factors")(*args)
            else:
                self._memo[key] = self._need("ggn_dense")(*args)
        return self._memo[key]

    def sqrt(self) -> np.ndarray:
        """U_g (r × n_g): this group's columns of U, G = UᵀU."""
        return self._full("sqrt")[:, self.cells]

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(J_g, H): this group's columns of J, with G_gg = J_gᵀ H J_g."""
        J, H = self._full("factors")
        return J[:, self.cells], H

    def dense(self) -> np.ndarray:
        """G_gg, a fresh array (the caller may add λ to its diagonal)."""
        return np.array(self._full("dense")[self.cells, self.cells])

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """G_gg v, without forming G."""
        fn = self._need("ggn_matvec")
        if self._whole:
            return fn(self.theta, self.X, self.y, v)
        full = np.zeros(np.size(self.theta))
        full[self.cells] = v
        return fn(self.theta, self.X, self.y, full)[self.cells]
