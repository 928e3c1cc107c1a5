"""A multilayer perceptron on a flat parameter vector, with hand-written forward and reverse mode.

Optimizers (init/update on flat vectors) and the device (one cell per parameter) both want θ as
one 1-D float64 array, so the model never owns its parameters: every method takes θ. Layout, per
layer l in order: W_l (fan_in × fan_out, row-major, used as ``x @ W``) then b_l (fan_out). The
hidden layers apply the activation; the last layer is linear (raw logits / pre-sigmoid / values).

``linearize(θ, X)`` runs one forward pass and keeps what reverse and forward mode need, so the
curvature helpers get outputs, VJPs, JVPs and Jacobians from a single pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True)
class ParamGroup:
    """The slice of θ holding one layer's weights and biases (one thermostat per group)."""
    name: str
    slice: slice
    layer: int

    @property
    def size(self) -> int:
        return self.slice.stop - self.slice.start


class MLP:
    """``MLP([d_in, h1, ..., d_out], activation="relu"|"tanh", bias=True)``."""

    def __init__(self, sizes: Sequence[int], activation: str = "relu", bias: bool = True) -> None:
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least an input and an output width, all ≥ 1; got {sizes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.sizes, self.activation, self.bias = tuple(sizes), activation, bool(bias)
        self._shapes: list[tuple[int, int]] = list(zip(sizes[:-1], sizes[1:]))
        self._w: list[slice] = []
        self._b: list[slice | None] = []
        self.groups: list[ParamGroup] = []
        start = 0
        for layer, (n_in, n_out) in enumerate(self._shapes):
            w = slice(start, start + n_in * n_out)
            b = slice(w.stop, w.stop + n_out) if self.bias else None
            stop = b.stop if b is not None else w.stop
            self._w.append(w)
            self._b.append(b)
            self.groups.append(ParamGroup(f"layer{layer}", slice(start, stop), layer))
            start = stop
        self.n_params = start

    def __repr__(self) -> str:
        return f"MLP({list(self.sizes)}, activation={self.activation!r}, bias={self.bias})"

    @property
    def n_layers(self) -> int:
        return len(self._shapes)

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """He-normal weights for ReLU (std √(2/fan_in)), Glorot-normal for tanh (std
        √(2/(fan_in+fan_out))); biases 0 — the usual choices that keep activations O(1)."""
        theta = np.zeros(self.n_params)
        for (n_in, n_out), w in zip(self._shapes, self._w):
            var = 2.0 / n_in if self.activation == "relu" else 2.0 / (n_in + n_out)
            theta[w] = rng.standard_normal(n_in * n_out) * np.sqrt(var)
        return theta

    def unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per-layer (W, b) views into θ (writes go through); b is None without biases."""
        theta = self._check_theta(theta)
        return [(theta[w].reshape(shape), None if b is None else theta[b])
                for shape, w, b in zip(self._shapes, self._w, self._b)]

    def apply(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Raw outputs (B, d_out)."""
        a = self._check_X(X)
        for layer, (W, b) in enumerate(self.unflatten(theta)):
            z = a @ W if b is None else a @ W + b
            a = z if layer == self.n_layers - 1 else self._act(z)
        return a

    def linearize(self, theta: np.ndarray, X: np.ndarray) -> Linearization:
        """One forward pass, kept for any number of VJPs, JVPs or a Jacobian at (θ, X)."""
        return Linearization(self, theta, X)

    def vjp(self, theta: np.ndarray, X: np.ndarray, g_out: np.ndarray) -> np.ndarray:
        """∇_θ Σ_b g_out[b]·f(x_b), shape (P,)."""
        return self.linearize(theta, X).vjp(g_out)

    def jvp(self, theta: np.ndarray, X: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Directional derivative of the outputs along v ∈ R^P, shape (B, d_out)."""
        return self.linearize(theta, X).jvp(v)

    def jacobian(self, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Per-example output Jacobians ∂f(x_b)/∂θ, shape (B, d_out, P)."""
        return self.linearize(theta, X).jacobian()

    # -- internals --------------------------------------------------------------------------------
    def _act(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0.0) if self.activation == "relu" else np.tanh(z)

    def _act_grad(self, z: np.ndarray, a: np.ndarray) -> np.ndarray:
        return (z > 0).astype(z.dtype) if self.activation == "relu" else 1.0 - a * a

    def _check_theta(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},), got {theta.shape}")
        return theta

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have shape (B, {self.sizes[0]}), got {X.shape}")
        return X


class Linearization:
    """The network linearized at (θ, X): outputs plus reverse- and forward-mode products.

    Keeps each layer's input a_l and the activation derivative at its pre-activation, which is
    all backprop (VJP) and forward-mode (JVP) need.
    """

    def __init__(self, model: MLP, theta: np.ndarray, X: np.ndarray) -> None:
        self.model = model
        self.params = model.unflatten(theta)
        a = model._check_X(X)
        self.inputs: list[np.ndarray] = []   # a_l, the input of layer l
        self.slopes: list[np.ndarray] = []   # σ'(z_l) for every hidden layer l
        last = model.n_layers - 1
        for layer, (W, b) in enumerate(self.params):
            self.inputs.append(a)
            z = a @ W if b is None else a @ W + b
            if layer == last:
                a = z
            else:
                a = model._act(z)
                self.slopes.append(model._act_grad(z, a))
        self.out: np.ndarray = a

    @property
    def batch_size(self) -> int:
        return self.out.shape[0]

    def vjp(self, g_out: np.ndarray) -> np.ndarray:
        """Backprop: ∇_θ Σ_b g_out[b]·f(x_b), shape (P,)."""
        delta = np.asarray(g_out, dtype=np.float64)
        if delta.shape != self.out.shape:
            raise ValueError(f"g_out must have shape {self.out.shape}, got {delta.shape}")
        m = self.model
        grad = np.empty(m.n_params)
        for layer in range(m.n_layers - 1, -1, -1):
            W, _ = self.params[layer]
            grad[m._w[layer]] = (self.inputs[layer].T @ delta).ravel()
            if m._b[layer] is not None:
                grad[m._b[layer]] = delta.sum(axis=0)
            if layer:
                delta = (delta @ W.T) * self.slopes[layer - 1]
        return grad

    def jvp(self, v: np.ndarray) -> np.ndarray:
        """Forward mode: ∂f/∂θ · v for every example, shape (B, d_out)."""
        m = self.model
        v = np.asarray(v, dtype=np.float64)
        if v.shape != (m.n_params,):
            raise ValueError(f"v must have shape ({m.n_params},), got {v.shape}")
        tangent = None  # d a_l; the data X does not depend on θ
        for layer, ((W, _), shape) in enumerate(zip(self.params, m._shapes)):
            dz = self.inputs[layer] @ v[m._w[layer]].reshape(shape)
            if tangent is not None:
                dz += tangent @ W
            if m._b[layer] is not None:
                dz += v[m._b[layer]]
            tangent = dz if layer == m.n_layers - 1 else dz * self.slopes[layer]
        return tangent

    def jacobian(self) -> np.ndarray:
        """Per-example Jacobians (B, d_out, P): d_out batched backward passes at once."""
        m = self.model
        B, K = self.out.shape
        J = np.empty((B, K, m.n_params))
        delta = np.broadcast_to(np.eye(K), (B, K, K))  # (example, output, unit)
        for layer in range(m.n_layers - 1, -1, -1):
            W, _ = self.params[layer]
            a = self.inputs[layer]
            J[:, :, m._w[layer]] = np.einsum("bi,bkj->bkij", a, delta).reshape(B, K, -1)
            if m._b[layer] is not None:
                J[:, :, m._b[layer]] = delta
            if layer:
                delta = (delta @ W.T) * self.slopes[layer - 1][:, None, :]
        return J
