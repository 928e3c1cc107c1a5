"""One TNGD iteration on the README's main job (digits MLP 64-32-10, batch 32: N = 2410 cells,
rank r = 320, t = 50 τ0) through a ``spawn://`` daemon, its wall time split into

- **digital**: the host's gradient and GGN factors (J, H) of the batch;
- **emulation**: the Euler–Maruyama integration of the run, re-timed in this process with the
  daemon's kernel at the same N, r and substep (EMU_DT read back), noise draws included;
- **protocol**: the rest of the device call — packing q31 codes, the msgpack codec, the
  socket both ways, the daemon's checks and COMMIT (device call − emulation).

Medians over the iterations after the first (which uploads the DIAG and warms caches).
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from host.bench.timing import per_call


def run(quick: bool = False, iterations: int = 0) -> list[dict]:
    import host
    from device.analog import kernels
    from host.data.dataset import minibatches
    from host.optim import ALGORITHMS
    from host.training import TrainConfig, build_problem, device_url
    from threadpoolctl import threadpool_limits

    iterations = iterations or (4 if quick else 8)
    ds, objective = build_problem(TrainConfig(algo="tngd", dataset="digits"))
    model, batch = objective.model, 32
    rank = batch * ds.n_classes
    rng = np.random.default_rng(0)
    theta = model.init(rng)
    rows = {"digital": [], "device call": [], "iteration": []}
    with threadpool_limits(1), host.connect(device_url("spawn://", model.n_params, rank, 0)) as dev:
        spec = ALGORITHMS["tngd"]
        opt = spec.build(dev, **{k: v[1] for k, v in spec.params.items()})
        state = opt.init(theta, rng)
        batches = minibatches(ds.X_train, ds.y_train, batch, np.random.default_rng(1))
        for i in range(iterations + 1):
            X, y = next(batches)
            t0 = time.perf_counter()
            state, info = opt.step(state, X, y, objective)
            wall = time.perf_counter() - t0
            if i:
                rows["iteration"].append(wall)
                rows["device call"].append(info["device_call_s"])
                rows["digital"].append(wall - info["device_call_s"])
        dt = float(dev.read("EMU_DT"))
        t_run = opt.direction.t
    # the same integration, timed here with the daemon's kernel (one thread, as the daemon)
    n, substeps = model.n_params, math.ceil(t_run / dt)
    J, H = objective.ggn_factors(state.theta, X, y)
    lam, b = np.full(n, 0.01), rng.standard_normal(n) * 0.01
    x, v, acc, ones = np.zeros(n), np.zeros(n), np.zeros(n), np.ones(n)
    und, sig, sat = np.zeros(n, np.bool_), np.zeros(n), np.zeros(n, np.uint8)
    xi = np.empty((substeps, n))
    with threadpool_limits(1):
        emulation = per_call(lambda: (xi.fill(0.0),
                                      kernels.em_lowrank(x, v, J, H, lam, b, ones, ones, und, sig, xi, dt,
                                                         10.0, sat, acc)), repeats=3)
    med = {k: statistics.median(v) for k, v in rows.items()}
    protocol = med["device call"] - emulation
    total = med["iteration"]
    return [{"case": f"TNGD iteration, digits (N = {n}, r = {J.shape[0]}, t = {t_run:g} τ0, "
                     f"{substeps} substeps)",
             "iteration_s": total, "digital_s": med["digital"], "emulation_s": emulation,
             "protocol_s": protocol, "digital_frac": med["digital"] / total,
             "emulation_frac": emulation / total, "protocol_frac": protocol / total}]
