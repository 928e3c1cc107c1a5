"""A rebooted device stays reported until the host acknowledges it; runs that cannot finish are
refused up front; misuse of the protocol (a reused sequence number, CURVE without client keys)
gets its own clear answer."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

import host
from host.thermo_device import rd, wr
from protocol import REGMAP, Op, Status, Transaction
from protocol.codec import encode_request
from support import REPO, RawClient, ipc_endpoint, start_daemon


def test_device_reset_is_sticky_until_recover():
    endpoint = ipc_endpoint()
    d = start_daemon(endpoint, "--cells", "4")
    dev = host.connect(endpoint, timeout=2.0)
    try:
        dev.configure(temperature=0.005)
        dev.load_coupling(np.eye(4) * 2)
        dev.load_bias(np.ones(4))
        dev.commit()
        d.stop()
        d = start_daemon(endpoint, "--cells", "4")
        with pytest.raises(host.DeviceReset):
            dev.read("TEMPERATURE")
        sent = dev.stats.packets
        for _ in range(2):  # caught and retried: still the reset, and nothing reaches the device
            with pytest.raises(host.DeviceReset):
                dev.read("TEMPERATURE")
        assert dev.stats.packets == sent
        token = dev.token
        dev.recover()
        assert dev.token == token  # the same token: a claim of ours lost in the reboot cannot lock us out
        assert dev.read("TEMPERATURE") == pytest.approx(0.005)  # not the reboot default 0.001
        dev.run(20.0)
        np.testing.assert_allclose(dev.mean(), 0.5, atol=0.05)
    finally:
        dev.close()
        d.stop()


def test_acknowledging_a_reset_gives_the_rebooted_defaults_knowingly():
    endpoint = ipc_endpoint()
    d = start_daemon(endpoint, "--cells", "4")
    dev = host.connect(endpoint, timeout=2.0)
    try:
        dev.configure(temperature=0.005)
        dev.commit()
        d.stop()
        d = start_daemon(endpoint, "--cells", "4")
        with pytest.raises(host.DeviceReset):
            dev.read("TEMPERATURE")
        dev.acknowledge_reset()
        assert dev.token == 0 and dev.read("TEMPERATURE") == pytest.approx(0.001)
        with pytest.raises(host.NotOwner):  # the old claim died with the reboot
            dev.write("TEMPERATURE", 0.002)
    finally:
        dev.close()
        d.stop()


@pytest.mark.parametrize("case", ["stiff", "substep"])
def test_runs_that_cannot_finish_are_refused_at_once(case):
    with host.connect("local://?cells=8") as dev:
        dev.configure(integrator="em")  # the budget is EM's: exact propagation costs no substeps
        if case == "stiff":
            dev.load_coupling(np.eye(8) * 6e4)
            t = 2e4
        else:
            dev.load_coupling(np.eye(8))
            dev.configure(substep=1e-9)
            t = 50.0
        dev.commit()
        t0 = time.monotonic()
        with pytest.raises(host.DeviceError, match="EMU_RUN_BUDGET") as e:
            dev.run(t)
        assert time.monotonic() - t0 < 1.0
        assert e.value.status == Status.RANGE and "wall time" in str(e.value)
        assert not dev.read("STATUS") & REGMAP.STATUS.bit("RUNNING")
        # the budget is the user's to raise: the same request is then accepted (and stopped)
        dev.write("EMU_RUN_BUDGET", 86400.0)
        dev.run(t, wait=False)
        assert dev.read("STATUS") & REGMAP.STATUS.bit("RUNNING")
        dev.stop()


def test_a_run_over_its_wall_budget_stops_and_says_so():
    """The estimate can be wrong (a loaded machine): the budget is enforced while running too.
    A firmware clock under the test's control makes the overrun deterministic."""
    from device.emulator import build_firmware
    from protocol import RunEnd
    fw = build_firmware(4)
    now = [1000.0]
    fw.clock = lambda: now[0]
    try:
        token = 0x77
        tx = [wr("OWNER", [token]), wr("RUN_TIME", [np.float32(1e6).view(np.uint32)]),
              wr("CTRL", [REGMAP.CTRL.bit("RUN")])]
        assert fw.execute(encode_request(1, b"x" * 16, token, tx)).status == Status.OK
        assert fw.running
        now[0] += fw.run_budget() + 1.0
        deadline = time.monotonic() + 5
        while fw.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not fw.running and fw.run_end == RunEnd.BUDGET
        status = fw.execute(encode_request(2, b"x" * 16, token, [rd("STATUS")])).data[0][0]
        assert REGMAP.STATUS.field("RUN_END").get(int(status)) == RunEnd.BUDGET
    finally:
        fw.shutdown()


