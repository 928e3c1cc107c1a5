"""``thermohil train``: the training loop from the command line.

Every hyperparameter of every algorithm in ``host.optim.ALGORITHMS`` is an option; an option the
chosen algorithm does not take is an error (so a typo or a wrong algorithm is never silently
ignored). The algorithm's own default applies when an option is not given.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from host.cli import _positive as _at_least_one, _positive_float
from host.optim import ALGORITHMS


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _hyper_table() -> dict[str, tuple[type, str]]:
    """Each hyperparameter name once: its type and what it means, per algorithm when the
    algorithms that take it mean different things by it (--eps: Adam's ε, AdL's coupling)."""
    table: dict[str, tuple[type, dict[str, list[str]]]] = {}
    for spec in ALGORITHMS.values():
        for name, (typ, _default, text) in spec.params.items():
            table.setdefault(name, (typ, {}))[1].setdefault(text, []).append(spec.name)
    return {k: (t, "; ".join(f"{text} [{', '.join(algos)}]" for text, algos in texts.items()))
            for k, (t, texts) in table.items()}


def _epilog() -> str:
    width = max(len(name) for name in ALGORITHMS)
    lines = ["algorithms and their hyperparameters (default):"]
    for spec in ALGORITHMS.values():
        where = _where(spec)
        opts = ", ".join(f"{_option(k)} ({'entry' if d is None else d})" for k, (_t, d, _h) in spec.params.items())
        lines.append(f"  {spec.name:<{width}} [{where:<7}] {opts}")
    return "\n".join(lines)


def _where(spec: Any) -> str:
    if spec.uses_device:
        return "device"
    return "entries" if "partition" in spec.params else "digital"


def algorithm_help(name: str) -> str:
    """`thermohil train --algo NAME --help`: that algorithm's options only, with defaults."""
    spec = ALGORITHMS[name]
    where = {"device": "runs on a device (--device URL, default spawn://)", "digital": "digital",
             "entries": "on a device where an entry asks for one (NAME-device, tngd)"}[_where(spec)]
    lines = [f"thermohil train --algo {name}: {spec.doc or name} — {where}", "",
             "its hyperparameters (default):"]
    width = max((len(_option(k)) for k in spec.params), default=0)
    for k, (typ, default, text) in spec.params.items():
        shown = "each entry's own" if default is None else default
        lines.append(f"  {_option(k):<{width}} {typ.__name__.upper():<5} {text} (default {shown})")
    if "partition" in spec.params:
        from host.optim.catalog import OPTIONAL, TRANSFORMS
        names = [*TRANSFORMS, *(f"{k}-device" for k, e in TRANSFORMS.items() if e.device == OPTIONAL)]
        lines += ["", f"partition entries may name: {', '.join(names)}"]
    lines += ["", "common options: --dataset, --epochs, --batch-size, --seed, --out, --resume, --json "
              "(thermohil train --help); the algorithms: docs/algorithms.md"]
    return "\n".join(lines)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes comma-separated widths, e.g. 64,32; got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden widths must be >= 1, got {text!r}")
    return widths


def _dataset(text: str) -> str:
    from host.data import DATASETS
    from host.user_code import is_reference
    if text not in DATASETS and not is_reference(text):
        raise argparse.ArgumentTypeError(f"unknown data set {text!r}; known: {', '.join(sorted(DATASETS))}, "
                                         "or FILE.py:LOADER / MODULE:LOADER for your own")
    return text


