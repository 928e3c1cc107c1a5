"""Every algorithm of host.optim on a torch module: the library's step with write-back, on a
real emulated device for TNGD; and the torch.optim.Optimizer form of the gradient-only
transforms, against torch's own Adam."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import host  # noqa: E402
from host.optim import adam  # noqa: E402
from host.torch import TorchOptimizer, optimizer  # noqa: E402


def net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))


def data(seed=1, n=32):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 5, generator=g)
    return X, (X[:, 0] > 0).long() + (X[:, 1] > 0).long()


def test_the_library_step_trains_the_module_and_writes_it_back():
    module = net()
    X, y = data()
    with optimizer("adam", module, torch.nn.CrossEntropyLoss(), lr=0.05) as run:
        losses = [run.step(X, y) for _ in range(30)]
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(module(X), y))
    assert losses[-1] < 0.5 * losses[0]
    assert final == pytest.approx(losses[-1], rel=0.2)          # the module holds the new θ
    np.testing.assert_allclose(run.model.flatten(), run.state.theta, rtol=0, atol=1e-6)


def test_tngd_and_a_partition_run_on_a_device_one_packet_per_step():
    module = net()
    X, y = data(n=8)
    url = "local://?cells=66&max_rank=24&seed=2"
    with optimizer("tngd", module, "cross_entropy", device=url, lr=0.5, lam=0.5, t=20.0) as run:
        dev = run.optimizer.device
        losses = []
        for _ in range(5):
            packets = dev.stats.packets
            losses.append(run.step(X, y))
            assert dev.stats.packets - packets == 1
        assert losses[-1] < losses[0]
    assert run._owned is None                                   # the run's own device is closed
    with host.connect(url) as dev:
        run = optimizer("partitioned", net(), "cross_entropy", device=dev,
                        partition="0:tngd(lam=0.5, t=20), *:adam(lr=0.05)")
        first = run.step(X, y)
        assert run.step(X, y) < first and "0.rank" in run.info
    with pytest.raises(ValueError, match="runs on a device: give device="):
        optimizer("tngd", net(), "cross_entropy")


def test_the_torch_optim_form_matches_torch_adam():
    """Our adam as a torch.optim.Optimizer in a plain loss.backward() loop moves the module as
    torch.optim.Adam does (float32 parameters: to 1e-6)."""
    X, y = data()
    a, b = net(), net()
    ours = TorchOptimizer(a.parameters(), adam(lr=0.01))
    theirs = torch.optim.Adam(b.parameters(), lr=0.01)
    for _ in range(10):
        for m, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(X), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="use host.torch.optimizer"):
        from host.optim import ngd
        c = net()
        opt = TorchOptimizer(c.parameters(), ngd())
        torch.nn.functional.cross_entropy(c(X), y).backward()
        opt.step()


def test_explicit_groups_choose_what_a_partition_splits():
    """AdLaLa partitions over parameter groups (layer 0 vs the rest); given explicitly, by
    submodule and by parameter name, the groups become contiguous slices of θ; groups that are
    not contiguous, name nothing, or leave parameters out are refused."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 5), torch.nn.ReLU(),
                              torch.nn.Linear(5, 2))
    run = optimizer("adlala", net, "cross_entropy", groups=[[net[0], net[2]], ["4.weight", "4.bias"]])
    assert [(g.slice.start, g.slice.stop) for g in run.groups] == [(0, 30 + 35), (65, 65 + 12)]
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    first = run.step(x, y)
    assert np.isfinite(first)
    with pytest.raises(ValueError, match="not a contiguous run"):
        optimizer("adlala", net, "cross_entropy", groups=[[net[0], net[4]], [net[2]]])
    with pytest.raises(ValueError, match="neither a submodule of the model nor one of its parameter names"):
        optimizer("adlala", net, "cross_entropy", groups=[["0.weight", "nope"]])
    with pytest.raises(ValueError, match="parameter groups cover"):
        optimizer("adlala", net, "cross_entropy", groups=[[net[0]]])


def test_a_device_the_run_connects_itself_is_calibrated():
    """A URL given to host.torch.optimizer: the run connects and, like thermohil train,
    calibrates a chip whose calibration is not valid (the realistic profile boots without)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    with optimizer("tngd", net, "cross_entropy", device="spawn://?cells=10&max_rank=16&profile=realistic") as run:
        assert run._owned.calibration_valid()
        assert np.isfinite(run.step(torch.randn(8, 4), torch.randint(0, 2, (8,))))


def test_a_bare_spawn_url_is_sized_at_the_first_batch():
    """device='spawn://': one cell per parameter, rank = first batch × outputs, seed = the run's."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    with optimizer("tngd", net, "cross_entropy", device="spawn://", seed=7) as run:
        assert run.optimizer is None                       # nothing spawned before a batch is seen
        run.step(torch.randn(8, 4), torch.randint(0, 3, (8,)))
        info = run._owned.info()
        assert (info["n_cells"], info["max_rank"], info["emulator"]["seed"]) == (43, 24, 7)
        run.step(torch.randn(5, 4), torch.randint(0, 3, (5,)))      # a smaller last batch fits
    with pytest.raises(ValueError, match="above the emulator's limit"):
        optimizer("tngd", net, "cross_entropy", device="spawn://").step(torch.randn(400, 4),
                                                                        torch.randint(0, 3, (400,)))
