"""Trajectory sampling and COMMIT cost: what exact propagation buys, against thermox.

- **sampling**: points per second of ``dev.samples(n, period=1 τ0)`` on ``local://`` (the
  emulator in this process, through the whole protocol), N = 256 cells, a dense SPD coupling with
  eigenvalues 1…10 in a random basis, κ = 10⁻³ — exact propagation (the emulator's default)
  against thermox.sample (exact OU sampling in JAX, float32 as it comes: the reference a user
  would reach for instead) and against Euler–Maruyama (EMU_INTEGRATOR = 0), same run. thermox
  is an optional peer: without it the row says so and the ratio is to EM.
- **commit**: a dense N = 1024 COMMIT (the same spectrum) with exact propagation (its eigen-
  decomposition) against EM's (the Lanczos estimate of the stiffest rate), warm-started as on
  consecutive commits — paid once per commit.
- **growth** (not with --quick): wall time against the device time t of one run, and against N,
  for EM, exact propagation and thermox, in the analog core itself (no protocol), plotted to
  docs/figures/bench-sampling-growth.png.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

FIGURE = Path(__file__).resolve().parents[2] / "docs" / "figures" / "bench-sampling-growth.png"


def _problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.linspace(1.0, 10.0, n)) @ q.T, rng.uniform(-1, 1, n)


def _device_points_per_s(n_points: int, integrator: str) -> float:
    import host
    n = 256
    A, b = _problem(n)
    with host.connect(f"local://?cells={n}") as dev:
        dev.configure(temperature=1e-3, integrator=integrator)
        dev.load_coupling(A)
        dev.load_bias(b)
        dev.commit()
        dev.run(5.0)
        dev.samples(min(n_points, 20), period=1.0)   # warm: kernels, caches
        t0 = time.perf_counter()
        dev.samples(n_points, period=1.0)
        return n_points / (time.perf_counter() - t0)


def _thermox() -> Any | None:
    try:
        import jax  # noqa: F401
        import thermox
    except ImportError:
        return None
    return thermox


def _thermox_seconds(tx: Any, A: np.ndarray, b: np.ndarray, ts: np.ndarray,
                     repeats: int = 3) -> float:
    """Seconds of one thermox.sample over the times ``ts`` (compiled first, then the median),
    its drift and diffusion preprocessed beforehand."""
    import jax
    import jax.numpy as jnp
    n = A.shape[0]
    args = (jnp.asarray(ts), jnp.zeros(n), jnp.asarray(A), jnp.asarray(np.linalg.solve(A, b)),
            jnp.asarray(2e-3 * np.eye(n)))
    # its diagonalisation once, outside the timing, as our COMMIT is: sampling against sampling
    drift, diffusion = tx.preprocess(args[2], args[4])
    args = (args[0], args[1], drift, args[3], diffusion)
    key = jax.random.PRNGKey(0)
    tx.sample(key, *args).block_until_ready()
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        tx.sample(jax.random.PRNGKey(k + 1), *args).block_until_ready()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _commit_s(repeats: int, integrator: str) -> float:
    from device.analog import AnalogCore, CoreParams, get_profile
    n = 1024
    A, _ = _problem(n, 1)
    core = AnalogCore(n, 2, get_profile("ideal"), serial=0, seed=0)
    core.set_integrator(integrator)
    times = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        core.program(CoreParams(active=n, A=A * (1 + 1e-3 * k), temperature=1e-3))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def _core_seconds(n: int, integrator: str, t: float, points: int) -> float:
    """One run of ``points`` stretches of t/points τ0 each in the analog core (no protocol),
    commit excluded."""
    from device.analog import AnalogCore, CoreParams, get_profile
    A, b = _problem(n)
    core = AnalogCore(n, 2, get_profile("ideal"), serial=0, seed=0)
    core.set_integrator(integrator)
    core.program(CoreParams(active=n, A=A, bias=b, temperature=1e-3))
    period = t / points
    run: Callable[[], Any] = (lambda: core.sample_run(period, points)) if points > 1 and \
        integrator == "exact" else (lambda: [core.advance(period) for _ in range(points)])
    run()
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def _growth(tx: Any | None) -> dict:
    """Cost against device time (N = 256, one run of length t) and against N (100 points one
    τ0 apart), for the three integrators."""
    out: dict[str, dict[str, list]] = {"t": {}, "n": {}}
    ts = [1.0, 10.0, 100.0, 1000.0]
    ns = [64, 128, 256, 512, 1024]
    for name in ("em", "exact", "thermox"):
        if name == "thermox" and tx is None:
            continue
        if name == "thermox":
            cost_t = [_thermox_seconds(tx, *_problem(256), np.array([0.0, t])) for t in ts]
            cost_n = [_thermox_seconds(tx, *_problem(n), np.arange(101.0)) for n in ns]
        else:
            cost_t = [_core_seconds(256, name, t, 1) for t in ts]
            cost_n = [_core_seconds(n, name, 100.0, 100) if name == "exact" or n <= 256
                      else float("nan") for n in ns]   # EM beyond 256: minutes, and linear
        out["t"][name], out["n"][name] = cost_t, cost_n
    out["t"]["x"], out["n"]["x"] = ts, ns
    return out


def _plot(growth: dict) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(matplotlib not installed: no figure)"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, xlabel, title in ((axes[0], "t", "device time of one run t (τ0)",
                                    "one run, N = 256 dense"),
                                   (axes[1], "n", "cells N",
                                    "100 trajectory points one τ0 apart")):
        for name, style in (("em", "o-"), ("exact", "s-"), ("thermox", "^-")):
            if name in growth[key]:
                ax.loglog(growth[key]["x"], growth[key][name], style,
                          label={"em": "Euler–Maruyama", "exact": "exact propagation",
                                 "thermox": "thermox.sample"}[name])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("wall time (s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("thermohil bench --only sampling: cost against work (analog core, no protocol)")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=110)
    plt.close(fig)
    return str(FIGURE.relative_to(FIGURE.parents[2]))


def run(quick: bool = False) -> list[dict]:
    points = 200 if quick else 1000
    tx = _thermox()
    exact = _device_points_per_s(points, "exact")
    em = _device_points_per_s(max(20, points // 10), "em")
    rows = []
    if tx is not None:
        A, b = _problem(256)
        peer = points / _thermox_seconds(tx, A, b, np.arange(points + 1.0))
        rows.append({"case": "trajectory points per second, N = 256 dense (λ 1…10), period 1 τ0, "
                             "through the protocol (local://): exact propagation vs thermox.sample",
                     "ours": exact, "reference": peer, "ratio": exact / peer,
                     "unit": "points/s"})
    else:
        rows.append({"case": "thermox not installed (pip install thermox): no thermox figures",
                     "ours": float("nan"), "reference": float("nan"), "ratio": float("nan"),
                     "unit": "points/s"})
    rows.append({"case": "trajectory points per second, as above: exact propagation vs "
                         "Euler–Maruyama (EMU_INTEGRATOR = 0)",
                 "ours": exact, "reference": em, "ratio": exact / em, "unit": "points/s"})
    repeats = 3 if quick else 6
    commit, commit_em = _commit_s(repeats, "exact"), _commit_s(repeats, "em")
    rows.append({"case": "COMMIT of a dense N = 1024 coupling (λ 1…10): exact propagation's "
                         "eigendecomposition vs EM's warm-started Lanczos estimate",
                 "ours": commit, "reference": commit_em, "ratio": commit / commit_em, "unit": "s"})
    if not quick:
        growth = _growth(tx)
        where = _plot(growth)
        for key, label in (("t", "one run of t τ0, N = 256"), ("n", "100 points, N cells")):
            xs = growth[key]["x"]
            for i, x in enumerate(xs):
                ours = growth[key]["exact"][i]
                ref = growth[key]["thermox"][i] if "thermox" in growth[key] else growth[key]["em"][i]
                rows.append({"case": f"{label}: {'t' if key == 't' else 'N'} = {x:g} "
                                     f"(figure: {where})",
                             "ours": ours, "reference": ref, "ratio": ours / ref, "unit": "s",
                             "em": growth[key]["em"][i]})
    return rows
