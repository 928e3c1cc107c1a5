"""The seed paper's spiral network in PyTorch, trained by the library's AdLaLa.

What this shows
---------------
Leimkuhler, Matthews & Vlaar (2019) train a 2-100-1 ReLU network (sigmoid output, binary
cross-entropy) on a two-arm spiral with AdLaLa: Adaptive Langevin on the first layer, Langevin
on the output layer. docs/experiments.md ("The Langevin family on the spiral") reproduces it
with the library's own numpy network (host.nn). This script writes the same network as a plain
``torch.nn.Sequential`` and trains it with the same algorithm through

    run = host.torch.optimizer("adlala", model, "bce", **HYPER)
    run.step(X_batch, y_batch)           # the model now holds the new parameters

with the study's settings (those of its "AdLaLa" arm, i.e. ``thermohil train --algo adlala
--dataset spiral --epochs 4000``): the authors' hyperparameters h = 0.25, τ1 = τ2 = 1e-4,
γ = 0.1, σ_A = 0.01, ε = 0.05, ξ0 = 1e-3 (the algorithm's defaults, spelled out below), batch
25, 4000 epochs (80 000 steps), the spiral of ``host.data.spiral()`` (4 turns, noise 0.02,
500 train / 1000 test points; its data seed is 1 in every run of the study — the run's seed
decides the initial weights, the batch order and the thermostat's noise, not the data). The
final model is evaluated by torch itself, and the mean ± sd over the seeds is printed next to
the study's digital figure.

Initialisation. torch's ``nn.Linear`` default (uniform, std 1/√(3·fan_in), biases uniform too)
is not host.nn's (He-normal weights, std √(2/fan_in), biases 0); for the first layer, fan_in =
2, that is a factor 2.4 in the weights' scale. By default the layers are initialised as
host.nn.MLP does, from the same ``np.random.default_rng(seed)`` draws, so a torch run starts
from the very network the library's run of that seed starts from (``--init torch`` keeps
torch's own). The runs still differ after that: the library draws the thermostat's noise from
the generator after the weights, this run from a fresh one, and torch keeps each weight matrix
transposed, so the same draws land on other parameters. The two agree in distribution, not run
by run. (Given host.nn's layout and noise stream as well, the torch run is the library's run:
θ equal to 2e-13 after 20 000 steps; docs/experiments.md, "The spiral network in PyTorch".)

Run it (1.5-3 min per seed with torch, 30-45 s per seed with host.nn, on a 2-core machine
shared with other jobs)::

    .venv/bin/python examples/torch_spiral_adlala.py                     # seeds 0 1 2, 4000 epochs
    .venv/bin/python examples/torch_spiral_adlala.py --compare           # and host.nn, same seeds
    .venv/bin/python examples/torch_spiral_adlala.py --seeds 0 --epochs 400

It prints one line per seed (``seed 0: test accuracy 90.5 %, test loss 0.3618``) and the
mean ± sd (``torch  : mean test accuracy: 91.1 ± 0.5 %, ...``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # run from a checkout, installed or not

import host.torch  # noqa: E402
from host import data  # noqa: E402

#: The study's AdLaLa arm: the authors' spiral settings (= host.optim.adlala's defaults).
HYPER = {"h": 0.25, "tau1": 1e-4, "tau2": 1e-4, "gamma": 0.1, "sigma_a": 0.01, "eps": 0.05, "xi0": 1e-3}
EPOCHS, BATCH, DATA_SEED = 4000, 25, 1
#: docs/experiments.md, "The Langevin family on the spiral", arm "AdLaLa" (host.nn, seeds 0-4):
#: the table's test accuracy and final test loss, mean ± sd, and its re-run of 2026-12-02.
DOCS_TABLE = {"accuracy": (0.9114, 0.0159), "loss": (0.3341, 0.0511)}
DOCS_RERUN = {"accuracy": (0.9202, 0.0054), "loss": (0.2947, 0.0157)}


def make_model() -> nn.Module:
    """2 → 100 (ReLU) → 1 logit; the sigmoid is in the loss (BCE on logits)."""
    return nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 1))


@torch.no_grad()
def init_like_host_nn(model: nn.Module, seed: int) -> None:
    """The weights host.nn.MLP.init(np.random.default_rng(seed)) draws, layer by layer: He-normal
    W (fan_in × fan_out, row-major, std √(2/fan_in)), biases 0. torch keeps W transposed."""
    rng = np.random.default_rng(seed)
    for layer in (m for m in model if isinstance(m, nn.Linear)):
        n_in, n_out = layer.in_features, layer.out_features
        W = rng.standard_normal(n_in * n_out).reshape(n_in, n_out) * np.sqrt(2.0 / n_in)
        layer.weight.copy_(torch.as_tensor(W.T))
        layer.bias.zero_()


@torch.no_grad()
def evaluate(model: nn.Module, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy of the torch model itself."""
    model.eval()
    logits = model(torch.as_tensor(X, dtype=torch.float32)).squeeze(1)
    target = torch.as_tensor(y, dtype=torch.float32)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, target))
    acc = float(((logits > 0).float() == target).float().mean())
    model.train()
    return loss, acc


