"""Why the daemon pins BLAS to one thread: the low-rank kernel's time per substep at the TNGD
digits size (N = 2410, r = 320), with the default BLAS threads and with one, in the same run.

    python -m device.analog.blas_threads_bench [--busy]

``--busy`` starts a competing CPU-bound process per core first, as a host process and other
daemons are on a shared machine. Prints a line for docs/performance.md.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from device.analog import kernels


def _spin(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def ms_per_substep(n: int = 2410, r: int = 320, substeps: int = 200, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    J, H = rng.standard_normal((r, n)) * 0.01, np.eye(r) * 0.01
    lam, b = np.full(n, 0.01), rng.standard_normal(n) * 0.01
    x, v, acc = np.zeros(n), np.zeros(n), np.zeros(n)
    ones, und, sig = np.ones(n), np.zeros(n, np.bool_), np.zeros(n)
    xi, sat = np.zeros((substeps, n)), np.zeros(n, np.uint8)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call may compile or load the kernel
        t0 = time.perf_counter()
        kernels.em_lowrank(x, v, J, H, lam, b, ones, ones, und, sig, xi, 0.01, 10.0, sat, acc)
        best = min(best, time.perf_counter() - t0)
    return best / substeps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", action="store_true", help="one competing busy process per core")
    a = p.parse_args()
    stop, procs = mp.Event(), []
    if a.busy:
        procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
        for pr in procs:
            pr.start()
    try:
        threads = max((i.get("num_threads", 1) for i in threadpool_info()), default=1)
        default = ms_per_substep()
        with threadpool_limits(1):
            single = ms_per_substep()
    finally:
        stop.set()
        for pr in procs:
            pr.join()
    print(f"em_lowrank N=2410 r=320{' (cores busy)' if a.busy else ''}: {default:.3f} ms/substep with "
          f"{threads} BLAS threads, {single:.3f} ms with 1 — ratio {default / single:.1f}x")


if __name__ == "__main__":
    main()
