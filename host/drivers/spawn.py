"""spawn:// — start a private emulator daemon on a free loopback port; stop it on close.

The embedded default of the CLI: no setup, real sockets, real daemon process. Query parameters
are passed to ``thermohil serve`` (cells, profile, seed, serial, max_rank), plus the link's
``timeout`` and ``retries``; any other is a ValueError, raised before a process starts.
"""
from __future__ import annotations

import os
import selectors
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlencode

from host.drivers.base import url_query
from host.drivers.zmq_driver import ZmqDriver
from host.errors import DeviceDied

#: Time allowed for the daemon to boot (first start compiles the Numba kernels into the cache).
BOOT_TIMEOUT_S = 120.0
#: Time a daemon gets to stop cleanly on close before it is killed.
STOP_GRACE_S = 10.0
#: Lines of the daemon's log quoted when it dies.
LOG_TAIL_LINES = 12


class SpawnDriver(ZmqDriver):
    schemes = ("spawn",)
    SERVE = ("cells", "profile", "seed", "serial", "max_rank")  # passed to `thermohil serve`
    QUERY = SERVE + ("timeout", "retries")
    DEFAULT_TIMEOUT = 10.0

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> None:
        q = url_query(url, self.QUERY)
        args = [sys.executable, "-m", "host.cli", "serve", "--endpoint", "tcp://127.0.0.1:0",
                "--events", "tcp://127.0.0.1:0", "--parent-pid", str(os.getpid())]
        for key in self.SERVE:
            if key in q:
                args += [f"--{key.replace('_', '-')}", q[key]]
        self.log = tempfile.NamedTemporaryFile(prefix="thermohil-daemon-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        try:
            endpoint, self.events_endpoint = self._await_ready()
            link = {k: q[k] for k in ("timeout", "retries") if k in q}
            super().__init__(endpoint + (f"?{urlencode(link)}" if link else ""), timeout=timeout,
                             retries=retries)
        except BaseException:  # e.g. ?timeout=abc: never leave the daemon behind
            self._stop_process()
            raise
        self.url = url

    def _await_ready(self) -> tuple[str, str]:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while time.monotonic() < deadline:
            if sel.select(timeout=0.5):
                line = self.proc.stdout.readline()
                if line.startswith("thermohil: serving "):
                    words = line.split()
                    return words[2], words[4]
                if not line and self.proc.poll() is not None:
                    break
            elif self.proc.poll() is not None:
                break
        log = open(self.log.name).read()[-2000:]
        raise RuntimeError(f"spawned daemon did not start (exit code {self.proc.poll()}); "
                           f"its log {self.log.name} ends with:\n{log}")

    def _check_alive(self) -> None:
        code = self.proc.poll()
        if code is None:
            return
        try:
            with open(self.log.name, errors="replace") as f:
                tail = "".join(f.readlines()[-LOG_TAIL_LINES:]).rstrip()
        except OSError:
            tail = "(its log is gone)"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise DeviceDied(f"the spawned emulator daemon (pid {self.proc.pid}) {how}; the last "
                         f"lines of its log {self.log.name}:\n{tail or '(empty)'}")

    def _stop_process(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:  # a daemon that stopped answering (e.g. frozen) gets a short grace only
                self.proc.wait(timeout=STOP_GRACE_S if getattr(self, "responsive", True) else 1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        if self.proc.returncode == 0:  # a clean stop: the log holds nothing of interest
            os.unlink(self.log.name)

    def close(self) -> None:
        super().close()
        self._stop_process()
