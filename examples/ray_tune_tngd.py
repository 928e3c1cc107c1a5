"""A Ray Tune sweep over TNGD's damping λ and analog time t, on a farm of thermodynamic devices.

Each trial trains the digits classifier with TNGD on a device of its own: it asks Ray for one
``thermo_device`` (the custom resource a node declares for each device it has), so no two
trials share a device. On a node with boards (``THERMOHIL_DEVICE_URLS``) the trial claims one;
elsewhere it spawns an emulated device for its run. Every evaluation streams to Tune as it is
written (``TrainConfig.on_evaluation``), so the ASHA scheduler stops poor (λ, t) early.

    pip install -e '.[data,ray]'
    python examples/ray_tune_tngd.py                       # a local cluster, 2 emulated devices
    python examples/ray_tune_tngd.py --samples 16 --devices 4 --epochs 5
    python examples/ray_tune_tngd.py --address auto        # a running cluster (docs/cluster.md)

Prints the best trial's λ, t and test accuracy; each trial's run directory (config.json,
metrics.jsonl, loss.png) is under --storage.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from host import farm          # first: without Ray it says what to install

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from host.data import load
from host.training import TrainConfig, train

BATCH = 32


def trial(config: dict) -> None:
    """One (λ, t): a TNGD run on this trial's device, reporting every evaluation to Tune."""
    board, _lock = farm.claim_board()           # a board of this node, held while the trial runs
    out = Path(tune.get_context().get_trial_dir()) / "run"
    keep = ("test_loss", "test_accuracy", "train_loss", "step", "projected_hw_time_s")
    train(TrainConfig(algo="tngd", dataset="digits", device=board or "spawn://", epochs=config["epochs"], batch_size=BATCH,
                      hyper={"lam": config["lam"], "t": config["t"]}, eval_every=config["eval_every"],
                      seed=config["seed"], out=str(out), progress=False,
                      on_evaluation=lambda row: tune.report({k: row[k] for k in keep if k in row})))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=None, help="a running Ray cluster (default: a local one)")
    p.add_argument("--devices", type=int, default=2, help="emulated devices of the local cluster (default 2)")
    p.add_argument("--samples", type=int, default=6, help="(λ, t) pairs to try (default 6)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial at most (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", default="runs/tune", help="where the trials' directories go")
    a = p.parse_args()
    farm.start(a.address, a.devices)
    steps = a.epochs * math.ceil(len(load("digits").X_train) / BATCH)   # a trial's whole length
    space = {"lam": tune.loguniform(1e-3, 1.0), "t": tune.choice([5.0, 20.0, 50.0]),
             "epochs": a.epochs, "eval_every": 10, "seed": a.seed}
    # ASHA's rungs in steps, its limit past a trial's last step: a trial that gets there
    # finishes (summary, figures) rather than being stopped at its last report
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1, farm.DEVICE_RESOURCE: 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="test_loss", mode="min", num_samples=a.samples,
                                    scheduler=ASHAScheduler(time_attr="step", grace_period=min(20, steps),
                                                            max_t=steps + 1)),
        run_config=tune.RunConfig(storage_path=os.path.abspath(a.storage), name="tngd-lam-t", verbose=1))
    best = tuner.fit().get_best_result()
    print(f"best: lam = {best.config['lam']:.4g}, t = {best.config['t']:g}: test loss "
          f"{best.metrics['test_loss']:.4f}, test accuracy {best.metrics['test_accuracy']:.2%} "
          f"(step {best.metrics['step']}; run in {best.path}/run)")
    ray.shutdown()


if __name__ == "__main__":
    main()
