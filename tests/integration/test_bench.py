"""`thermohil bench` stays runnable: a quick run of two parts (real kernels; a real daemon and a
raw pyzmq peer over tcp and ipc) produces every row with finite, positive ratios — the numbers
themselves are for docs/performance.md, never asserted here (speed is not a test)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from support import REPO


def test_bench_quick_run_reports_every_row(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "-m", "host.cli", "bench", "--quick", "--only", "kernels,transport",
                        "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr
    res = json.loads(out.read_text())
    assert [r["case"] for r in res["kernels"]][:3] == [f"dense, 1 chain, N = {n}" for n in (8, 32, 256)]
    assert len(res["transport"]) == 4 and {r["case"].split(", ")[-1] for r in res["transport"]} == {"tcp", "ipc"}
    for row in res["kernels"] + res["transport"]:
        ratio = row.get("ours_over_floor", row.get("ours_over_raw"))
        assert math.isfinite(ratio) and ratio > 0
    assert "### kernels" in p.stdout and "| register read round trip, tcp |" in p.stdout


def test_bench_sampling_part_runs_and_reports_ratios(tmp_path):
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, "-m", "host.cli", "bench", "--quick", "--only", "sampling",
                        "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = json.loads(out.read_text())["sampling"]
    # thermox is an optional peer: without it its row says so and has no ratio
    measured = [r for r in rows if not r["case"].startswith("thermox not installed")]
    assert len(rows) == 3 and len(measured) >= 2
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in measured)
    assert "### sampling" in p.stdout


def test_bench_refuses_an_unknown_part():
    p = subprocess.run([sys.executable, "-m", "host.cli", "bench", "--only", "kernels,warp"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 1 and "unknown bench part(s) warp" in p.stderr
