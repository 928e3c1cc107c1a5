"""A host never receives state, mean or samples from a run it did not start.

The central scenario: host A starts a long solve and is frozen past its lease, host B takes the
device over and runs its own problem, A is resumed. A's call must raise, not return B's mean.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import host
from host.thermo_device import rd, wr
from protocol import REGMAP, Op, Status, Transaction
from protocol.codec import encode_request
from support import REPO, start_daemon, wait_for

HOST_A = r"""
import json, sys
import numpy as np
import host
dev = host.connect(sys.argv[1], lease_ms=500, timeout=2.0, retries=0)
# a run far longer than the test: ~10^9 EM substeps (exact propagation would finish it at once)
dev.configure(temperature=1e-4, substep=1e-3, integrator="em")
dev.write("EMU_RUN_BUDGET", 86400.0)
print("started", flush=True)
try:
    m = dev.solve_step(coupling=np.eye(8), bias=np.full(8, 0.25), t=1e6)
    print(json.dumps({"result": m.tolist()}), flush=True)
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}), flush=True)
"""


def test_a_host_frozen_past_its_lease_gets_an_error_not_another_hosts_result():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "8")
    a = subprocess.Popen([sys.executable, "-c", HOST_A, d.endpoint], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert a.stdout.readline().strip() == "started"
        time.sleep(0.4)  # A's packet is parked at its run WAIT
        os.kill(a.pid, signal.SIGSTOP)
        # B waits for A's lease (500 ms) to lapse, takes over and runs its own problem
        with host.connect(d.endpoint, wait_for_lease=5.0, timeout=5.0) as b:
            assert b.read("STATUS") & REGMAP.STATUS.bit("RUN_END") == 3 << 16  # A's run: OWNER_LOST
            b.stop()
            b.configure(temperature=1e-4, substep=0.0)
            mine = b.solve_step(coupling=np.eye(8), bias=np.full(8, 0.75), t=30.0, burn_in=10.0)
            np.testing.assert_allclose(mine, 0.75, atol=0.02)
            b.run(1e4, wait=False)  # B's next run is in progress when A wakes up
            os.kill(a.pid, signal.SIGCONT)
            out, err = a.communicate(timeout=30)
            assert b.read("OWNER") == b.token  # A's wake-up took nothing from B
        answer = json.loads(out.strip().splitlines()[-1])
        assert "result" not in answer, f"host A was handed a mean it did not produce: {answer}"
        assert answer["error"] == "LeaseLost", answer
        assert "no longer holds the device" in answer["message"]
    finally:
        if a.poll() is None:
            os.kill(a.pid, signal.SIGCONT)
            a.kill()
            a.wait()
        d.stop()


# ------------------------------------------------------------------ the same at the firmware level
def _packet(seq: int, token: int, tx: list[Transaction]) -> list:
    return encode_request(seq, b"A" * 16, token, tx)


def _claim(fw, token: int, lease_ms: int) -> None:
    reply = fw.execute(_packet(1, token, [wr("OWNER", [token]), wr("LEASE_MS", [lease_ms])]))
    assert reply.status == Status.OK, reply.message


@pytest.fixture()
def fw():
    from device.emulator import build_firmware
    f = build_firmware(4)
    yield f
    f.shutdown()


def _run_tail(seq: int, token: int) -> list:
    """What a host sends after a WAIT slice ends: wait again, then read the result."""
    running = REGMAP.STATUS.bit("RUNNING")
    return _packet(seq, token, [Transaction(Op.WAIT, REGMAP.STATUS.address, (running, 0, 5000)),
                                rd("STATUS"), rd("ACCUMULATOR", 4)])


def test_a_parked_packet_whose_lease_lapses_reads_nothing(fw):
    """The lease runs out while the packet is parked: the run stops (OWNER_LOST), the WAIT is
    released, and the reads after it answer NOT_OWNER instead of the cut run's average."""
    token = 0x1234567
    _claim(fw, token, lease_ms=150)
    fw.regs.set_f32("EMU_SUBSTEP", 1e-3)
    fw.core.set_fidelity(substep=1e-3)
    fw.core.set_integrator("em")  # a run that lasts: exact propagation would finish it at once
    start = _packet(2, token, [wr("RUN_TIME", [np.float32(1e5).view(np.uint32)]),
                               wr("CTRL", [REGMAP.CTRL.bit("RUN") | REGMAP.CTRL.bit("CLEAR_ACC")])])
    assert fw.execute(start).status == Status.OK
    t0 = time.monotonic()
    reply = fw.execute(_run_tail(3, token), timeout=5.0)
    assert time.monotonic() - t0 < 2.0  # released by the lease ending, not by the WAIT timeout
    assert reply.status == Status.NOT_OWNER  # at the WAIT itself or at the read after it
    assert Status.OK not in reply.tx_status[1:] and reply.data[1] is None and reply.data[2] is None
    assert "does not hold the lease" in reply.message
    assert REGMAP.STATUS.field("RUN_END").get(fw.status_word()) == 3  # OWNER_LOST
    assert not fw.running


