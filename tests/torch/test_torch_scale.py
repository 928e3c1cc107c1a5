"""Torch models at scale: the per-example Jacobian in chunks of examples equals the whole one to
1e-12 (and the whole-batch jacrev, also for a module that couples its examples); the factor U is
streamed (the host's peak while computing it is U plus about a chunk, measured); TNGD on a torch
model through a real spawn:// daemon."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import jacrev  # noqa: E402

from host.nn import curvature  # noqa: E402
from host.torch import TorchModel, TorchObjective, optimizer  # noqa: E402


def mlp(sizes=(5, 9, 4), seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.Tanh()] if i < len(sizes) - 2 else [])
    return torch.nn.Sequential(*layers)


class Centre(torch.nn.Module):
    """Subtracts the batch mean: every output depends on every example of the batch."""

    def forward(self, x):
        return x - x.mean(dim=0, keepdim=True)


def whole_batch_jacobian(lin):
    return jacrev(lin._f)(lin._t).numpy()


@pytest.mark.parametrize("coupled", [False, True])
def test_chunked_jacobian_equals_the_whole_one(coupled):
    module = torch.nn.Sequential(torch.nn.Linear(5, 9), Centre(), torch.nn.Tanh(), torch.nn.Linear(9, 4)) \
        if coupled else mlp()
    model = TorchModel(module)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((7, 5))
    lin = model.linearize(model.flatten() + 0.1 * rng.standard_normal(model.n_params), X)
    ref = whole_batch_jacobian(lin)
    whole = lin.jacobian(chunk=7)
    np.testing.assert_allclose(whole, ref, rtol=0, atol=1e-12)
    assert model.per_example is (not coupled)       # the coupled module was recognised
    for chunk in (1, 2, 3):
        blocks = list(lin.jacobian_blocks(chunk))
        assert [r for r, _ in blocks] == [slice(s, min(s + chunk, 7)) for s in range(0, 7, chunk)]
        np.testing.assert_allclose(lin.jacobian(chunk), whole, rtol=0, atol=1e-12)
    W = rng.standard_normal((7, 2, 4))                   # weighted rows W_b J_b, by the Jacobian of W_b f_b
    got = np.concatenate([np.concatenate([b[n].reshape(r.stop - r.start, 2, -1) for n, _, _ in lin.columns()],
                                         axis=2) for r, b in lin.jacobian_blocks(3, weights=W)])
    np.testing.assert_allclose(got, W @ whole, rtol=0, atol=1e-12)


def test_streamed_factor_equals_the_library_formula():
    """U streamed chunk by chunk = host.nn.curvature.ggn_sqrt (J whole, then L_bᵀJ_b/√B)."""
    objective = TorchObjective(mlp((5, 9, 4)), "cross_entropy", jacobian_chunk_mb=1e-3)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((9, 5)), rng.integers(0, 4, 9)
    theta = objective.model.flatten()
    assert objective.model.chunk_examples(4) == 1        # one example per chunk at this budget
    ref = curvature.ggn_sqrt(objective.model, objective.loss, theta, X, y)
    np.testing.assert_allclose(objective.ggn_sqrt(theta, X, y), ref, rtol=0, atol=1e-12)
    J, H = objective.ggn_factors(theta, X, y)
    np.testing.assert_allclose(J, curvature.ggn_factors(objective.model, objective.loss, theta, X, y)[0],
                               rtol=0, atol=0)


def test_the_chunk_budget_sets_the_examples_per_chunk():
    model = TorchModel(mlp((64, 256, 64, 10)), jacobian_chunk_mb=8)       # N = 33 738
    per_example = 10 * model.n_params * 8
    assert model.chunk_examples(10) == int(8 * 2**20 // per_example) == 3
    lin = model.linearize(model.flatten(), np.zeros((8, 64)))
    sizes = [sum(t.numel() * t.element_size() for t in b.values()) for _, b in lin.jacobian_blocks()]
    assert len(sizes) == 3 and max(sizes) <= 8 * 2**20
    with pytest.raises(ValueError, match="jacobian_chunk_mb"):
        TorchModel(mlp(), jacobian_chunk_mb=0)


def peak_while(fn):
    """(resident-set peak above the level before, MiB, fn's result): VmHWM reset by clear_refs."""
    from host.bench.torch_scale import _reset_peak, _status_mib
    base = _status_mib("VmRSS")
    _reset_peak()
    result = fn()
    return _status_mib("VmHWM") - base, result


@pytest.mark.parametrize("chunk_mb", [4.0, 1e5])
def test_the_host_holds_the_factor_and_about_one_chunk(chunk_mb):
    """Peak resident memory while U is computed (N = 33 738, B = 32, K = 10: U is 82 MiB): U plus
    about a chunk (4 MiB); with the whole batch in one chunk, U twice (the whole-batch jacrev of
    before took about 5 × U). Arrays this large are mapped afresh, so the peak sees them."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pytest.skip("needs Linux /proc (VmHWM, clear_refs)")
    objective = TorchObjective(mlp((64, 256, 64, 10)), "cross_entropy", jacobian_chunk_mb=chunk_mb)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 64)), rng.integers(0, 10, 32)
    theta = objective.model.flatten()
    objective.ggn_sqrt(theta, X[:2], y[:2])              # first-use allocations
    delta, U = peak_while(lambda: objective.ggn_sqrt(theta, X, y))
    u = U.nbytes / 2**20
    assert U.shape == (320, 33738)
    if chunk_mb < 100:
        assert delta < u + 4 * chunk_mb + 12, (delta, u)
    else:
        assert delta > 1.8 * u, (delta, u)                # (the measurement sees a second U)


def test_tngd_on_a_torch_model_through_a_spawned_daemon():
    module = mlp((6, 16, 3), seed=2)
    g = torch.Generator().manual_seed(3)
    X = torch.randn(16, 6, generator=g)
    y = (X[:, 0] > 0).long() + (X[:, 1] > 0.5).long()
    n = sum(p.numel() for p in module.parameters())
    with optimizer("tngd", module, "cross_entropy", device=f"spawn://?cells={n}&max_rank=48&seed=0",
                   lr=0.5, lam=0.1, t=20.0) as run:
        assert run.model.chunk_examples(3) >= 16
        run.model.jacobian_chunk_mb = 3 * n * 8 * 5 / 2**20          # 5 examples per chunk: 4 chunks
        losses = [run.step(X, y) for _ in range(5)]
        assert run.info["rank"] == 48 and run.model.per_example
        proc = run.optimizer.device.driver.proc
    assert losses[-1] < 0.8 * losses[0]
    assert proc.poll() is not None                                     # the run's daemon is stopped


def test_the_bench_table_gives_ratios_to_adam_and_memory_as_multiples_of_j():
    from host.bench.torch_scale import table
    base = {"case": "MLP 64-8-10", "n": 610, "r": 320, "batch": 32, "j_mib": 1.5, "host_base_mib": 500.0}
    rows = [base | {"algo": "adam", "step_s": 1e-3, "over_adam": 1.0, "host_peak_mib": 501.0, "host_over_j": 0.7},
            base | {"algo": "tngd", "step_s": 0.1, "over_adam": 100.0, "digital_s": 0.02, "protocol_s": 0.05,
                    "emulation_s": 0.03, "host_peak_mib": 506.0, "host_over_j": 4.0, "daemon_base_mib": 200.0,
                    "daemon_peak_mib": 206.0, "daemon_over_j": 4.0, "exact": False, "exact_frac": 0.25,
                    "traced_mib": 3.2}]
    lines = table(rows).splitlines()
    assert len(lines) == 4 and lines[0].count("|") == lines[2].count("|") == lines[3].count("|")
    assert "| torch Adam | 1 ms | 1.0 | — | — | — | — | 501 MiB (+1, 0.7×) | — |" in lines[2]
    assert ("| 100.0 | 20% (20 ms) | 50% (50 ms) | 30% (30 ms) | 25% | 506 MiB (+6, 4.0×; 3) | 206 MiB (+6, 4.0×) |"
            in lines[3])
    assert "NOT in use" in lines[3]


@pytest.mark.slow
def test_the_bench_runs_quick():
    """python -m host.bench.torch_scale --quick: the N ≈ 10⁴ case, five fresh workers (~1 min)."""
    from host.bench.torch_scale import run
    rows = run(quick=True, iterations=1)
    assert [r["algo"] for r in rows] == ["adam", "factor", "factor_jacrev", "ngd", "tngd"]
    tngd_row = rows[-1]
    assert tngd_row["exact"] and tngd_row["daemon_peak_mib"] > tngd_row["daemon_base_mib"]
    assert 0.0 <= tngd_row["exact_frac"] <= 1.0 + 1e-9
    assert tngd_row["digital_s"] + tngd_row["device_call_s"] <= 1.5 * tngd_row["step_s"]
