"""A torch model and the library's MLP that express the same network give the same loss,
gradient, Jacobian, Hessian factors, GGN products and square root (float64, 1e-10), and TNGD
trains both identically on a real emulated device."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import host  # noqa: E402
from host.nn import MLP, MSE, SoftmaxCrossEntropy  # noqa: E402
from host.objective import Objective  # noqa: E402
from host.optim import Optimizer, tngd  # noqa: E402
from host.torch import TorchModel, TorchObjective  # noqa: E402


def twins(sizes=(5, 7, 3), seed=0):
    """An MLP of host.nn and the torch nn.Sequential with the same weights: torch's Linear keeps
    W as (out, in) where host.nn keeps (in, out), so θ is permuted between them."""
    rng = np.random.default_rng(seed)
    ours = MLP(list(sizes), activation="tanh")
    theta = ours.init(rng) + 0.1 * rng.standard_normal(ours.n_params)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for lin, (W, b) in zip([m for m in net if isinstance(m, torch.nn.Linear)], ours.unflatten(theta)):
            lin.weight.copy_(torch.as_tensor(W.T))
            lin.bias.copy_(torch.as_tensor(b))
    tm = TorchModel(net)
    # perm[i]: the index in our θ of torch θ's entry i
    idx = np.arange(ours.n_params)
    perm = np.concatenate([np.concatenate([W.T.ravel(), b]) for W, b in ours.unflatten(idx.astype(float))]).astype(int)
    return ours, theta, tm, perm, rng


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_the_torch_objective_equals_the_library_objective(loss):
    ours, theta, tm, perm, rng = twins()
    X = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, 6) if loss == "cross_entropy" else rng.standard_normal((6, 3))
    lib = Objective(ours, SoftmaxCrossEntropy() if loss == "cross_entropy" else MSE())
    tob = TorchObjective(tm, loss)
    t_theta = tm.flatten()
    np.testing.assert_allclose(t_theta, theta[perm], rtol=0, atol=1e-7)     # float32 copy in the module
    t_theta = theta[perm]
    l1, g1 = lib.value_and_grad(theta, X, y)
    l2, g2 = tob.value_and_grad(t_theta, X, y)
    assert abs(l1 - l2) < 1e-10
    np.testing.assert_allclose(g2, g1[perm], rtol=0, atol=1e-10)
    J1, H1 = lib.ggn_factors(theta, X, y)
    J2, H2 = tob.ggn_factors(t_theta, X, y)
    np.testing.assert_allclose(J2, J1[:, perm], rtol=0, atol=1e-10)
    np.testing.assert_allclose(H2, H1, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tob.ggn_sqrt(t_theta, X, y), lib.ggn_sqrt(theta, X, y)[:, perm], rtol=0, atol=1e-10)
    v = rng.standard_normal(ours.n_params)
    np.testing.assert_allclose(tob.ggn_matvec(t_theta, X, y, v[perm]), lib.ggn_matvec(theta, X, y, v)[perm],
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(tob.ggn_dense(t_theta, X, y), lib.ggn_dense(theta, X, y)[np.ix_(perm, perm)],
                               rtol=0, atol=1e-10)
    assert [g.slice for g in tm.groups] == [slice(0, 42), slice(42, 66)]


def test_tngd_trains_the_torch_model_as_it_trains_the_library_model():
    """Same network, same batches, same device seed: the two runs' θ agree step by step (up to
    the permutation), to the converters' rounding."""
    ours, theta, tm, perm, rng = twins()
    X = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, 8)
    runs = []
    for model, objective, start in ((ours, Objective(ours, SoftmaxCrossEntropy()), theta),
                                    (tm, TorchObjective(tm, torch.nn.CrossEntropyLoss()), theta[perm])):
        with host.connect(f"local://?cells={ours.n_params}&seed=3&max_rank=24") as dev:
            opt = Optimizer("tngd", tngd(dev, lr=0.5, lam=0.5, t=20.0))
            st = opt.init(start, np.random.default_rng(0))
            path = []
            for _ in range(4):
                st, _ = opt.step(st, X, y, objective)
                path.append(st.theta.copy())
        runs.append(path)
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a[perm], rtol=0, atol=1e-7)


def test_bad_losses_and_modules_are_refused():
    ours, theta, tm, perm, rng = twins()
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        TorchObjective(tm, "hinge")
    with pytest.raises(ValueError, match="only the default"):
        TorchObjective(tm, torch.nn.MSELoss(reduction="sum"))
    with pytest.raises(ValueError, match="takes a torch.nn.Module"):
        TorchModel(ours)
    with pytest.raises(ValueError, match="theta must have shape"):
        tm.apply(np.zeros(3), np.zeros((1, 5)))


def test_dropout_and_batch_norm_run_in_eval_mode_with_a_warning():
    """The optimizers need one deterministic function of θ: outputs are the same on every call
    (dropout off) and batch norm works in torch.func with its running statistics."""
    from host.torch import TorchModel
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    with pytest.warns(UserWarning, match="BatchNorm1d, Dropout: the library evaluates the module in eval mode"):
        model = TorchModel(net)
    theta, X = model.flatten(), np.random.default_rng(0).normal(size=(6, 4))
    np.testing.assert_array_equal(model.apply(theta, X), model.apply(theta, X))
    lin = model.linearize(theta, X)
    assert lin.jacobian().shape == (6, 3, model.n_params)
    net.eval()
    np.testing.assert_allclose(model.apply(theta, X), net(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