def test_a_stale_token_reads_nothing_even_on_a_free_device(fw):
    """A re-sent packet tail from a host whose lease lapsed is refused whole at validation,
    whether or not another host has claimed since."""
    token, other = 0x1111, 0x2222
    _claim(fw, token, lease_ms=100)
    time.sleep(0.15)
    reply = fw.execute(_run_tail(5, token))
    assert reply.status == Status.NOT_OWNER and all(s != Status.OK for s in reply.tx_status)
    assert "the device is free" in reply.message
    reply = fw.execute(encode_request(1, b"B" * 16, other, [wr("OWNER", [other])]))
    assert reply.status == Status.OK
    reply = fw.execute(_run_tail(6, token))
    assert reply.status == Status.NOT_OWNER and "another host owns the device" in reply.message
    # reads without a token stay open (monitors, `thermohil regs read`)
    assert fw.execute(encode_request(1, b"C" * 16, 0, [rd("STATUS")])).status == Status.OK


def test_releasing_stops_the_run_and_the_end_is_reported(fw):
    token = 0x3333
    _claim(fw, token, lease_ms=10_000)
    fw.core.set_fidelity(substep=1e-3)
    fw.core.set_integrator("em")  # a run that lasts: exact propagation would finish it at once
    run = [wr("RUN_TIME", [np.float32(1e5).view(np.uint32)]), wr("CTRL", [REGMAP.CTRL.bit("RUN")])]
    assert fw.execute(_packet(2, token, run)).status == Status.OK
    assert fw.running
    assert fw.execute(_packet(3, token, [wr("OWNER", [0])])).status == Status.OK
    wait_for(lambda: not fw.running, 2.0, "the run to stop at release")
    assert REGMAP.STATUS.field("RUN_END").get(fw.status_word()) == 3


def test_a_stopped_run_is_an_error_not_a_partial_average():
    with host.connect("local://?cells=4") as dev:
        dev.configure(substep=1e-3, integrator="em")
        dev.load_coupling(np.eye(4))
        dev.load_bias(np.ones(4))
        dev.commit()
        dev.run(1e5, wait=False)
        dev.stop()
        with pytest.raises(host.RunAborted, match="stopped") as e:
            dev.wait()
        assert e.value.end == "stopped"
        dev.configure(substep=0.0)
        dev.run(5.0)  # the next whole run is fine
        assert np.all(np.isfinite(dev.mean()))


