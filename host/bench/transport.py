"""Transport: a register read round trip and a 4 MiB block upload through a real daemon
(``thermohil serve`` in another process), over tcp and ipc, against raw pyzmq DEALER/ROUTER
(``host/bench/echo_server.py``, also in another process) moving the same bytes each way.

The ratio is the cost of everything between the socket and the user: the codec (msgpack
header, frame checks), the driver (sequence numbers, Lazy Pirate bookkeeping), the daemon's
validation and register file, and ``ThermoDevice``'s conversions (q31 codes for the upload).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

from host.bench.timing import per_call

UPLOAD_CELLS = 1024            # dense coupling window: 1024² words = 4 MiB


def _start(cmd: list[str], ready_word: str, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(ready_word):
            return proc, line.split()[2 if ready_word.startswith("thermohil") else 1]
    proc.kill()
    raise RuntimeError(f"{' '.join(cmd)} did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def _raw_round_trip(endpoint: str, up: int, down: int, calls: int = 0) -> float:
    """Seconds per DEALER request of ``up`` bytes answered by ``down`` bytes."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    frames = [down.to_bytes(8, "little"), bytes(max(up - 8, 0))]

    def once() -> None:
        sock.send_multipart(frames, copy=up < 65536)
        sock.recv_multipart(copy=False)

    try:
        return per_call(once, calls=calls)
    finally:
        sock.close()


def _endpoints(kind: str, tmp: str) -> tuple[str, str, str]:
    if kind == "tcp":
        return "tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"
    return (f"ipc://{tmp}/daemon.sock", f"ipc://{tmp}/daemon.events", f"ipc://{tmp}/echo.sock")


def measure(kind: str) -> list[dict]:
    import host
    rows = []
    with tempfile.TemporaryDirectory(prefix="thermohil-bench-") as tmp:
        ep, events, echo_ep = _endpoints(kind, tmp)
        daemon, endpoint = _start([sys.executable, "-m", "host.cli", "serve", "--endpoint", ep, "--events", events,
                                   "--cells", str(UPLOAD_CELLS)], "thermohil: serving")
        echo, echo_endpoint = _start([sys.executable, "-m", "host.bench.echo_server", echo_ep], "ready")
        try:
            with host.connect(endpoint) as dev:
                s0, r0 = dev.stats.bytes_sent, dev.stats.bytes_received
                dev.read("STATUS")
                up, down = dev.stats.bytes_sent - s0, dev.stats.bytes_received - r0
                ours = per_call(lambda: dev.read("STATUS"))
                raw = _raw_round_trip(echo_endpoint, up, down)
                rows.append({"case": f"register read round trip, {kind}", "bytes": f"{up} up / {down} down",
                             "ours_s": ours, "raw_s": raw})
                A = np.eye(UPLOAD_CELLS)
                s0, r0 = dev.stats.bytes_sent, dev.stats.bytes_received
                dev.load_coupling(A)
                up, down = dev.stats.bytes_sent - s0, dev.stats.bytes_received - r0
                ours = per_call(lambda: dev.load_coupling(A), calls=5, repeats=3)
                raw = _raw_round_trip(echo_endpoint, up, down, calls=5)
                rows.append({"case": f"4 MiB coupling upload, {kind}", "bytes": f"{up} up / {down} down",
                             "ours_s": ours, "raw_s": raw, "ours_MBps": up / ours / 1e6, "raw_MBps": up / raw / 1e6})
        finally:
            _stop(daemon)
            _stop(echo)
    for row in rows:
        row["ours_over_raw"] = row["ours_s"] / row["raw_s"]
    return rows


def run(quick: bool = False) -> list[dict]:
    return measure("tcp") + measure("ipc")