def _lease_ms(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 300 <= v <= 3_600_000:
        raise argparse.ArgumentTypeError(f"must be in 300 … 3600000 ms, got {v}")
    return v


def _at_least_zero(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def add_train_parser(sub: Any) -> None:
    from host.data import DATASETS
    t = sub.add_parser("train", help="train a network (digital or on a device)",
                       description="Train a small network with a digital or device-assisted optimizer.",
                       epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--algo", required=True, choices=sorted(ALGORITHMS), metavar="ALGO",
                   help=f"one of: {', '.join(sorted(ALGORITHMS))}")
    t.add_argument("--dataset", required=True, type=_dataset, metavar="DATASET",
                   help=f"one of: {', '.join(sorted(DATASETS))}; or your own as FILE.py:LOADER or "
                        "MODULE:LOADER (a function returning (X, y), (X_train, y_train, X_test, y_test), "
                        "a dict of those or a host.data.Dataset)")
    t.add_argument("--model", default=None, metavar="FILE.py:FACTORY",
                   help="your own torch model: a function FACTORY(n_inputs, n_outputs) returning a "
                        "torch.nn.Module (default: the built-in MLP, --hidden wide)")
    t.add_argument("--loss", choices=("ce", "bce", "mse"), default=None,
                   help="ce (classes), bce (two classes, one logit) or mse (regression); default: the "
                        "data set's own (integer labels: ce, real targets: mse)")
    t.add_argument("--device", default=None,
                   help="device URL for device algorithms (default spawn://, a private emulator); "
                        "'none' for digital ones")
    t.add_argument("--epochs", type=_at_least_one, default=5, help="passes over the training set (default 5)")
    t.add_argument("--batch-size", type=_at_least_one, default=None,
                   help="minibatch size (default: 25 for spiral, as in the paper; 32 for digits)")
    t.add_argument("--seed", type=int, default=0, help="initialisation, batches and noise (default 0)")
    t.add_argument("--out", default=None, help="run directory (default runs/ALGO-DATASET-sSEED, plus a short tag of the settings that "
                        "differ from the defaults: the same command finds its run again, another one "
                        "never overwrites it)")
    t.add_argument("--hidden", type=_hidden, default=None, help="hidden widths of the built-in MLP, e.g. 64,32")
    t.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    t.add_argument("--eval-every", type=_at_least_zero, default=0, help="also evaluate every N steps (default 0: at epoch ends only)")
    t.add_argument("--posterior-every", type=_at_least_zero, default=0, metavar="K",
                   help="keep every K-th step's parameters as a sample of the chain (after the burn-in) "
                        "and report the posterior-predictive accuracy beside the last iterate's: "
                        "meaningful for the samplers (the Langevin family); for other optimizers it "
                        "averages the iterates' predictions (default 0: off)")
    t.add_argument("--posterior-burn-in", type=_at_least_zero, default=None, metavar="EPOCHS",
                   help="epochs before samples are kept (default: half the epochs)")
    t.add_argument("--json", action="store_true", help="print the summary as one JSON line last")
    t.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (and, without a terminal, no progress lines: by default one every 30 s)")
    t.add_argument("--timeout", type=_positive_float, default=None, help="device reply timeout (s, default 30)")
    t.add_argument("--retries", type=int, default=None, help="resends of an unanswered packet")
    t.add_argument("--lease-ms", type=_lease_ms, default=30_000,
                   help="the device lease (ms, 300 … 3600000, default 30000): how long a device "
                        "this process stops talking to stays reserved for it")
    t.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                   help="do not calibrate a device whose calibration is not valid (default: "
                        "saved trims for its serial are checked, else the device calibrates)")
    g = t.add_argument_group("algorithm hyperparameters (see the list below)")
    for name, (typ, text) in _hyper_table().items():
        g.add_argument(_option(name), dest=f"hp_{name}", type=typ, default=None, metavar=typ.__name__.upper(),
                       help=text)


def cmd_train(args: argparse.Namespace) -> int:
    from threadpoolctl import threadpool_limits

    from host.training import TrainConfig, train
    # this process owns its BLAS: one thread, so the small per-step matrix work is not slowed by
    # threads waiting for cores the device daemon holds (docs/performance.md)
    threadpool_limits(1)
    if args.model:          # torch's own thread pool too: 7 ms per GGN factor on one thread, 45 ms on two here
        import torch
        torch.set_num_threads(1)
    spec = ALGORITHMS[args.algo]
    hyper = {k[3:]: v for k, v in vars(args).items() if k.startswith("hp_") and v is not None}
    wrong = sorted(set(hyper) - set(spec.params))
    if wrong:
        raise ValueError(f"--algo {args.algo} takes no {', '.join(_option(w) for w in wrong)}; "
                         f"it takes: {', '.join(_option(k) for k in spec.params)}")
    if spec.needs_device(hyper):
        if args.device == "none":
            raise ValueError(f"--algo {args.algo} runs on a device: give --device URL or leave it "
                             "out for the embedded spawn:// emulator")
        device = args.device or "spawn://"
    else:
        if args.device not in (None, "none"):
            raise ValueError(f"--algo {args.algo} is digital and uses no device; drop --device")
        device = None
    cfg = TrainConfig(algo=args.algo, dataset=args.dataset, device=device, epochs=args.epochs,
                      batch_size=args.batch_size, seed=args.seed, out=args.out, hidden=args.hidden,
                      activation=args.activation, hyper=hyper, resume=args.resume,
                      progress=False if args.no_progress else None, eval_every=args.eval_every,
                      timeout=args.timeout, retries=args.retries, calibrate=args.calibrate,
                      lease_ms=args.lease_ms, model=args.model, loss=args.loss,
                      posterior_every=args.posterior_every, posterior_burn_in=args.posterior_burn_in)
    if not args.json:
        where = f" on {device}" if device else ""
        batch = f"batch {args.batch_size}" if args.batch_size else "the data set's batch size"
        print(f"thermohil train: {args.algo} on {args.dataset}{where}, {args.epochs} epoch{'s' * (args.epochs != 1)}, "
              f"{batch}, seed {args.seed}", file=sys.stderr)
    summary = train(cfg)
    if args.json:
        print(json.dumps(summary))
    else:
        from host.training import score_text
        score = score_text("r2" if "test_r2" in summary else "accuracy",
                            summary.get("test_r2", summary.get("test_accuracy")))
        print(f"iterations {summary['iterations']}  train loss {summary['final_train_loss']:.4f}  "
              f"test loss {summary['final_test_loss']:.4f}  {score}  ({summary['n_params']} parameters)")
        if "posterior_samples" in summary:
            pscore = score_text("r2" if "test_r2" in summary else "accuracy",
                                 summary.get("posterior_test_r2", summary.get("posterior_test_accuracy")))
            print(f"posterior-predictive over {summary['posterior_samples']} samples: test loss "
                  f"{summary['posterior_test_loss']:.4f}  {pscore}")
        print(f"step time {summary['wall_time_s']:.3g} s  device time {summary['device_time']:g} τ0  "
              f"projected hardware time {summary['projected_hw_time_s']:.3g} s  -> {summary['out']}/")
    return 0
