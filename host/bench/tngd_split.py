"""One TNGD iteration on the README's main job (digits MLP 64-32-10, batch 32: N = 2410 cells,
rank r = 320, t = 50 τ0) through a ``spawn://`` daemon, with exact propagation (the emulator's
default) against Euler–Maruyama (EMU_INTEGRATOR = 0, the reference) in the same run. The exact
iteration's wall time is split into

- **digital**: the host's gradient and GGN factor U (G = UᵀU) of the batch;
- **emulation**: what the daemon's analog core does, re-timed in this process on the same U:
  its COMMIT work (the spectrum of the r-dimensional problem) and the run;
- **protocol**: the rest of the device call — the q31 codes, the codec, the socket both ways,
  the daemon's checks and converters (device call − emulation).

Medians over the iterations after the first (which uploads the DIAG and warms caches).
A second case runs a wider MLP the same way, for how the cost grows with N.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from host.bench.timing import per_call


def _iterations(url: str, objective, ds, integrator: str, iterations: int) -> dict:
    import host
    from host.data.dataset import minibatches
    from host.optim import ALGORITHMS

    spec = ALGORITHMS["tngd"]
    rng = np.random.default_rng(0)
    rows: dict[str, list[float]] = {"digital": [], "device call": [], "iteration": []}
    with host.connect(url) as dev:
        dev.configure(integrator=integrator)
        opt = spec.build(dev)
        state = opt.init(objective.model.init(rng), rng, groups=objective.model.groups)
        batches = minibatches(ds.X_train, ds.y_train, 32, np.random.default_rng(1))
        for i in range(iterations + 1):
            X, y = next(batches)
            t0 = time.perf_counter()
            state, info = opt.step(state, X, y, objective)
            wall = time.perf_counter() - t0
            if i:
                rows["iteration"].append(wall)
                rows["device call"].append(info["device_call_s"])
                rows["digital"].append(wall - info["device_call_s"])
        exact = bool(dev.read("EMU_EXACT"))
        t_run = opt.direction.t
        proc = getattr(dev.driver, "proc", None)
        rss = _peak_rss_mib(proc.pid) if proc is not None else float("nan")
    out = {k: statistics.median(v) for k, v in rows.items()}
    return out | {"exact": exact, "t": t_run, "theta": state.theta, "batch": (X, y), "rss": rss}


def _peak_rss_mib(pid: int) -> float:
    """The daemon's peak resident memory (VmHWM), MiB; NaN where /proc is not there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _emulation(objective, theta, batch, t_run: float) -> float:
    """The daemon core's share, timed here on the same factor: COMMIT's spectrum and the run."""
    return emulation_time(objective.ggn_sqrt(theta, *batch), t_run)


def emulation_time(U: np.ndarray, t_run: float) -> float:
    """The daemon core's work on the factor U, timed in this process: COMMIT's spectrum and a
    run of t_run."""
    from device.analog import AnalogCore, CoreParams, get_profile
    r, n = U.shape
    core = AnalogCore(n, r, get_profile("ideal"), serial=0, seed=0)
    b = np.random.default_rng(2).standard_normal(n) * 0.01
    params = CoreParams(active=n, coupling="lowrank", J=U, H=np.eye(r), lam=np.full(n, 0.01),
                        bias=b, temperature=0.0)
    acc = np.zeros(n)
    return per_call(lambda: (core.program(params), core.advance(t_run, acc)), repeats=3)


def _case(hidden: tuple[int, ...] | None, iterations: int, reference: bool) -> dict:
    from host.problem import build_problem
    from host.training import device_url
    from threadpoolctl import threadpool_limits

    problem = build_problem("digits", hidden=hidden)
    ds, objective = problem.data, problem.objective
    n = objective.model.n_params
    url = device_url("spawn://", n, 32 * ds.n_classes, 0)
    with threadpool_limits(1):
        ours = _iterations(url, objective, ds, "exact", iterations)
        ref = _iterations(url, objective, ds, "em", max(2, iterations // 2)) if reference else None
        emulation = _emulation(objective, ours["theta"], ours["batch"], ours["t"])
    total = ours["iteration"]
    protocol = ours["device call"] - emulation
    row = {"case": f"TNGD iteration, digits MLP {hidden or 'default'} (N = {n}, "
                   f"r = {32 * ds.n_classes}, t = {ours['t']:g} τ0), exact propagation"
                   + ("" if ours["exact"] else " NOT IN USE"),
           "n": n, "daemon_peak_rss_mib": ours["rss"], "iteration_s": total, "digital_s": ours["digital"], "emulation_s": emulation,
           "protocol_s": protocol, "digital_frac": ours["digital"] / total,
           "emulation_frac": emulation / total, "protocol_frac": protocol / total}
    if ref is not None:
        row |= {"reference_iteration_s": ref["iteration"], "ratio": total / ref["iteration"]}
    return row


def run(quick: bool = False, iterations: int = 0) -> list[dict]:
    iterations = iterations or (4 if quick else 8)
    rows = [_case(None, iterations, reference=True)]
    if not quick:  # N ≈ 10⁴ and 10⁵ (the 10⁵-cell emulator is low rank only)
        rows.append(_case((96, 48), iterations, reference=False))
        rows.append(_case((512, 128), max(2, iterations // 4), reference=False))
    return rows
