"""host.nn.MLP: layout, groups, init, and reverse/forward mode against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from host.nn import MLP

ARCHS = [([3, 4, 5, 2], "relu", True), ([3, 4, 5, 2], "tanh", True), ([3, 6, 2], "tanh", False),
         ([4, 3], "relu", True)]


def _setup(sizes, activation, bias, seed=0, B=5):
    rng = np.random.default_rng(seed)
    m = MLP(sizes, activation=activation, bias=bias)
    theta = rng.standard_normal(m.n_params) * 0.7   # nonzero biases too: kinks away from 0
    X = rng.standard_normal((B, sizes[0]))
    return m, theta, X, rng


def test_param_count_and_groups_partition_in_layer_order():
    m = MLP([3, 4, 5, 2])
    assert m.n_params == (3 * 4 + 4) + (4 * 5 + 5) + (5 * 2 + 2)
    covered = np.concatenate([np.arange(P.slice.start, P.slice.stop) for P in m.groups])
    np.testing.assert_array_equal(covered, np.arange(m.n_params))  # disjoint, in order, complete
    assert [g.layer for g in m.groups] == [0, 1, 2]
    assert [g.name for g in m.groups] == ["layer0", "layer1", "layer2"]
    assert [g.size for g in m.groups] == [16, 25, 12]
    assert MLP([3, 4, 2], bias=False).n_params == 12 + 8


def test_group_holds_its_layers_weights_and_biases():
    m = MLP([2, 3, 1])
    theta = np.arange(m.n_params, dtype=float)
    for g, (W, b) in zip(m.groups, m.unflatten(theta)):
        own = set(theta[g.slice])
        assert set(W.ravel()) | set(b) == own


def test_unflatten_gives_writable_views():
    m = MLP([2, 3, 1])
    theta = np.zeros(m.n_params)
    (W0, b0), (W1, b1) = m.unflatten(theta)
    assert W0.shape == (2, 3) and b0.shape == (3,) and W1.shape == (3, 1) and b1.shape == (1,)
    W1[...] = 1.0
    b0[1] = 5.0
    assert theta.sum() == 3 + 5
    assert MLP([2, 3], bias=False).unflatten(np.zeros(6))[0][1] is None


@pytest.mark.parametrize("activation,expected_var", [("relu", lambda i, o: 2 / i),
                                                     ("tanh", lambda i, o: 2 / (i + o))])
def test_init_scales_and_zero_biases(activation, expected_var):
    m = MLP([400, 300, 10], activation=activation)
    theta = m.init(np.random.default_rng(0))
    assert theta.dtype == np.float64 and theta.shape == (m.n_params,)
    for (W, b), (i, o) in zip(m.unflatten(theta), [(400, 300), (300, 10)]):
        assert np.all(b == 0)
        assert W.var() == pytest.approx(expected_var(i, o), rel=0.05)
    np.testing.assert_array_equal(theta, m.init(np.random.default_rng(0)))


def test_apply_matches_a_hand_written_forward():
    m, theta, X, _ = _setup([3, 4, 5, 2], "tanh", True)
    (W0, b0), (W1, b1), (W2, b2) = m.unflatten(theta)
    ref = np.tanh(np.tanh(X @ W0 + b0) @ W1 + b1) @ W2 + b2
    np.testing.assert_allclose(m.apply(theta, X), ref, rtol=1e-13)
    m = MLP([3, 4, 2], activation="relu", bias=False)
    theta = np.random.default_rng(1).standard_normal(m.n_params)
    (W0, _), (W1, _) = m.unflatten(theta)
    np.testing.assert_allclose(m.apply(theta, X), np.maximum(X @ W0, 0) @ W1, rtol=1e-13)


@pytest.mark.parametrize("sizes,activation,bias", ARCHS)
def test_jacobian_matches_finite_differences(sizes, activation, bias, fd, close):
    m, theta, X, _ = _setup(sizes, activation, bias)
    J = m.jacobian(theta, X)
    assert J.shape == (5, sizes[-1], m.n_params)
    close(J, fd(lambda t: m.apply(t, X), theta))


@pytest.mark.parametrize("sizes,activation,bias", ARCHS)
def test_vjp_matches_finite_differences(sizes, activation, bias, fd, close):
    m, theta, X, rng = _setup(sizes, activation, bias)
    g = rng.standard_normal((5, sizes[-1]))
    close(m.vjp(theta, X, g), fd(lambda t: np.sum(g * m.apply(t, X)), theta))


@pytest.mark.parametrize("sizes,activation,bias", ARCHS)
def test_jvp_matches_finite_differences(sizes, activation, bias, close):
    m, theta, X, rng = _setup(sizes, activation, bias)
    v = rng.standard_normal(m.n_params)
    eps = 1e-6
    ref = (m.apply(theta + eps * v, X) - m.apply(theta - eps * v, X)) / (2 * eps)
    close(m.jvp(theta, X, v), ref)


@pytest.mark.parametrize("sizes,activation,bias", ARCHS)
def test_jacobian_vjp_jvp_agree(sizes, activation, bias):
    m, theta, X, rng = _setup(sizes, activation, bias)
    lin = m.linearize(theta, X)
    J = lin.jacobian()
    v, g = rng.standard_normal(m.n_params), rng.standard_normal(lin.out.shape)
    np.testing.assert_allclose(lin.jvp(v), J @ v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.vjp(g), np.einsum("bk,bkp->p", g, J), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lin.out, m.apply(theta, X), rtol=0)


def test_bad_inputs_are_rejected_clearly():
    m = MLP([3, 4, 2])
    with pytest.raises(ValueError, match="activation"):
        MLP([3, 2], activation="sigmoid")
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match=r"theta must have shape \(26,\)"):
        m.apply(np.zeros(25), np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"X must have shape \(B, 3\)"):
        m.apply(np.zeros(m.n_params), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="g_out"):
        m.vjp(np.zeros(m.n_params), np.zeros((2, 3)), np.zeros((2, 3)))
