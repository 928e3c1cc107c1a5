"""Fault scenarios against real daemon subprocesses: each one a way a user could be handed a
wrong number, or kept waiting far longer than the documented deadline."""
from __future__ import annotations

import os
import re
import time


def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def children(pid: int) -> list[int]:
    """Direct child processes of pid (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def wait_for(predicate, timeout: float, what: str, every: float = 0.05):
    """Poll until predicate() is truthy; fail (never hang) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
