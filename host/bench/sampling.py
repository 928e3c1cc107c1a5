"""Trajectory sampling and COMMIT cost, the two places the substep's stiffness rate shows.

- **sampling**: points per second of ``dev.samples(n, period=1 τ0)`` on ``local://`` (the
  emulator in this process), N = 256 cells, a dense SPD coupling with eigenvalues 1…10 in a
  random basis, κ = 10⁻³: the automatic substep from the Lanczos estimate of λmax (what the
  emulator does) against the substep from the Gershgorin bound (what it did), same run.
- **commit**: what the estimate costs at COMMIT for a dense N = 1024 coupling (the same
  spectrum), warm-started as on consecutive commits, against the Gershgorin bound — paid once
  per commit, against the substeps it saves in every run that follows.

(thermox, the JAX reference for exact OU sampling, is not installed here; the comparison with it
is left to a machine that has it.)
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np


@contextmanager
def _gershgorin() -> Iterator[None]:
    from device.analog import stiffness
    estimate = stiffness.rate
    stiffness.rate = lambda eff, warm=None: (stiffness.bound(eff), None)
    try:
        yield
    finally:
        stiffness.rate = estimate


def _points_per_s(n_points: int) -> tuple[float, float]:
    import host
    rng = np.random.default_rng(0)
    n = 256
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * np.linspace(1.0, 10.0, n)) @ q.T
    with host.connect(f"local://?cells={n}") as dev:
        dev.configure(temperature=1e-3)
        dev.load_coupling(A)
        dev.load_bias(rng.uniform(-1, 1, n))
        dev.commit()
        dev.run(5.0)
        dt = float(dev.read("EMU_DT"))
        t0 = time.perf_counter()
        dev.samples(n_points, period=1.0)
        return n_points / (time.perf_counter() - t0), dt


def _commit_s(repeats: int) -> float:
    from device.analog import AnalogCore, CoreParams, get_profile
    rng = np.random.default_rng(1)
    n = 1024
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * np.linspace(1.0, 10.0, n)) @ q.T
    core = AnalogCore(n, 2, get_profile("ideal"), serial=0, seed=0)
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        core.program(CoreParams(active=n, A=A * (1 + 1e-3 * k)))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def run(quick: bool = False) -> list[dict]:
    points = 50 if quick else 300
    ours, dt = _points_per_s(points)
    with _gershgorin():
        ref, dt_ref = _points_per_s(points)
    commit = _commit_s(3 if quick else 8)
    with _gershgorin():
        commit_ref = _commit_s(3 if quick else 8)
    return [{"case": f"trajectory points per second, N = 256 dense (λ 1…10), period 1 τ0: "
                     f"substep {dt:.2g} vs {dt_ref:.2g} τ0", "ours": ours, "reference": ref,
             "ratio": ours / ref, "unit": "points/s"},
            {"case": "COMMIT of a dense N = 1024 coupling (λ 1…10), warm-started",
             "ours": commit, "reference": commit_ref, "ratio": commit / commit_ref, "unit": "s"}]
