"""Losses on raw network outputs, with the output-space derivatives the GGN is built from.

Every loss has the same small interface, on outputs ``out`` (B, K) and labels ``y``:

- ``value(out, y)``: the MEAN loss over the batch (what optimizers minimise);
- ``grad(out, y)``: its gradient w.r.t. ``out``, (B, K) — it includes the 1/B;
- ``hessian(out, y)``: per-example Hessians H_b = ∂²ℓ_b/∂f_b², (B, K, K) — of the per-example
  loss ℓ_b, NOT divided by B (the curvature helpers fold the 1/B in), so the GGN of the mean loss
  is (1/B) Σ_b J_bᵀ H_b J_b;
- ``hessian_sqrt(out, y)``: factors L_b (B, K, k) with H_b = L_b L_bᵀ — the square-root form that
  gives G = UᵀU for Woodbury solves and low-rank device uploads;
- ``accuracy(out, y)``: fraction correct (for MSE, R²; see there).

All of them stay finite for logits of any size (log-sum-exp, softplus via log1p(exp(−|z|))).
"""
from __future__ import annotations

import numpy as np


def _outputs(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"outputs must have shape (B, K), got {out.shape}")
    return out


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    """Integer class labels of shape (n,), accepting (n, 1) and integral floats."""
    y = np.asarray(y)
    if y.size != n or (y.ndim > 1 and y.shape[-1] != 1) or y.ndim > 2:
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    y = y.reshape(n)
    yi = y.astype(np.intp)
    if not np.array_equal(yi, y):
        raise ValueError("class labels must be integers")
    return yi


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log softmax, stable for any logit size (shift by the row maximum)."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) without overflow: only exp(−|z|) is ever evaluated."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + eᶻ) = max(z, 0) + log1p(e^{−|z|})."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


class SoftmaxCrossEntropy:
    """Multiclass cross-entropy on logits (B, C) with integer labels 0..C−1.

    H_b = diag(p) − ppᵀ (p = softmax); its factor L_b = diag(√p) − p√pᵀ is C×C (uses Σp = 1).
    """
    name = "softmax_cross_entropy"

    def value(self, out: np.ndarray, y: np.ndarray) -> float:
        out = _outputs(out)
        y = self._check(out, y)
        return float(-np.mean(log_softmax(out)[np.arange(len(y)), y]))

    def grad(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = _outputs(out)
        y = self._check(out, y)
        g = np.exp(log_softmax(out))
        g[np.arange(len(y)), y] -= 1.0
        return g / len(y)

    def hessian(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self._probs(out, y)
        return np.einsum("bi,ij->bij", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]

    def hessian_sqrt(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self._probs(out, y)
        s = np.sqrt(p)
        return np.einsum("bi,ij->bij", s, np.eye(p.shape[1])) - p[:, :, None] * s[:, None, :]

    def accuracy(self, out: np.ndarray, y: np.ndarray) -> float:
        out = _outputs(out)
        return float(np.mean(out.argmax(axis=1) == self._check(out, y)))

    def _probs(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = _outputs(out)
        self._check(out, y)
        return np.exp(log_softmax(out))

    @staticmethod
    def _check(out: np.ndarray, y: np.ndarray) -> np.ndarray:
        y = _labels(y, out.shape[0])
        if y.size and (y.min() < 0 or y.max() >= out.shape[1]):
            raise ValueError(f"labels must lie in 0..{out.shape[1] - 1}")
        return y


class SigmoidBCE:
    """Binary cross-entropy on one pre-sigmoid output column (B, 1), labels 0/1.

    ℓ = softplus(z) − y·z; H_b = p(1−p) = e^{−|z|}/(1+e^{−|z|})², evaluated in that stable form.
    """
    name = "sigmoid_bce"

    def value(self, out: np.ndarray, y: np.ndarray) -> float:
        z, y = self._check(out, y)
        return float(np.mean(softplus(z) - y * z))

    def grad(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        z, y = self._check(out, y)
        return ((sigmoid(z) - y) / len(y))[:, None]

    def hessian(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        z, _ = self._check(out, y)
        e = np.exp(-np.abs(z))
        return (e / (1.0 + e) ** 2)[:, None, None]

    def hessian_sqrt(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.sqrt(self.hessian(out, y))

    def accuracy(self, out: np.ndarray, y: np.ndarray) -> float:
        z, y = self._check(out, y)
        return float(np.mean((z > 0) == (y > 0.5)))

    @staticmethod
    def _check(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = _outputs(out)
        if out.shape[1] != 1:
            raise ValueError(f"SigmoidBCE takes one output column, got {out.shape[1]}")
        y = np.asarray(y, dtype=np.float64)
        if y.size != out.shape[0]:
            raise ValueError(f"labels must have shape ({out.shape[0]},), got {y.shape}")
        y = y.reshape(-1)
        if np.any((y != 0) & (y != 1)):
            raise ValueError("SigmoidBCE labels must be 0 or 1")
        return out[:, 0], y


class MSE:
    """Mean squared error over all B·K entries: value = mean((f − y)²), the usual convention.

    Per example ℓ_b = (1/K) Σ_k (f_bk − y_bk)², so H_b = (2/K) I and L_b = √(2/K) I. ``accuracy``
    is the coefficient of determination R² = 1 − SSE/SST (regression has no classes; 1 is
    perfect, ≤ 0 is no better than predicting the mean).
    """
    name = "mse"

    def value(self, out: np.ndarray, y: np.ndarray) -> float:
        out, y = self._check(out, y)
        return float(np.mean((out - y) ** 2))

    def grad(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        out, y = self._check(out, y)
        return 2.0 * (out - y) / out.size

    def hessian(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        out, _ = self._check(out, y)
        B, K = out.shape
        return np.broadcast_to(2.0 / K * np.eye(K), (B, K, K)).copy()

    def hessian_sqrt(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        out, _ = self._check(out, y)
        B, K = out.shape
        return np.broadcast_to(np.sqrt(2.0 / K) * np.eye(K), (B, K, K)).copy()

    def accuracy(self, out: np.ndarray, y: np.ndarray) -> float:
        out, y = self._check(out, y)
        sse = float(np.sum((out - y) ** 2))
        sst = float(np.sum((y - y.mean(axis=0)) ** 2))
        return 1.0 - sse / sst if sst > 0 else float(sse == 0)

    @staticmethod
    def _check(out: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = _outputs(out)
        y = np.asarray(y, dtype=np.float64)
        if y.size != out.size:
            raise ValueError(f"targets must have shape {out.shape}, got {y.shape}")
        return out, y.reshape(out.shape)
