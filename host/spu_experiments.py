"""The published SPU's two experiments, on the emulated SPU (capacitively coupled RLC cells).

    python -m host.spu_experiments [--seeds 3] [--samples 20000] [--out docs/figures]

Melanson et al. (arXiv 2312.04836) sample an 8-dimensional Gaussian and invert an 8×8 matrix on
their 8-cell board: the node voltages of capacitively coupled RLC cells equilibrate to
N(0, κC⁻¹), C the Maxwell capacitance matrix, so the sample covariance over κ estimates C⁻¹.
Here the same two experiments run on ``spawn://?profile=spu-8`` (4-bit coupling capacitor banks,
5 % component tolerance: assumed values, see device/profiles/spu-8.toml) and on an ideal chip
of the same physics, and report the error against sampling time:

* **Gaussian sampling**: a target covariance Σ whose precision is a ring of capacitors (each
  cell coupled to its two neighbours), programmed as C = κΣ⁻¹; error ‖Σ̂ − Σ‖_F/‖Σ‖_F of the
  sample covariance after n samples.
* **Matrix inversion**: a random all-to-all 8×8 capacitance network A, programmed as C = A;
  error ‖Â⁻¹ − A⁻¹‖_F/‖A⁻¹‖_F with Â⁻¹ = Σ̂/κ. (On this physics both are the same estimate,
  Σ̂/κ = C⁻¹, on two matrix families.)

The coarse coupling DACs bias both (the programmed matrix is not the asked one); averaging over
K programmings that each round stochastically (Aifer et al. 2024) removes that bias to first
order. The third table measures the error against K at a fixed number of samples per
programming, on spu-8 and on a variant with 6-bit banks and no component mismatch (whose only
error is the coupling quantisation). Writes OUT/spu.md, OUT/spu.json and OUT/spu.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from host.plots import pyplot

import host

N = 8
KAPPA = 0.25          # V²: the slowest mode's rms voltage stays well inside the ±10 V rails
PERIOD = 2.0          # τ0 between samples: about one decorrelation time of the RLC cells
CHECKPOINTS = (100, 300, 1000, 3000, 10000, 30000)
ENSEMBLES = (1, 2, 4, 8, 16)


def capacitance_network(rng: np.random.Generator, ring: bool = False) -> np.ndarray:
    """The Maxwell capacitance matrix of 8 cells (1 unit each to ground) coupled through
    capacitors of 0–0.5 units, all-to-all or (``ring``) each to its two neighbours only:
    C_ii = C_i + Σ_j C_ij, off-diagonal −C_ij."""
    cc = np.triu(rng.uniform(0.0, 0.5, (N, N)), 1)
    if ring:
        keep = np.zeros((N, N), dtype=bool)
        keep[np.arange(N), (np.arange(N) + 1) % N] = True
        cc = np.triu(np.where(keep | keep.T, rng.uniform(0.3, 0.8, (N, N)), 0.0), 1)
    cc = cc + cc.T
    return np.diag(1.0 + cc.sum(1)) - cc


def draw(dev: host.ThermoDevice, C: np.ndarray, n: int, seed: int | None) -> np.ndarray:
    """n voltage samples of the chip programmed with C (stochastically rounded when ``seed``)."""
    def program() -> None:
        dev.configure(temperature=KAPPA)
        dev.load_capacitance(C, inv_inductance=1.0, conductance=1.0)
        dev.commit()
    if seed is None:
        program()
    else:
        with dev.stochastic_rounding(seed):
            program()
    return dev.samples(n, PERIOD, burn_in=40.0)


def rel_fro(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def curve(X: np.ndarray, target: np.ndarray, scale: float) -> list[float]:
    """Error of the covariance estimate (divided by ``scale``) after each checkpoint."""
    return [rel_fro(np.cov(X[:k].T) / scale, target) for k in CHECKPOINTS if k <= len(X)]


def ensemble_chips(where: Path) -> dict[str, str]:
    """The chips of the ensemble table: spu-8 as assumed, and spu-8 with 6-bit coupling banks
    and no component mismatch (a profile file written for it), whose only error is the
    coupling quantisation that stochastic rounding addresses."""
    from host.study_runs import profile_file
    fine = profile_file("spu-8", {"dac_bits_coupling": 6, "gain_sigma": 0.0, "cap_sigma": 0.0},
                        where)
    return {"spu-8": "spawn://?profile=spu-8",
            "spu-8, 6-bit banks, no mismatch": f"spawn://?profile={fine.resolve()}"}


def run(seeds: int, samples: int, profiles: tuple[str, ...], runs_dir: Path) -> dict:
    out: dict = {"sampling": {}, "inversion": {}, "ensemble": {}}
    for profile in profiles:
        for experiment in ("sampling", "inversion"):
            rows = []
            for s in range(seeds):
                rng = np.random.default_rng(100 + s)
                with host.connect(f"spawn://?profile={profile}&cells={N}&seed={s}") as dev:
                    if experiment == "sampling":   # Σ given (a ring's): program C = κΣ⁻¹
                        sigma = KAPPA * np.linalg.inv(capacitance_network(rng, ring=True))
                        X = draw(dev, KAPPA * np.linalg.inv(sigma), samples, None)
                        rows.append(curve(X, sigma, 1.0))
                    else:                          # A given (all-to-all): Â⁻¹ = Σ̂/κ
                        A = capacitance_network(rng)
                        X = draw(dev, A, samples, None)
                        rows.append(curve(X, np.linalg.inv(A), KAPPA))
            out[experiment][profile] = {"mean": np.mean(rows, 0).tolist(),
                                        "sd": np.std(rows, 0, ddof=1).tolist() if seeds > 1 else
                                        [0.0] * len(rows[0])}
            print(f"  {experiment:<9} {profile:<10} final error {out[experiment][profile]['mean'][-1]:.4f}",
                  file=sys.stderr, flush=True)
    # stochastic-rounding ensembles: inversion error against the ensemble size, on the SPU as
    # assumed and on a variant whose only error is its (finer) coupling quantisation
    per = min(samples, 30000)
    for chip, url in ensemble_chips(runs_dir).items():
        for rounding in ("nearest", "stochastic"):
            rows = []
            for s in range(seeds):
                A = capacitance_network(np.random.default_rng(100 + s))
                with host.connect(f"{url}&seed={s}") as dev:
                    covs = [np.cov(draw(dev, A, per, None if rounding == "nearest" else 1000 * s + k).T)
                            for k in range(max(ENSEMBLES))]
                rows.append([rel_fro(np.mean(covs[:k], 0) / KAPPA, np.linalg.inv(A)) for k in ENSEMBLES])
            key = f"{chip}, {rounding}"
            out["ensemble"][key] = {"mean": np.mean(rows, 0).tolist(),
                                    "sd": np.std(rows, 0, ddof=1).tolist() if seeds > 1 else
                                    [0.0] * len(ENSEMBLES)}
            print(f"  ensemble  {key:<32} K={max(ENSEMBLES)}: {out['ensemble'][key]['mean'][-1]:.4f}",
                  file=sys.stderr, flush=True)
    out["per_programming"] = per
    return out


def _table(res: dict, key: str, samples: int, tau0: float) -> str:
    ks = [k for k in CHECKPOINTS if k <= samples]
    head = " | ".join(f"{k} ({k * PERIOD * tau0 * 1e3:.2g} ms)" for k in ks)
    lines = [f"| profile | {head} |", "|---|" + "---|" * len(ks)]
    for profile, c in res[key].items():
        cells = " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(c["mean"], c["sd"]))
        lines.append(f"| {profile} | {cells} |")
    return "\n".join(lines)


def _plot(path: Path, res: dict, tau0: float) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in ((axes[0], "sampling", "Gaussian sampling: ‖Σ̂ − Σ‖/‖Σ‖"),
                           (axes[1], "inversion", "8×8 inversion: ‖Â⁻¹ − A⁻¹‖/‖A⁻¹‖")):
        for profile, c in res[key].items():
            t = np.array(CHECKPOINTS[:len(c["mean"])]) * PERIOD * tau0
            ax.errorbar(t, c["mean"], yerr=c["sd"], marker="o", capsize=3, label=profile)
        ax.set(xscale="log", yscale="log", xlabel="sampling time on the chip (s)", title=title)
        ax.legend()
    for key, c in res["ensemble"].items():
        axes[2].errorbar(ENSEMBLES, c["mean"], yerr=c["sd"], marker="o", capsize=3, label=key)
    axes[2].set(xscale="log", yscale="log", xlabel="programmings averaged (K)",
                title=f"inversion, {res['per_programming']} samples per programming")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.spu_experiments", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--samples", type=int, default=30000)
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--runs", default="runs/experiments", help="where the variant profile goes")
    a = p.parse_args(argv)
    if a.seeds < 1 or a.samples < CHECKPOINTS[0]:
        p.error(f"need --seeds >= 1 and --samples >= {CHECKPOINTS[0]}")
    t0 = time.perf_counter()
    with host.connect("spawn://?profile=spu-8", claim=False) as dev:  # the chip's own timing
        tau0 = dev.info()["timing"]["tau0_s"]
    res = run(a.seeds, a.samples, ("ideal", "spu-8"), Path(a.runs))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spu.json").write_text(json.dumps(res, indent=1))
    ens = " | ".join(str(k) for k in ENSEMBLES)
    ens_rows = "\n".join(f"| {r} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in zip(c["mean"], c["sd"])) + " |"
                         for r, c in res["ensemble"].items())
    text = (f"# The SPU's experiments on the emulated SPU\n\n`python -m host.spu_experiments --seeds "
            f"{a.seeds} --samples {a.samples}` ({time.perf_counter() - t0:.0f} s)\n\n"
            f"Relative Frobenius error, mean ± sd over {a.seeds} seeds (matrix and noise); columns: "
            f"samples taken {PERIOD:g} τ0 apart (sampling time on the chip at τ0 = {tau0:g} s).\n\n"
            f"## Gaussian sampling\n\n{_table(res, 'sampling', a.samples, tau0)}\n\n"
            f"## 8×8 matrix inversion\n\n{_table(res, 'inversion', a.samples, tau0)}\n\n"
            f"## Stochastic-rounding ensembles (inversion, {res['per_programming']} samples "
            f"per programming)\n\n| chip, rounding | K = {ens} |\n|---|" + "---|" * len(ENSEMBLES) +
            f"\n{ens_rows}\n")
    (out / "spu.md").write_text(text)
    _plot(out / "spu.png", res, tau0)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
