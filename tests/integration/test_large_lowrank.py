"""A chip of 10⁵ cells: low rank only, memory O(rN), solved exactly through the real daemon.

The daemon runs as a subprocess on a real socket; the solution of (λI + JᵀJ)x = b it returns is
checked against Woodbury's formula, and its resident memory against what O(rN) allows.
"""
from __future__ import annotations

import numpy as np
import pytest

import host
from protocol.regmap import REGMAP
from protocol.status import Status
from support import start_daemon

CELLS, RANK = 100_000, 16


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def big_daemon():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", str(CELLS), "--max-rank", str(RANK))
    yield d
    d.stop()


def test_a_hundred_thousand_cells_solve_a_low_rank_system(big_daemon) -> None:
    rng = np.random.default_rng(3)
    J = rng.standard_normal((RANK, CELLS)) / np.sqrt(CELLS) * 3.0
    lam = 0.5
    b = rng.uniform(-1, 1, CELLS) * 0.2
    with host.connect(big_daemon.endpoint, timeout=60.0) as dev:
        info = dev.info()
        assert info["n_cells"] == CELLS
        assert "lowrank" in info["caps"] and "dense" not in info["caps"]
        dev.configure(temperature=1e-6)
        dev.load_lowrank(J, np.eye(RANK), np.full(CELLS, lam))
        dev.load_bias(b)
        dev.commit()
        assert dev.read("EMU_EXACT") == 1                 # the r-dimensional problem, exactly
        dev.run(60.0)
        x = dev.state()
        assert dev.read("EMU_EXACT_TIME") >= 60.0          # not EM's: that would take minutes
        rss = _rss_mib(big_daemon.proc.pid)
    # Woodbury: (λI + JᵀJ)⁻¹b = b/λ − Jᵀ(λI + JJᵀ)⁻¹Jb/λ
    exact = b / lam - J.T @ np.linalg.solve(lam * np.eye(RANK) + J @ J.T, J @ b) / lam
    # κ = 1e-6 leaves a relative noise of ~sqrt(κ/λ)/|x|·… ≈ 1e-3 per cell; q31 codes 1e-9
    assert np.linalg.norm(x - exact) / np.linalg.norm(exact) < 1e-2
    # O(rN): a dense N×N of int32 would be 40 GB; the windows of a 10⁵-cell, rank-16 chip and
    # the core's float copies are tens of MB
    assert rss < 1024, f"daemon resident memory {rss:.0f} MiB"


def test_a_dense_coupling_is_refused_on_a_chip_too_large_for_it(big_daemon) -> None:
    with host.connect(big_daemon.endpoint, timeout=60.0) as dev:
        dev.write("COUPLING_MODE", 0)
        with pytest.raises(host.DeviceError) as e:
            dev.commit()
        assert e.value.status == Status.RANGE
        assert dev.read("COUPLING_MODE") == 0             # the shadow keeps what was written
        dev.write("COUPLING_MODE", 1)
    assert REGMAP.COUPLING.depth_for({"N_CELLS": CELLS, "MAX_RANK": RANK}) == REGMAP.COUPLING.span
