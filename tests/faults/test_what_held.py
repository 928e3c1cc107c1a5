"""Behaviour that already held under fault injection, kept holding: hosts taking turns on one
daemon never see each other's results, a link that loses replies never applies a write twice,
and a trainer killed with SIGKILL does not leave its private daemon behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

import host
from host.thermo_device import wr
from protocol import Status
from support import REPO, RawClient, children, start_daemon, wait_for

TURN_TAKER = r"""
import json, sys
import numpy as np
import host
url, me, turns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
wrong = 0
for _ in range(turns):
    with host.connect(url, timeout=5.0, wait_for_lease=30.0, lease_ms=2000) as dev:
        m = dev.solve_step(coupling=np.eye(8) * 2.0, bias=np.full(8, me), t=20.0, burn_in=5.0)
        wrong += int(not np.allclose(m, me / 2.0, atol=0.03))
print(json.dumps({"turns": turns, "wrong": wrong}))
"""


def test_owners_taking_turns_never_get_each_others_results():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "8")
    procs = [subprocess.Popen([sys.executable, "-c", TURN_TAKER, d.endpoint, str(b), "4"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for b in (-0.6, 0.2, 0.9)]
    stop = threading.Event()
    refused = []

    def intruder() -> None:  # a host without the lease keeps trying to write
        c = RawClient(d.endpoint)
        try:
            while not stop.is_set():
                r = c.transact([wr("SCRATCH", [7])], owner=0x51DE)
                refused.append(r.status)
                time.sleep(0.01)
        finally:
            c.close()

    t = threading.Thread(target=intruder)
    t.start()
    try:
        outs = [p.communicate(timeout=180) for p in procs]
    finally:
        stop.set()
        t.join(10)
        d.stop()
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert all(r == {"turns": 4, "wrong": 0} for r in results), results
    assert refused and set(refused) == {Status.NOT_OWNER}


class LossyProxy(threading.Thread):
    """Between one host and the daemon: forwards requests, drops every third reply."""

    def __init__(self, backend: str) -> None:
        super().__init__(daemon=True)
        self.ctx = zmq.Context.instance()
        self.front = self.ctx.socket(zmq.ROUTER)
        self.front.linger = 0
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.linger = 0
        self.back.connect(backend)
        self.dropped = self.passed = 0
        self._halt = threading.Event()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        ident = None
        while not self._halt.is_set():
            ready = dict(poller.poll(50))
            if self.front in ready:
                ident, *frames = self.front.recv_multipart()
                self.back.send_multipart(frames)
            if self.back in ready:
                frames = self.back.recv_multipart()
                if (self.dropped + self.passed) % 3 == 2:
                    self.dropped += 1
                else:
                    self.passed += 1
                    self.front.send_multipart([ident, *frames])

    def close(self) -> None:
        self._halt.set()
        self.join(5)
        self.front.close(0)
        self.back.close(0)


def test_a_link_that_drops_every_third_reply_applies_every_run_once():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    proxy = LossyProxy(d.endpoint)
    proxy.start()
    try:
        with host.connect(proxy.endpoint, timeout=0.5, retries=4) as dev:
            dev.load_coupling(np.eye(4))
            dev.load_bias(np.full(4, 0.3))
            dev.commit()
            t0 = dev.read("DEVICE_TIME")
            for _ in range(12):
                dev.run(1.0)
                np.testing.assert_allclose(dev.state(), 0.3, atol=0.2)
            # a RUN applied twice would show as extra device time
            assert dev.read("DEVICE_TIME") - t0 == pytest.approx(12.0, rel=1e-9)
            assert dev.stats.retries >= 5 and proxy.dropped >= 5
    finally:
        proxy.close()
        d.stop()


def test_a_killed_trainer_leaves_no_daemon_behind(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "host.cli", "train", "--algo", "tngd", "--dataset",
                          "spiral", "--epochs", "100", "--out", str(out)], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (out / "checkpoint.npz").exists(), 120, "the first checkpoint")
        daemons = children(p.pid)
        assert len(daemons) == 1
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        wait_for(lambda: not os.path.exists(f"/proc/{daemons[0]}") or
                 open(f"/proc/{daemons[0]}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
                 5.0, "the orphaned daemon to exit")
        assert time.monotonic() - t0 < 3.0  # the daemon checks its parent every 200 ms
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
