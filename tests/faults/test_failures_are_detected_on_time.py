"""A dead, frozen or rebooted device is reported within the documented deadline, never later:
a reply is due within one ``timeout`` (a run's WAIT is sliced to at most timeout/2), so a dead
daemon gives DeviceTimeout within (retries + 1) × timeout even in the middle of a long run;
spawn:// notices its child's death at once; close() never blocks longer than one timeout."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import host
from support import REPO, children, ipc_endpoint, start_daemon, wait_for

SLACK_S = 3.0  # scheduling, process start-up and exit on a busy 2-core machine


def _long_run(dev) -> None:
    # ~10^8 EM substeps: minutes, well inside the run budget estimate (exact propagation would
    # finish it at once)
    dev.configure(substep=1e-3, integrator="em")
    dev.load_coupling(np.eye(4))
    dev.commit()
    dev.run(1e5)


def _raises_within(call, exc, seconds: float):
    t0 = time.monotonic()
    with pytest.raises(exc) as e:
        call()
    took = time.monotonic() - t0
    assert took < seconds, f"{exc.__name__} after {took:.1f} s, deadline {seconds:.1f} s"
    return e.value, took


def test_daemon_killed_mid_run_is_reported_within_retries_plus_one_timeouts():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    dev = host.connect(d.endpoint, timeout=1.0, retries=1)
    try:
        threading.Timer(0.8, d.proc.kill).start()
        err, took = _raises_within(lambda: _long_run(dev), host.DeviceTimeout, 0.8 + 2 * 1.0 + SLACK_S)
        assert "no reply" in str(err)
        t0 = time.monotonic()
        dev.close()  # the device did not answer: no release attempt
        assert time.monotonic() - t0 < 0.5
    finally:
        d.stop()


def test_spawned_daemon_death_is_reported_at_once_with_its_exit():
    dev = host.connect("spawn://?cells=4", timeout=30.0)
    try:
        threading.Timer(0.5, dev.driver.proc.kill).start()
        err, took = _raises_within(lambda: _long_run(dev), host.DeviceDied, 0.5 + SLACK_S)
        assert "killed by signal 9" in str(err) and "log" in str(err)
        assert isinstance(err, host.DeviceTimeout)  # code that handles timeouts handles this too
    finally:
        t0 = time.monotonic()
        dev.close()
        assert time.monotonic() - t0 < 1.0


def test_frozen_daemon_then_a_new_host_waits_for_the_stale_lease():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    try:
        dev = host.connect(d.endpoint, timeout=1.0, retries=1, lease_ms=6000)
        threading.Timer(0.5, os.kill, (d.proc.pid, signal.SIGSTOP)).start()
        _raises_within(lambda: _long_run(dev), host.DeviceTimeout, 0.5 + 2 * 1.0 + SLACK_S)
        t0 = time.monotonic()
        dev.close()
        assert time.monotonic() - t0 < 1.0  # never longer than one timeout
        os.kill(d.proc.pid, signal.SIGCONT)
        # the frozen host could not release: its lease (6 s) still holds the device...
        with pytest.raises(host.NotOwner, match="lease"):
            host.connect(d.endpoint, timeout=2.0)
        # ...until it runs out; a host that is willing to wait gets the device then
        waited = []
        with host.connect(d.endpoint, timeout=2.0, wait_for_lease=10.0, on_wait=waited.append) as b:
            assert b.read("OWNER") == b.token
        assert waited and 0 < waited[0] <= 6.1
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
        d.stop()


# ------------------------------------------------------------------ thermohil train
def _train(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "host.cli", "train", "--algo", "tngd", "--dataset", "spiral",
           "--epochs", "200", "--out", str(out), *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _started(out: Path) -> bool:
    f = out / "metrics.jsonl"
    return f.exists() and len(f.read_text().splitlines()) >= 3


def test_train_stops_at_once_when_its_spawned_daemon_dies(tmp_path):
    out = tmp_path / "run"
    p = _train(out)
    try:
        wait_for(lambda: _started(out), 120, "training to start")
        daemon = [c for c in children(p.pid)]
        assert len(daemon) == 1
        os.kill(daemon[0], signal.SIGKILL)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 1
    assert "DeviceDied" in err and "killed by signal 9" in err, err[-2000:]
    assert took < SLACK_S + 1.0, f"the trainer exited {took:.1f} s after its daemon died"


def test_train_on_a_frozen_board_stops_within_its_deadline(tmp_path):
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "512", "--max-rank", "32")
    out = tmp_path / "run"
    p = _train(out, "--device", d.endpoint, "--timeout", "2", "--retries", "1")
    try:
        wait_for(lambda: _started(out), 120, "training to start")
        os.kill(d.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        _, err = p.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.kill(d.proc.pid, signal.SIGCONT)
        d.stop()
    assert p.returncode == 1
    assert "DeviceTimeout" in err and "training stopped" in err, err[-2000:]
    # (retries + 1) × timeout to notice; close() skips the release of an unanswering device
    assert took < 2 * 2.0 + SLACK_S, f"reported {took:.1f} s after the board froze"
    # the run's last row says why it stopped, with the link's counters at that moment
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["error"].startswith("DeviceTimeout") and last["link"]["timeouts"] == 2


def test_train_on_a_rebooted_device_stops_and_resumes_from_its_checkpoint(tmp_path):
    """A device reset mid-training must never be trained on with its reset configuration: the
    trainer stops, names its checkpoint, and --resume continues from it on the new device."""
    endpoint = ipc_endpoint()
    d = start_daemon(endpoint, "--cells", "512", "--max-rank", "32")
    out = tmp_path / "run"
    p = _train(out, "--device", endpoint, "--timeout", "5")
    try:
        wait_for(lambda: (out / "checkpoint.npz").exists() and _started(out), 120,
                 "the first checkpoint")
        d.stop()
        d = start_daemon(endpoint, "--cells", "512", "--max-rank", "32")
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    try:
        assert p.returncode == 1, err[-2000:]
        assert ("DeviceReset" in err or "DeviceTimeout" in err) and "--resume" in err, err[-2000:]
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert "error" in rows[-1] and "link" in rows[-1]  # the run says why it stopped
        rows = [row for row in rows if "epoch" in row]
        r = subprocess.run([sys.executable, "-m", "host.cli", "train", "--algo", "tngd",
                            "--dataset", "spiral", "--epochs", str(rows[-1]["epoch"] + 2), "--out",
                            str(out), "--device", endpoint, "--resume", "--json"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout.strip().splitlines()[-1])["epochs"] == rows[-1]["epoch"] + 2
    finally:
        d.stop()
