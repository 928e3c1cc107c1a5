"""Shared test helpers: real daemon subprocesses, raw sockets, random SPD systems."""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import zmq

from host.linalg.accuracy import random_spd  # noqa: F401  (re-exported for the tests)
from protocol.codec import decode_reply, encode_request, Transaction

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class DaemonProcess:
    proc: subprocess.Popen
    endpoint: str
    events: str
    log_path: str
    extra: dict = field(default_factory=dict)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()


def start_daemon(endpoint: str = "tcp://127.0.0.1:0", *args: str, events: str | None = None,
                 ready_timeout: float = 120.0) -> DaemonProcess:
    """Start ``thermohil serve`` as a real subprocess and wait for its ready line."""
    if events is None:
        events = "tcp://127.0.0.1:0" if endpoint.startswith("tcp") else endpoint + ".events"
    log = tempfile.NamedTemporaryFile(prefix="thermohil-test-daemon-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "host.cli", "serve", "--endpoint", endpoint, "--events", events, *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=0.2):
            line = proc.stdout.readline()
            if line.startswith("thermohil: serving"):
                w = line.split()
                return DaemonProcess(proc, w[2], w[4], log.name)
            if not line:
                break
        if proc.poll() is not None:
            break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"daemon did not start: {open(log.name).read()[-3000:]}")


def ipc_endpoint() -> str:
    return f"ipc://{tempfile.gettempdir()}/thermohil-test-{uuid.uuid4().hex[:12]}"


class RawClient:
    """A bare DEALER for sending hand-made (including hostile) packets."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.cid = os.urandom(16)
        self.seq = 0

    def send_frames(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 5.0) -> list | None:
        if not self.sock.poll(int(timeout * 1000)):
            return None
        return self.sock.recv_multipart()

    def transact(self, tx: list[Transaction], owner: int = 0, seq: int | None = None, timeout: float = 5.0):
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.send_frames(encode_request(seq, self.cid, owner, tx))
        frames = self.recv(timeout)
        assert frames is not None, "no reply"
        return decode_reply(frames, tx)

    def close(self) -> None:
        self.sock.close(0)




def rss_mb(pid: int) -> float:
    """Resident set size of a process (MB), from /proc."""
    import re
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
