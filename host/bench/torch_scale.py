"""Torch models at N ≈ 10⁴ and 10⁵ parameters: one TNGD iteration on a ``spawn://`` daemon sized
for the model, against one torch Adam step and one exact Woodbury NGD step on the same model
and batch, with the peak memory of the host and of the daemon.

``python -m host.bench.torch_scale [--quick] [--json FILE]`` (or ``thermohil bench --only
torch``). Per model (a torch MLP 64-h1-h2-10 on random digits-shaped data: 64 features, 10
classes; batch B, rank r = 10·B ≤ 512), each algorithm runs in a fresh subprocess, so peaks do
not mix:

- **adam**: ``torch.optim.Adam`` — forward, backward and step on the float32 module: the
  reference every time in the table is divided by;
- **factor**: the GGN factor U (G = UᵀU) alone, as host.torch computes it (streamed, a chunk of
  examples at a time); **factor_jacrev**: the same U the way host.torch did before, ``jacrev`` of
  the whole batch's outputs (J whole), then L_bᵀJ_b/√B — the reference for the streamed form;
- **ngd**: ``host.optim.ngd(solver="woodbury")`` on ``host.torch.TorchObjective`` (float64
  gradient, the factor U with G = UᵀU, the r×r solve);
- **tngd**: ``host.optim.tngd`` on the daemon, split as ``host/bench/tngd_split.py`` does:
  digital (gradient and U), emulation (the daemon core's COMMIT and an exact run, re-timed in
  the worker on the same U), protocol (the rest of the device call). ``exact`` is the share of
  the runs' device time (drift checks left out) the daemon propagated exactly (EMU_EXACT_TIME):
  a stretch whose path may come near a rail is integrated by Euler–Maruyama instead, and that
  time falls in "protocol".

Times are medians over the iterations after the first. Host and torch run on one thread each
(``threadpool_limits(1)``, ``torch.set_num_threads(1)``), as the daemon does, so on a two-core
machine host and daemon each have one. Memory: the worker's peak resident set (VmHWM, reset
once the imports are done and torch.func is warm) above its resident set at that point, and the
same for the daemon above its resident set after boot; each also as a multiple of J's size
r·N·8 bytes (the per-example Jacobian of the batch, float64). "numpy" is tracemalloc's peak
(numpy and Python allocations, not torch's) over two more steps, above what was allocated before
them: the share of the host's Δ that is not torch's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import numpy as np

from host.bench.tngd_split import emulation_time

CASES: tuple[dict, ...] = (
    {"name": "MLP 64-96-48-10", "hidden": (96, 48), "batch": 32},
    {"name": "MLP 64-512-128-10", "hidden": (512, 128), "batch": 32},
    {"name": "MLP 64-512-128-10", "hidden": (512, 128), "batch": 51},
)
ALGOS = ("adam", "factor", "factor_jacrev", "ngd", "tngd")
FEATURES, CLASSES = 64, 10
T_RUN = 50.0        # TNGD's analog time per iteration (τ0), the library's default
MIB = 2.0**20


# ---------------------------------------------------------------------------------- the worker
def _status_mib(key: str, pid: int | str = "self") -> float:
    """A /proc/PID/status figure (VmRSS, VmHWM) in MiB; NaN where /proc is not there."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _reset_peak() -> None:
    """Start VmHWM afresh from the current resident set (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _module(hidden: tuple[int, ...], seed: int = 0) -> Any:
    import torch
    sizes = (FEATURES, *hidden, CLASSES)
    layers: list[Any] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    torch.manual_seed(seed)
    return torch.nn.Sequential(*layers)


def _batches(batch: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(rng.uniform(0.0, 16.0, (batch, FEATURES)) / 16.0, rng.integers(0, CLASSES, batch))
            for _ in range(count)]


def _warm_up() -> None:
    """Load what torch.func and the library import on first use, so the peak counts work."""
    import torch
    from host.torch import TorchObjective
    obj = TorchObjective(torch.nn.Linear(3, 2), "cross_entropy")
    th = obj.model.flatten()
    X, y = np.ones((2, 3)), np.array([0, 1])
    obj.value_and_grad(th, X, y)
    obj.ggn_sqrt(th, X, y)


def _adam(module: Any, batches: list, iterations: int) -> list[float]:
    import torch
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)
    times = []
    for X, y in batches[:iterations + 1]:
        Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(Xt), yt).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times[1:]


def _library(opt: Any, objective: Any, batches: list, iterations: int,
             after: Callable[[], float] | None = None) -> tuple[Any, dict]:
    """Steps of a host.optim optimizer; per-step wall time, time in device calls and what
    ``after`` reads after each step (untimed)."""
    state = opt.init(objective.model.flatten(), np.random.default_rng(0))
    rows: dict[str, list[float]] = {"wall": [], "call": [], "device_time": [], "after": []}
    for X, y in batches[:iterations + 1]:
        t0 = time.perf_counter()
        state, info = opt.step(state, X, y, objective)
        rows["wall"].append(time.perf_counter() - t0)
        rows["call"].append(info.get("device_call_s", 0.0))
        rows["device_time"].append(info.get("device_time", 0.0) - info.get("calibration_time", 0.0))
        if after is not None:
            rows["after"].append(after())
    return state, {k: v[1:] for k, v in rows.items()} | {"after": rows["after"]}


def worker(spec: dict) -> dict:
    """One algorithm on one model in this (fresh) process; the figures as a dict."""
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(1)
    algo, iterations = spec["algo"], spec["iterations"]
    module = _module(tuple(spec["hidden"]))
    n = sum(p.numel() for p in module.parameters())
    r = spec["batch"] * CLASSES
    batches = _batches(spec["batch"], iterations + 3)
    out: dict[str, Any] = {"algo": algo, "n": n, "r": r, "batch": spec["batch"], "j_mib": r * n * 8 / MIB}
    with threadpool_limits(1):
        _warm_up()
        base = _status_mib("VmRSS")
        _reset_peak()
        if algo == "adam":
            times = _adam(module, batches, iterations)
            out |= {"step_s": statistics.median(times)}
            out |= {"host_base_mib": base, "host_peak_mib": _status_mib("VmHWM")}
            return out
        from host.optim import Optimizer, ngd, tngd
        from host.torch import TorchObjective
        objective = TorchObjective(module, "cross_entropy")
        if algo in ("factor", "factor_jacrev"):
            make = objective.ggn_sqrt if algo == "factor" else _factor_by_whole_jacobian(objective)
            theta, times = objective.model.flatten(), []
            for X, y in batches[:iterations + 1]:
                t0 = time.perf_counter()
                U = make(theta, X, y)
                times.append(time.perf_counter() - t0)
                del U
            out |= {"step_s": statistics.median(times[1:]),
                    "host_base_mib": base, "host_peak_mib": _status_mib("VmHWM")}
            return out
        if algo == "ngd":
            opt = Optimizer("ngd", ngd(lr=0.01, lam=0.01, solver="woodbury"))
            _, rows = _library(opt, objective, batches, iterations)
            out |= {"step_s": statistics.median(rows["wall"]),
                    "host_base_mib": base, "host_peak_mib": _status_mib("VmHWM")}
            out["traced_mib"] = _traced(opt, objective, batches[-2:])
            return out
        import host
        from host.training import device_url
        url = device_url("spawn://", n, r, 0)
        with host.connect(url) as dev:
            pid = dev.driver.proc.pid
            daemon_base = _status_mib("VmRSS", pid)
            opt = Optimizer("tngd", tngd(dev, lr=0.01, lam=0.01, t=T_RUN))
            state, rows = _library(opt, objective, batches, iterations, lambda: dev.read("EMU_EXACT_TIME"))
            exact_time = rows["after"][-1] - rows["after"][0]     # over the timed iterations
            host_peak = _status_mib("VmHWM")
            out["traced_mib"] = _traced(opt, objective, batches[-2:])
            daemon_peak = _status_mib("VmHWM", pid)
            exact = bool(dev.read("EMU_EXACT"))
        walls, calls = np.array(rows["wall"]), np.array(rows["call"])
        U = objective.ggn_sqrt(state.theta, *batches[iterations])
        emulation = emulation_time(U, T_RUN)
        step, call = float(np.median(walls)), float(np.median(calls))
        out |= {"step_s": step, "digital_s": float(np.median(walls - calls)), "device_call_s": call,
                "emulation_s": emulation, "protocol_s": call - emulation, "exact": exact,
                "exact_frac": exact_time / max(sum(rows["device_time"]), 1e-300),
                "host_base_mib": base, "host_peak_mib": host_peak,
                "daemon_base_mib": daemon_base, "daemon_peak_mib": daemon_peak}
    return out


def _factor_by_whole_jacobian(objective: Any) -> Callable[[np.ndarray, Any, Any], np.ndarray]:
    """U the way host.torch computed it before streaming: jacrev of the whole batch's outputs
    (every row backpropagated through every example, J held whole), then L_bᵀJ_b/√B."""
    from torch.func import jacrev

    def factor(theta: np.ndarray, X: Any, y: Any) -> np.ndarray:
        lin = objective.model.linearize(theta, X)
        B = lin.batch_size
        L = objective.loss.hessian_sqrt(lin.out, y)
        J = jacrev(lin._f)(lin._t).detach().numpy()
        return (np.einsum("bkr,bkp->brp", L, J) / np.sqrt(B)).reshape(B * L.shape[2], -1)
    return factor


def _traced(opt: Any, objective: Any, batches: list) -> float:
    """tracemalloc's peak (MiB) over steps on ``batches``, above what was allocated before."""
    import tracemalloc
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _library(opt, objective, batches, len(batches) - 1)
        return (tracemalloc.get_traced_memory()[1] - before) / MIB
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------------------------- the parent
def _spawn(spec: dict) -> dict:
    """Run ``worker(spec)`` in a fresh interpreter; its result is the last line of stdout."""
    proc = subprocess.run([sys.executable, "-m", "host.bench.torch_scale", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"the {spec['algo']} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False, iterations: int = 0) -> list[dict]:
    """Every case (quick: the N ≈ 10⁴ model only); one row per algorithm and case, with the
    ratios to the Adam step of the same model and batch."""
    rows = []
    for case in CASES[:1] if quick else CASES:
        big = case["hidden"][0] >= 512
        its = iterations or (2 if quick else (4 if big else 8))
        results = {algo: _spawn({"algo": algo, "hidden": list(case["hidden"]), "batch": case["batch"],
                                 "iterations": its * (5 if algo == "adam" else 1)})
                   for algo in ALGOS}
        ref = results["adam"]["step_s"]
        for algo in ALGOS:
            row = results[algo] | {"case": case["name"], "over_adam": results[algo]["step_s"] / ref,
                                   "iterations": its}
            for side in ("host", "daemon"):
                if f"{side}_peak_mib" in row:
                    row[f"{side}_over_j"] = (row[f"{side}_peak_mib"] - row[f"{side}_base_mib"]) / row["j_mib"]
            rows.append(row)
        print(f"  {case['name']} (N = {results['adam']['n']}, r = {results['adam']['r']}) done",
              file=sys.stderr, flush=True)
    return rows


def _t(s: float) -> str:
    from host.bench.timing import fmt_time
    return fmt_time(s)


def table(rows: list[dict]) -> str:
    """The markdown table of docs/performance.md."""
    out = ["| model (N, r = B·K) | step | time | / Adam | digital | protocol | emulation | exact | host peak "
           "(Δ, Δ / J; numpy) | daemon peak (Δ, Δ / J) |", "|---|---|---|---|---|---|---|---|---|---|"]
    names = {"adam": "torch Adam", "factor": "U, streamed", "factor_jacrev": "U, whole-batch jacrev (before)",
             "ngd": "NGD, Woodbury", "tngd": "TNGD, spawn://"}
    for r in rows:
        split = ["—"] * 4
        if r["algo"] == "tngd":
            split = [f"{r[k] / r['step_s']:.0%} ({_t(r[k])})" for k in ("digital_s", "protocol_s", "emulation_s")]
            split.append(f"{r.get('exact_frac', float('nan')):.0%}")
        numpy_share = f"; {r['traced_mib']:.0f}" if "traced_mib" in r else ""
        host = (f"{r['host_peak_mib']:.0f} MiB (+{r['host_peak_mib'] - r['host_base_mib']:.0f}, "
                f"{r['host_over_j']:.1f}×{numpy_share})")
        daemon = (f"{r['daemon_peak_mib']:.0f} MiB (+{r['daemon_peak_mib'] - r['daemon_base_mib']:.0f}, "
                  f"{r['daemon_over_j']:.1f}×)") if "daemon_peak_mib" in r else "—"
        exact = "" if r.get("exact", True) else " (EM: exact propagation NOT in use)"
        n = f"{r['n']:,}".replace(",", " ")
        out.append(f"| {r['case']} (N = {n}, r = {r['r']}; J = {r['j_mib']:.0f} MiB) | "
                   f"{names[r['algo']]}{exact} | {_t(r['step_s'])} | {r['over_adam']:.1f} | "
                   f"{' | '.join(split)} | {host} | {daemon} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.bench.torch_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="the N ≈ 10⁴ model only, 2 iterations")
    p.add_argument("--iterations", type=int, default=0, help="iterations after the first (0: per case)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch_scale — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, load average {load:.2f} "
          "at the start", file=sys.stderr, flush=True)
    rows = run(quick=args.quick, iterations=args.iterations)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_before": load, "command": " ".join(sys.argv), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