def test_results_after_a_lapsed_lease_are_refused_even_after_claiming_again():
    """Host A's lease lapses mid-run; claiming again does not make the cut run's average, or
    the average of a run another host did meanwhile, A's result."""
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    try:
        a = host.connect(d.endpoint, lease_ms=300, timeout=2.0, keepalive=False)
        a.configure(substep=1e-3, integrator="em")
        a.load_coupling(np.eye(4))
        a.load_bias(np.full(4, 0.5))
        a.commit()
        a.run(1e5, wait=False)
        time.sleep(0.5)  # A is silent past its lease: the run stops (OWNER_LOST)
        with pytest.raises(host.LeaseLost):
            a.mean()
        a.claim(300)
        with pytest.raises(host.RunAborted, match="started no run since it claimed"):
            a.mean()  # the cut run is not a result, whoever holds the device now
        assert a.read("STATUS") >> 16 & 7 == 3  # (it was cut: RUN_END = OWNER_LOST)
        a.release()
        with host.connect(d.endpoint) as b:  # B runs its own problem to the end
            b.configure(substep=0.0)
            b.solve_step(coupling=np.eye(4), bias=np.full(4, -0.5), t=10.0)
        with host.connect(d.endpoint) as c:  # a host that never ran reads nobody's result
            with pytest.raises(host.RunAborted, match="started no run"):
                c.mean()
        a.claim(30_000)
        for read in (a.mean, a.state):
            with pytest.raises(host.RunAborted, match="started no run") as e:
                read()
            assert e.value.end == "foreign"
        a.recover()  # B's problem is what the device holds: upload A's again
        a.configure(substep=0.0)
        a.run(10.0)  # burn-in from B's state
        a.run(20.0)  # A's own run again: its results are A's
        np.testing.assert_allclose(a.mean(), 0.5, atol=0.05)
        a.close()
    finally:
        d.stop()


def test_waiting_without_ownership_is_refused_at_once():
    with host.connect("local://?cells=4") as owner:
        owner.configure(substep=1e-3, integrator="em")
        owner.run(1e5, wait=False)
        watcher = host.ThermoDevice(owner.driver, claim=False)
        sent = owner.stats.packets
        with pytest.raises(host.NotOwner, match="needs ownership"):
            watcher.wait()
        assert owner.stats.packets == sent  # refused before anything was sent, no spinning
        owner.stop()


def test_a_busy_host_keeps_its_lease_and_a_silent_one_loses_it():
    """The lease frees the device of a host that died or froze, not of one that computes: a
    keep-alive renews it while the host is between calls."""
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    try:
        with host.connect(d.endpoint, lease_ms=300) as busy:
            time.sleep(1.2)  # four leases of digital work
            assert busy.read("OWNER") == busy.token
            with pytest.raises(host.NotOwner):
                host.connect(d.endpoint)
            busy.write("SCRATCH", 3)
        silent = host.connect(d.endpoint, lease_ms=300, keepalive=False)
        time.sleep(0.6)
        with pytest.raises(host.LeaseLost):
            silent.write("SCRATCH", 4)
        silent.close()
    finally:
        d.stop()


def test_a_result_is_this_hosts_own_even_across_threads_and_device_objects():
    with host.connect("local://?cells=4", lease_ms=300) as dev:
        dev.load_coupling(np.eye(4))
        dev.load_bias(np.full(4, 0.5))
        dev.commit()
        dev.run(30.0)
        other = host.ThermoDevice(dev.driver, claim=False)  # same link: the same lock
        assert other.link is dev.link
        seen = []
        with dev.batch():  # a batch belongs to the thread that opened it
            import threading
            t = threading.Thread(target=lambda: seen.append(dev.read("N_CELLS")))
            t.start()
            t.join(5)
            m = dev.mean()
        assert seen == [4] and np.allclose(m.value, 0.5, atol=0.05)
        with pytest.raises(host.RunAborted, match="started no run"):
            other.state()  # another object on the same device started nothing


def test_a_claim_whose_answer_was_lost_is_retried_with_the_same_token():
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    try:
        dev = host.connect(d.endpoint, claim=False, timeout=0.5, retries=0)
        os.kill(d.proc.pid, signal.SIGSTOP)
        with pytest.raises(host.DeviceTimeout):
            dev.claim()
        os.kill(d.proc.pid, signal.SIGCONT)
        time.sleep(0.3)  # the claim lands now, its answer lost
        dev.claim()  # the same token: this host's own lease, not a lock-out
        assert dev.read("OWNER") == dev.token
        dev.close()
        with host.connect(d.endpoint) as b:
            assert b.read("OWNER") == b.token  # and close() released it
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
        d.stop()


def test_a_dropped_device_object_does_not_hold_the_device_forever():
    import gc
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4")
    try:
        dev = host.connect(d.endpoint, lease_ms=300)
        dev.write("SCRATCH", 1)
        del dev
        gc.collect()
        time.sleep(1.0)  # no keep-alive without the object: the lease runs out
        with host.connect(d.endpoint) as b:
            assert b.read("OWNER") == b.token
    finally:
        d.stop()
