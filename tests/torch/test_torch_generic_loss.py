"""Any callable loss_fn(outputs, targets) as a TorchObjective loss: its per-example Hessians by
torch.func. Wrapping cross-entropy reproduces the closed form to 1e-10 in every GGN form; Huber
and label-smoothed cross-entropy match torch.autograd's Hessians; a non-convex loss gives the
positive semi-definite part; TNGD trains with a generic loss on a device."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from host.nn import SoftmaxCrossEntropy  # noqa: E402
from host.torch import TorchObjective, optimizer  # noqa: E402
from host.torch.objective import TorchLoss, loss_of  # noqa: E402


def net(outputs=3, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, outputs))


def batch(n=6, seed=1, classes=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)), rng.integers(0, classes, n), rng


def per_example_hessians(fn, out, y):
    """torch.autograd.functional.hessian of ℓ_b = fn(f_b[None], y_b[None]), example by example."""
    y = torch.as_tensor(y)
    return np.stack([torch.autograd.functional.hessian(lambda o: fn(o[None], y[b][None]),
                                                       torch.as_tensor(out[b])).numpy()
                     for b in range(len(out))])


def test_a_wrapped_cross_entropy_is_the_closed_form():
    X, y, rng = batch()
    closed = TorchObjective(net(), "cross_entropy")
    generic = TorchObjective(net(), lambda out, t: F.cross_entropy(out, t))
    assert isinstance(generic.loss, TorchLoss) and isinstance(closed.loss, SoftmaxCrossEntropy)
    theta = closed.model.flatten()
    (l1, g1), (l2, g2) = closed.value_and_grad(theta, X, y), generic.value_and_grad(theta, X, y)
    assert abs(l1 - l2) < 1e-10
    np.testing.assert_allclose(g2, g1, rtol=0, atol=1e-10)
    out = closed.model.apply(theta, X)
    np.testing.assert_allclose(generic.loss.grad(out, y), closed.loss.grad(out, y), rtol=0, atol=1e-12)
    np.testing.assert_allclose(generic.loss.hessian(out, y), closed.loss.hessian(out, y), rtol=0, atol=1e-10)
    L = generic.loss.hessian_sqrt(out, y)
    np.testing.assert_allclose(L @ L.transpose(0, 2, 1), closed.loss.hessian(out, y), rtol=0, atol=1e-10)
    v = rng.standard_normal(theta.size)
    np.testing.assert_allclose(generic.ggn_matvec(theta, X, y, v), closed.ggn_matvec(theta, X, y, v),
                               rtol=0, atol=1e-10)
    U1, U2 = closed.ggn_sqrt(theta, X, y), generic.ggn_sqrt(theta, X, y)     # factors differ, G not
    np.testing.assert_allclose(U2.T @ (U2 @ v), U1.T @ (U1 @ v), rtol=0, atol=1e-10)
    np.testing.assert_allclose(generic.ggn_dense(theta, X, y), closed.ggn_dense(theta, X, y), rtol=0, atol=1e-10)
    J1, H1 = closed.ggn_factors(theta, X, y)
    J2, H2 = generic.ggn_factors(theta, X, y)
    np.testing.assert_allclose(J2, J1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(H2, H1, rtol=0, atol=1e-10)
    assert generic.evaluate(theta, X, y) == pytest.approx(closed.evaluate(theta, X, y), abs=1e-10)


@pytest.mark.parametrize("name", ["huber", "smooth_l1"])
def test_huber_hessians_match_torch_autograd(name):
    fn = (lambda o, t: F.huber_loss(o, t, delta=0.5)) if name == "huber" else \
        (lambda o, t: F.smooth_l1_loss(o, t, beta=0.7))
    X, _, rng = batch()
    objective = TorchObjective(net(), fn)
    theta = objective.model.flatten()
    out = objective.model.apply(theta, X)
    y = out + rng.choice([-1.0, 1.0], out.shape) * rng.uniform(0.0, 1.5, out.shape)   # both regions
    H = objective.loss.hessian(out, y)
    np.testing.assert_allclose(H, per_example_hessians(fn, out, y), rtol=0, atol=1e-12)
    assert 0 < np.count_nonzero(np.diagonal(H, axis1=1, axis2=2)) < out.size       # both regions hit
    assert objective.loss.value(out, y) == pytest.approx(float(fn(torch.as_tensor(out), torch.as_tensor(y))),
                                                         rel=1e-14)
    assert np.isnan(objective.loss.accuracy(out, y))      # regression: no classes


def test_label_smoothing_takes_the_generic_path_with_the_softmax_hessian():
    """Smoothing moves the targets, not the curvature: H_b = diag(p) − ppᵀ either way (Σ targets
    = 1), while the gradient differs."""
    X, y, _ = batch()
    smoothed = TorchObjective(net(), torch.nn.CrossEntropyLoss(label_smoothing=0.2))
    plain = TorchObjective(net(), "cross_entropy")
    assert isinstance(smoothed.loss, TorchLoss)
    theta = plain.model.flatten()
    out = plain.model.apply(theta, X)
    np.testing.assert_allclose(smoothed.loss.hessian(out, y), plain.loss.hessian(out, y), rtol=0, atol=1e-10)
    np.testing.assert_allclose(smoothed.loss.hessian(out, y),
                               per_example_hessians(lambda o, t: F.cross_entropy(o, t, label_smoothing=0.2), out, y),
                               rtol=0, atol=1e-12)
    assert np.abs(smoothed.loss.grad(out, y) - plain.loss.grad(out, y)).max() > 1e-3
    assert smoothed.loss.accuracy(out, y) == plain.loss.accuracy(out, y)    # argmax accuracy


def test_a_non_convex_loss_gives_the_positive_semidefinite_part():
    """Cauchy loss log(1 + r²) is concave for |r| > 1: the raw Hessian has negative eigenvalues
    there, hessian() and hessian_sqrt() clip them to zero (the GGN stays PSD) and agree."""
    def cauchy(o, t):
        return torch.log1p((o - t) ** 2).sum(dim=1).mean()
    X, _, rng = batch()
    loss = loss_of(cauchy)
    out = rng.standard_normal((6, 3))
    y = out + rng.uniform(-3.0, 3.0, out.shape)
    raw = loss.raw_hessian(out, y)
    np.testing.assert_allclose(raw, per_example_hessians(cauchy, out, y), rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(raw).min() < -0.1
    H, L = loss.hessian(out, y), loss.hessian_sqrt(out, y)
    w, Q = np.linalg.eigh(raw)
    np.testing.assert_allclose(H, Q @ (np.maximum(w, 0)[..., None] * Q.transpose(0, 2, 1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(L @ L.transpose(0, 2, 1), H, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(H).min() > -1e-12


def test_accuracy_and_refusals():
    X, y, _ = batch()
    out = np.random.default_rng(3).standard_normal((6, 3))
    loss = TorchLoss(lambda o, t: F.cross_entropy(o, t),
                     accuracy=lambda o, t: (o.argmax(1) != t).double().mean())
    assert loss.accuracy(out, y) == pytest.approx(1.0 - np.mean(out.argmax(1) == y))
    with pytest.raises(ValueError, match="mean of per-example losses"):
        TorchLoss(lambda o, t: F.cross_entropy(o, t, reduction="sum")).hessian(out, y)
    with pytest.raises(ValueError, match="scalar torch tensor"):
        TorchLoss(lambda o, t: F.cross_entropy(o, t, reduction="none")).value(out, y)
    with pytest.raises(ValueError, match="only the default"):
        TorchObjective(net(), torch.nn.CrossEntropyLoss(weight=torch.ones(3)))
    with pytest.raises(ValueError, match="only the default reduction"):
        TorchObjective(net(), torch.nn.HuberLoss(reduction="sum"))
    with pytest.raises(ValueError, match="one entry per example"):
        loss.value(out, y[:4])
    with pytest.raises(ValueError, match="give 'cross_entropy'"):
        TorchObjective(net(), 3.0)


def test_tngd_trains_with_a_generic_loss_on_a_device():
    """Huber regression of a smooth target, TNGD on an emulated device, one packet per step."""
    torch.manual_seed(4)
    X = torch.randn(8, 5)
    y = torch.stack([torch.sin(X[:, 0]), X[:, 1] * X[:, 2]], dim=1)
    module = net(outputs=2)
    with optimizer("tngd", module, torch.nn.HuberLoss(delta=0.5), device="local://?cells=58&max_rank=16&seed=1",
                   lr=0.5, lam=0.1, t=20.0) as run:
        assert isinstance(run.objective.loss, TorchLoss)
        losses = [run.step(X, y) for _ in range(6)]
        assert run.info["rank"] == 16
    assert losses[-1] < 0.7 * losses[0]
    with torch.no_grad():
        assert float(F.huber_loss(module(X), y, delta=0.5)) == pytest.approx(
            float(run.objective.loss.value(run.model.apply(run.state.theta, X.numpy()), y.numpy())), rel=1e-5)


class Squeeze(torch.nn.Module):
    def forward(self, x):
        return x.squeeze(-1)


def test_the_loss_gets_the_outputs_in_the_modules_shape():
    """A regression module returning (B,): the loss sees (B,), as in a torch loop (given (B, 1)
    against (B,) targets, mse_loss would broadcast to B × B), so value, gradient and H_b = 2 are
    torch's, and NGD and Adam agree on what they minimise."""
    torch.manual_seed(5)
    module = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1), Squeeze())
    X, _, rng = batch(n=7)
    y = rng.standard_normal(7)
    objective = TorchObjective(module, lambda out, t: F.mse_loss(out, t))
    theta = objective.model.flatten()
    value, grad = objective.value_and_grad(theta, X, y)
    assert objective.model.output_shape == ()
    Xt, yt = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y)
    ref = torch.func.functional_call(objective.model._f64, objective.model.params_of(torch.as_tensor(theta)), (Xt,))
    assert value == pytest.approx(float(F.mse_loss(ref, yt)), rel=1e-12)
    out = objective.model.apply(theta, X)
    np.testing.assert_allclose(objective.loss.hessian(out, y), np.full((7, 1, 1), 2.0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(objective.loss.grad(out, y)[:, 0], 2 * (out[:, 0] - y) / 7, rtol=0, atol=1e-12)
    with optimizer("ngd", module, lambda out, t: F.mse_loss(out, t), lr=0.5, lam=0.1) as run:
        losses = [run.step(X, y) for _ in range(5)]
    assert losses[-1] < 0.5 * losses[0]