def train_torch(seed: int, ds: data.Dataset, epochs: int, batch: int, init: str, log_every: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = make_model()
    if init == "host-nn":
        init_like_host_nn(model, seed)
    with host.torch.optimizer("adlala", model, "bce", seed=seed, **HYPER) as run:
        for epoch in range(epochs):
            batch_rng = np.random.default_rng([seed, epoch])   # the library's batch order
            for Xb, yb in data.minibatches(ds.X_train, ds.y_train, batch, batch_rng):
                run.step(Xb, yb)
            if log_every and (epoch + 1) % log_every == 0 and epoch + 1 < epochs:
                loss, acc = evaluate(model, ds.X_test, ds.y_test)
                print(f"  seed {seed}, epoch {epoch + 1}/{epochs}: test accuracy {acc:.1%}, test loss "
                      f"{loss:.4f}", flush=True)
    loss, acc = evaluate(model, ds.X_test, ds.y_test)
    return acc, loss


def train_host_nn(seed: int, epochs: int, batch: int) -> tuple[float, float]:
    """The study's own run of this seed: ``thermohil train --algo adlala --dataset spiral``
    (its run directory in a temporary folder, removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="spiral-host-nn-") as tmp:
        s = host.train(host.TrainConfig(algo="adlala", dataset="spiral", device=None, epochs=epochs,
                                        batch_size=batch, seed=seed, hyper=dict(HYPER), progress=False,
                                        out=str(Path(tmp) / f"adlala-spiral-s{seed}")))
    return s["test_accuracy"], s["final_test_loss"]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def report(label: str, accs: list[float], losses: list[float]) -> tuple[float, float]:
    (ma, sa), (ml, sl) = mean_sd(accs), mean_sd(losses)
    print(f"{label}: mean test accuracy: {100 * ma:.1f} ± {100 * sa:.1f} %, mean test loss: "
          f"{ml:.4f} ± {sl:.4f} ({len(accs)} seed(s))")
    return ma, ml


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="run seeds: initial weights, batch order, thermostat noise (default 0 1 2)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"default {EPOCHS} (the study's)")
    p.add_argument("--batch-size", type=int, default=BATCH, help=f"default {BATCH} (the study's)")
    p.add_argument("--init", choices=("host-nn", "torch"), default="host-nn",
                   help="initial weights: host.nn.MLP's He-normal draws (default) or torch's own")
    p.add_argument("--compare", action="store_true",
                   help="also train the library's numpy network (host.nn) on the same seeds")
    p.add_argument("--log-every", type=int, default=1000, metavar="EPOCHS",
                   help="a progress line every this many epochs (0: none; default 1000)")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch_size < 1 or a.log_every < 0:
        p.error("--epochs and --batch-size must be >= 1, --log-every >= 0")
    threadpool_limits(1)          # as `thermohil train`: small matrices, no thread contention
    torch.set_num_threads(1)

    ds = data.spiral(seed=DATA_SEED)
    print(f"spiral: {len(ds.X_train)} train / {len(ds.X_test)} test points; model 2-100-1 ReLU, "
          f"{sum(q.numel() for q in make_model().parameters())} parameters; AdLaLa "
          f"{', '.join(f'{k} = {v:g}' for k, v in HYPER.items())}; batch {a.batch_size}, "
          f"{a.epochs} epochs; init {a.init}", flush=True)

    accs, losses = [], []
    for seed in a.seeds:
        t0 = time.perf_counter()
        acc, loss = train_torch(seed, ds, a.epochs, a.batch_size, a.init, a.log_every)
        accs.append(acc)
        losses.append(loss)
        print(f"seed {seed}: test accuracy {100 * acc:.1f} %, test loss {loss:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    ref_accs, ref_losses = [], []
    if a.compare:
        for seed in a.seeds:
            t0 = time.perf_counter()
            acc, loss = train_host_nn(seed, a.epochs, a.batch_size)
            ref_accs.append(acc)
            ref_losses.append(loss)
            print(f"host.nn seed {seed}: test accuracy {100 * acc:.1f} %, test loss {loss:.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)

    print()
    mean_acc, mean_loss = report("torch  ", accs, losses)
    if a.compare:
        report("host.nn", ref_accs, ref_losses)
    (da, sa), (dl, sl) = DOCS_TABLE["accuracy"], DOCS_TABLE["loss"]
    print(f"docs/experiments.md, AdLaLa (host.nn, seeds 0-4, 4000 epochs): test accuracy "
          f"{100 * da:.1f} ± {100 * sa:.1f} %, test loss {dl:.4f} ± {sl:.4f} (re-run 2026-12-02: "
          f"{100 * DOCS_RERUN['accuracy'][0]:.1f} ± {100 * DOCS_RERUN['accuracy'][1]:.1f} %, "
          f"{DOCS_RERUN['loss'][0]:.4f} ± {DOCS_RERUN['loss'][1]:.4f})")
    if a.epochs == EPOCHS and a.batch_size == BATCH:
        za, zl = (mean_acc - da) / sa, (mean_loss - dl) / sl
        print(f"torch mean vs the docs' table, in the table's sd: test accuracy {za:+.2f} sd "
              f"({'within' if abs(za) <= 1 else 'NOT within'} one sd), test loss {zl:+.2f} sd "
              f"({'within' if abs(zl) <= 1 else 'NOT within'} one sd)")
    else:
        print("(not the study's epochs/batch: the docs' figure is not comparable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
