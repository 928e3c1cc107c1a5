"""``thermohil plot``: redraw a training run's figures, or overlay several runs in one figure.

One run directory: its figures (loss.png, and langevin.png for the Langevin family) are drawn
again from its metrics.jsonl, e.g. after copying a run off a training machine. Several (or
--out, --x, --metric): one metric of every run against one x axis, in one figure.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from host.run_figures import METRICS, X_AXES, overlay, plot_run

DEFAULT_OVERLAY = "overlay.png"


def add_plot_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="draw a training run's figures, or overlay several runs",
                       description=(__doc__ or "").replace("``", "`"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run directories (config.json + metrics.jsonl)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help=f"the overlay's file (default {DEFAULT_OVERLAY} in the current directory)")
    p.add_argument("--x", choices=tuple(X_AXES), default=None,
                   help="the overlay's x axis: iteration, cumulative projected hardware time or "
                        "cumulative wall time (default step)")
    p.add_argument("--metric", default=None, metavar="METRIC",
                   help=f"the overlay's metric, one of: {', '.join(METRICS)} (default test_loss)")


def _refuse(message: str) -> int:
    """One line on stderr, exit code 2: the command line asked for something that is not there."""
    print(f"thermohil plot: {message}", file=sys.stderr)
    return 2


def cmd_plot(args: argparse.Namespace) -> int:
    if args.metric is not None and args.metric not in METRICS:
        return _refuse(f"unknown metric {args.metric!r}; known: {', '.join(METRICS)}")
    for d in args.dirs:
        path = Path(d)
        if not path.exists():
            return _refuse(f"no such directory: {d}")
        if not path.is_dir():
            return _refuse(f"not a directory: {d}")
        if not (path / "metrics.jsonl").is_file():
            return _refuse(f"{d} holds no metrics.jsonl (not a training run directory)")
    try:
        if len(args.dirs) == 1 and args.out is None and args.x is None and args.metric is None:
            written = plot_run(args.dirs[0])
            for path in written:
                print(path)
            return 0 if written else 1       # [] : matplotlib is missing (already said)
        out = overlay(args.dirs, args.out or DEFAULT_OVERLAY, x=args.x or "step",
                      metric=args.metric or "test_loss")
    except (ValueError, OSError) as e:   # e.g. no run records the metric, an unwritable --out
        return _refuse(str(e))
    if out is None:
        return 1
    print(out)
    return 0
