"""How well ``linalg.solve`` keeps its promise on a non-ideal device, measured.

    python -m host.linalg.accuracy [--profile realistic] [--systems 20] [--n 48] [--tol 1e-2]
                                   [--device URL] [--no-calibrate] [--refine K]

Random SPD systems (eigenvalues geometrically spaced in [1, κ], κ drawn log-uniformly in 5–50,
b uniform in [−1, 1]) are solved with the defaults; each row compares the true relative error
with the reported estimate. The table says how often the error met ``tol`` and how often the
estimate covered the truth (the two promises a user relies on), and what it cost.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import scipy.linalg

import host
from host import linalg


def random_spd(n: int, cond: float, rng: np.random.Generator) -> np.ndarray:
    """Random SPD matrix with eigenvalues geometrically spaced in [1, cond]."""
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def run(url: str, systems: int, n: int, tol: float, calibrate: bool, refine: int | None) -> dict:
    rows = []
    with host.connect(url) as dev:
        for k in range(systems):
            rng = np.random.default_rng(1000 + k)
            cond = float(np.exp(rng.uniform(np.log(5), np.log(50))))
            A, b = random_spd(n, cond, rng), rng.uniform(-1, 1, n)
            exact = scipy.linalg.solve(A, b, assume_a="pos")
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                sol = linalg.solve(dev, A, b, tol=tol, calibrate=calibrate, refine=refine)
            true = float(np.linalg.norm(sol.x - exact) / np.linalg.norm(exact))
            rows.append({"cond": cond, "true": true, "estimate": sol.relative_error_estimate,
                         "refinements": sol.refinements, "device_time": sol.device_time,
                         "converged": sol.converged, "wall": sol.wall_time})
            print(f"  system {k:2d}: κ = {cond:5.1f}, true {true:.2e}, estimate "
                  f"{sol.relative_error_estimate:.2e}, {sol.refinements} refinement(s), "
                  f"{sol.device_time:.3g} τ0", file=sys.stderr, flush=True)
    true = np.array([r["true"] for r in rows])
    est = np.array([r["estimate"] for r in rows])
    return {"rows": rows, "met_tol": int(np.sum(true <= tol)), "covered": int(np.sum(true <= est)),
            "median_true": float(np.median(true)), "max_true": float(np.max(true)),
            "median_ratio": float(np.median(est / true)),
            "median_refinements": float(np.median([r["refinements"] for r in rows])),
            "median_device_time": float(np.median([r["device_time"] for r in rows]))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.linalg.accuracy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="realistic")
    p.add_argument("--device", default=None, help="device URL (default: spawn://?profile=PROFILE)")
    p.add_argument("--systems", type=int, default=20)
    p.add_argument("--n", type=int, default=48)
    p.add_argument("--tol", type=float, default=1e-2)
    p.add_argument("--no-calibrate", dest="calibrate", action="store_false")
    p.add_argument("--refine", type=int, default=None, help="refinement steps (default: automatic)")
    a = p.parse_args(argv)
    if a.systems < 1 or a.n < 2 or not 0 < a.tol < 1:
        p.error("need --systems >= 1, --n >= 2 and 0 < --tol < 1")
    url = a.device or f"spawn://?profile={a.profile}&cells={max(64, a.n)}"
    t0 = time.perf_counter()
    r = run(url, a.systems, a.n, a.tol, a.calibrate, a.refine)
    opts = ("" if a.calibrate else " --no-calibrate") + ("" if a.refine is None else f" --refine {a.refine}")
    print(f"`python -m host.linalg.accuracy --profile {a.profile} --systems {a.systems} --n {a.n} "
          f"--tol {a.tol:g}{opts}` ({time.perf_counter() - t0:.0f} s)\n")
    print("| systems | true error ≤ tol | estimate ≥ true error | median true error (max) | "
          "median estimate / true | median refinements | median device time (τ0) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {a.systems} | {r['met_tol']} | {r['covered']} | {r['median_true']:.2e} "
          f"({r['max_true']:.2e}) | {r['median_ratio']:.2g} | {r['median_refinements']:g} | "
          f"{r['median_device_time']:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
