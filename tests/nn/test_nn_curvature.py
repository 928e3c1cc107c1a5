"""host.nn.curvature: loss gradients and the GGN in every form must agree with each other, with
finite differences, and (for a linear model, where GGN = Hessian) with the loss's true Hessian."""
from __future__ import annotations

import numpy as np
import pytest

from host.nn import (MLP, MSE, SigmoidBCE, SoftmaxCrossEntropy, ggn_dense, ggn_factors,
                     ggn_matvec, ggn_sqrt, loss_and_grad)

B = 7


def _problem(loss_name: str, activation: str = "tanh", sizes=(3, 5, 4), seed: int = 0):
    rng = np.random.default_rng(seed)
    K = {"ce": 3, "bce": 1, "mse": 2}[loss_name]
    m = MLP([*sizes, K], activation=activation)
    theta = rng.standard_normal(m.n_params) * 0.8
    X = rng.standard_normal((B, sizes[0]))
    loss, y = {"ce": (SoftmaxCrossEntropy(), rng.integers(0, 3, B)),
               "bce": (SigmoidBCE(), rng.integers(0, 2, B)),
               "mse": (MSE(), rng.standard_normal((B, 2)))}[loss_name]
    return m, loss, theta, X, y, rng


CASES = [(l, a) for l in ("ce", "bce", "mse") for a in ("relu", "tanh")]


@pytest.mark.parametrize("loss_name,activation", CASES)
def test_loss_and_grad_matches_finite_differences(loss_name, activation, fd, close):
    m, loss, theta, X, y, _ = _problem(loss_name, activation)
    value, grad = loss_and_grad(m, loss, theta, X, y)
    assert value == loss.value(m.apply(theta, X), y)
    close(grad, fd(lambda t: loss.value(m.apply(t, X), y), theta))


@pytest.mark.parametrize("loss_name,activation", CASES)
def test_ggn_forms_agree(loss_name, activation, close):
    m, loss, theta, X, y, rng = _problem(loss_name, activation)
    P, K = m.n_params, m.n_outputs
    G = ggn_dense(m, loss, theta, X, y)
    J, H = ggn_factors(m, loss, theta, X, y)
    U = ggn_sqrt(m, loss, theta, X, y)
    assert G.shape == (P, P) and J.shape == (B * K, P) and H.shape == (B * K, B * K)
    assert U.shape[1] == P and U.shape[0] == B * loss.hessian_sqrt(m.apply(theta, X), y).shape[2]
    close(J.T @ H @ J, G, 1e-12)
    close(U.T @ U, G, 1e-12)
    for _ in range(3):
        v = rng.standard_normal(P)
        Gv = ggn_matvec(m, loss, theta, X, y, v)
        close(Gv, G @ v, 1e-12)
        close(Gv, J.T @ (H @ (J @ v)), 1e-12)
    np.testing.assert_array_equal(G, G.T)
    assert np.linalg.eigvalsh(G).min() > -1e-12 * np.abs(G).max()


def test_factor_layout_is_blockdiagonal_with_the_1_over_B_folded_in():
    m, loss, theta, X, y, _ = _problem("ce")
    J, H = ggn_factors(m, loss, theta, X, y)
    K = m.n_outputs
    Hb = loss.hessian(m.apply(theta, X), y) / B
    for b in range(B):
        for c in range(B):
            block = H[b * K:(b + 1) * K, c * K:(c + 1) * K]
            np.testing.assert_array_equal(block, Hb[b] if b == c else 0)
    # row b·K + k of J is ∂f_k(x_b)/∂θ
    np.testing.assert_array_equal(J.reshape(B, K, -1), m.jacobian(theta, X))


@pytest.mark.parametrize("loss_name", ["ce", "bce", "mse"])
def test_ggn_is_the_exact_hessian_for_a_linear_model(loss_name, fd, close):
    # f linear in θ ⇒ the GGN drops nothing: it must equal ∇²L, here by differencing loss_and_grad
    m, loss, theta, X, y, _ = _problem(loss_name, sizes=(4,))
    assert m.n_layers == 1
    hess = fd(lambda t: loss_and_grad(m, loss, t, X, y)[1], theta)
    close(ggn_dense(m, loss, theta, X, y), hess)


def test_ggn_dense_returns_a_fresh_writable_array():
    m, loss, theta, X, y, _ = _problem("bce")
    G = ggn_dense(m, loss, theta, X, y)
    G[np.diag_indices_from(G)] += 1.0               # what the exact NGD solver does
    np.testing.assert_allclose(G - np.eye(len(G)), ggn_dense(m, loss, theta, X, y))


def test_ggn_of_an_mlp_is_not_the_hessian(fd):
    # guards the test above against passing vacuously: with a hidden layer GGN ≠ ∇²L
    m, loss, theta, X, y, _ = _problem("mse")
    hess = fd(lambda t: loss_and_grad(m, loss, t, X, y)[1], theta)
    G = ggn_dense(m, loss, theta, X, y)
    assert np.linalg.norm(G - hess) > 1e-3 * np.linalg.norm(hess)
