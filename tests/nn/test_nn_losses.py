"""host.nn losses: values, output gradients and Hessians against references and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

from host.nn import MSE, SigmoidBCE, SoftmaxCrossEntropy

B = 6


def _case(name: str, seed: int = 0, scale: float = 2.0):
    rng = np.random.default_rng(seed)
    if name == "ce":
        return SoftmaxCrossEntropy(), scale * rng.standard_normal((B, 4)), rng.integers(0, 4, B)
    if name == "bce":
        return SigmoidBCE(), scale * rng.standard_normal((B, 1)), rng.integers(0, 2, B)
    return MSE(), scale * rng.standard_normal((B, 3)), rng.standard_normal((B, 3))


LOSSES = ["ce", "bce", "mse"]


def test_values_match_naive_formulas():
    loss, out, y = _case("ce")
    p = np.exp(out) / np.exp(out).sum(1, keepdims=True)
    assert loss.value(out, y) == pytest.approx(-np.mean(np.log(p[np.arange(B), y])), rel=1e-12)
    loss, out, y = _case("bce")
    s = 1 / (1 + np.exp(-out[:, 0]))
    assert loss.value(out, y) == pytest.approx(-np.mean(y * np.log(s) + (1 - y) * np.log(1 - s)), rel=1e-12)
    loss, out, y = _case("mse")
    assert loss.value(out, y) == pytest.approx(np.mean((out - y) ** 2), rel=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_grad_is_the_gradient_of_the_mean_loss(name, fd, close):
    loss, out, y = _case(name)
    g = loss.grad(out, y)
    assert g.shape == out.shape
    close(g, fd(lambda o: loss.value(o, y), out))


@pytest.mark.parametrize("name", LOSSES)
def test_hessian_is_the_per_example_hessian_not_divided_by_B(name, fd, close):
    loss, out, y = _case(name)
    H = loss.hessian(out, y)
    K = out.shape[1]
    assert H.shape == (B, K, K)
    D = fd(lambda o: loss.grad(o, y), out)          # (B, K, B, K): d grad[b,i] / d out[c,j]
    per_example = np.stack([D[b, :, b, :] for b in range(B)])
    close(H, B * per_example)                       # grad carries 1/B, H does not
    off = D.copy()
    for b in range(B):
        off[b, :, b, :] = 0
    assert np.abs(off).max() < 1e-8                 # examples do not couple


@pytest.mark.parametrize("name", LOSSES)
def test_hessian_sqrt_reproduces_hessian(name):
    loss, out, y = _case(name)
    L = loss.hessian_sqrt(out, y)
    assert L.shape[:2] == out.shape
    np.testing.assert_allclose(L @ L.transpose(0, 2, 1), loss.hessian(out, y), atol=1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_hessians_are_symmetric_psd(name):
    loss, out, y = _case(name, scale=5.0)
    H = loss.hessian(out, y)
    np.testing.assert_allclose(H, H.transpose(0, 2, 1), atol=0)
    assert np.linalg.eigvalsh(H).min() > -1e-14


def test_softmax_ce_gradient_rows_sum_to_zero():
    loss, out, y = _case("ce")
    np.testing.assert_allclose(loss.grad(out, y).sum(1), 0, atol=1e-16)
    np.testing.assert_allclose(loss.hessian(out, y).sum(2), 0, atol=1e-15)


def test_accuracy_on_hand_examples():
    out = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    assert SoftmaxCrossEntropy().accuracy(out, np.array([0, 1, 0, 2])) == 0.5
    z = np.array([[3.0], [-0.5], [0.1], [-2.0]])
    assert SigmoidBCE().accuracy(z, np.array([1, 0, 0, 0])) == 0.75
    y = np.array([[1.0], [2.0], [3.0]])
    assert MSE().accuracy(y, y) == 1.0
    assert MSE().accuracy(np.full((3, 1), 2.0), y) == 0.0     # predicting the mean: R² = 0


def test_extreme_logits_stay_finite_and_exact():
    big = np.array([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 1000.0]])
    ce = SoftmaxCrossEntropy()
    y = np.array([0, 0])
    # example 0 is certain and right (loss 0); example 1 is wrong by 2000 + log 2
    assert ce.value(big, y) == pytest.approx((0 + 2000 + np.log(2)) / 2, rel=1e-12)
    for f in (ce.grad, ce.hessian, ce.hessian_sqrt):
        assert np.all(np.isfinite(f(big, y)))
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]])
    bce, yb = SigmoidBCE(), np.array([1, 0, 0, 1])
    assert bce.value(z, yb) == pytest.approx(500.0, rel=1e-12)  # two right, two off by 1000
    np.testing.assert_allclose(bce.grad(z, yb)[:, 0], [0, 0, 0.25, -0.25])
    for f in (bce.grad, bce.hessian, bce.hessian_sqrt):
        assert np.all(np.isfinite(f(z, yb)))
    assert np.all(bce.hessian(z, yb) >= 0)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        ce.value(big, y), bce.value(z, yb), bce.grad(z, yb), bce.hessian(z, yb)


def test_labels_are_validated():
    ce, bce = SoftmaxCrossEntropy(), SigmoidBCE()
    with pytest.raises(ValueError, match="0..2"):
        ce.value(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="integers"):
        ce.value(np.zeros((2, 3)), np.array([0.5, 1]))
    with pytest.raises(ValueError, match="one output column"):
        bce.value(np.zeros((2, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        bce.value(np.zeros((2, 1)), np.array([0, 2]))
    with pytest.raises(ValueError, match="targets"):
        MSE().value(np.zeros((2, 2)), np.zeros(3))
    # column-vector labels and integral floats are fine
    assert ce.value(np.zeros((2, 3)), np.array([[0.0], [2.0]])) == pytest.approx(np.log(3))
