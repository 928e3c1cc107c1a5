"""``thermohil bench [--only PARTS] [--quick] [--json FILE]``."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from host.bench import PARTS

OPT_IN = ("torch",)
"""Parts run only when named in --only: ``torch`` (host/bench/torch_scale.py) takes minutes and
needs the [torch] extra."""


def add_bench_parser(sub: Any) -> None:
    b = sub.add_parser("bench", help="the performance suite: every figure a ratio to a reference "
                                     "measured in the same run")
    b.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}; "
                                                          "also, only when named: torch (torch models at N "
                                                          "≈ 10⁴ and 10⁵, peak memory)")
    b.add_argument("--quick", action="store_true", help="smaller sizes, fewer iterations (a smoke run)")
    b.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")


def cmd_bench(args: argparse.Namespace) -> int:
    from host.bench import kernels, report, sampling, tngd_split, torch_scale, transport
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS) - set(OPT_IN))
    if unknown or not parts:
        raise ValueError(f"unknown bench part(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(PARTS + OPT_IN)}")
    runners = {"kernels": kernels.run, "transport": transport.run, "tngd": tngd_split.run,
               "sampling": sampling.run, "torch": torch_scale.run}
    tables = {**report.TABLES, "torch": torch_scale.table}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(), "load_before": round(load, 2),
            "command": "thermohil bench " + " ".join(sys.argv[2:])}
    print(f"thermohil bench — {meta['date']}, {meta['machine']}, load average {load:.2f} at the start",
          file=sys.stderr)
    results: dict[str, Any] = {"meta": meta}
    for part in parts:
        print(f"  running {part} …", file=sys.stderr, flush=True)
        rows = runners[part](quick=args.quick)
        results[part] = rows
        print(f"\n### {part}\n\n{tables[part](rows)}\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0