def test_linalg_rescales_a_badly_scaled_matrix_and_refuses_too_little_time():
    with host.connect("local://?cells=8") as dev:
        sol = host.linalg.solve(dev, 1e-12 * np.eye(8), np.full(8, 1e-12), tol=1e-2)
        np.testing.assert_allclose(sol.x, 1.0, rtol=0.05)
        with pytest.raises(ValueError, match="max_time is too short"):
            host.linalg.solve(dev, np.diag(np.geomspace(1, 1e3, 8)), np.ones(8), max_time=1.0)


def test_a_reused_sequence_number_with_other_content_runs_nothing():
    d = start_daemon(ipc_endpoint(), "--cells", "4")
    c = RawClient(d.endpoint)
    try:
        token = 0xABC
        assert c.transact([wr("OWNER", [token])], owner=token, seq=1).status == Status.OK
        first = c.transact([wr("SCRATCH", [11])], owner=token, seq=2)
        again = c.transact([wr("SCRATCH", [11])], owner=token, seq=2)  # a retry: answered from cache
        other = c.transact([wr("SCRATCH", [99])], owner=token, seq=2)  # a client bug
        assert first.status == again.status == Status.OK
        assert other.status == Status.SEQ_REUSED and "nothing was executed" in other.message
        assert int(c.transact([rd("SCRATCH")], owner=token, seq=3).data[0][0]) == 11
    finally:
        c.close()
        d.stop()


def test_an_unstable_underdamped_run_is_reported_not_averaged_to_zero():
    """A substep far too coarse for the coupling makes x jump rail to rail; landing exactly on
    a rail (or at the velocity bound) counts as hitting it, so the run raises."""
    with host.connect("local://?cells=8") as dev:
        # Euler–Maruyama's instability (exact propagation of these oscillators is stable)
        dev.configure(substep=1.0, mode="underdamped", friction=1e-6, integrator="em")
        for _ in range(2):
            with pytest.raises(host.DeviceSaturated):
                dev.solve_step(coupling=6e4 * np.eye(8), bias=np.ones(8), t=10.0)


def test_curve_with_an_unreadable_client_key_refuses_to_start(tmp_path):
    zmq_auth = pytest.importorskip("zmq.auth")
    zmq_auth.create_certificates(str(tmp_path), "server")
    (tmp_path / "authorized").mkdir()
    zmq_auth.create_certificates(str(tmp_path / "authorized"), "good")
    (tmp_path / "authorized" / "good.key_secret").unlink()
    (tmp_path / "authorized" / "junk.key").write_text("x\n")
    p = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--endpoint", "tcp://127.0.0.1:0",
                        "--events", "tcp://127.0.0.1:0", "--curve-keys", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1
    assert "junk.key" in p.stderr and "every client" in p.stderr


def test_curve_without_authorized_clients_refuses_to_start(tmp_path):
    zmq_auth = pytest.importorskip("zmq.auth")
    zmq_auth.create_certificates(str(tmp_path), "server")
    p = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--endpoint", "tcp://127.0.0.1:0",
                        "--events", "tcp://127.0.0.1:0", "--curve-keys", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 1
    assert "authorized" in p.stderr and "not found" in p.stderr
