"""The real daemon as a subprocess, over real tcp and ipc sockets (docs/protocol.md)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

import host
from host.thermo_device import rd, wr
from protocol.codec import PROTOCOL_VERSION
from protocol import REGMAP, Op, Status, Transaction, limits
from protocol.codec import decode_reply, encode_request
from support import REPO, RawClient, ipc_endpoint, random_spd, start_daemon


@pytest.fixture(scope="module", params=["tcp", "ipc"])
def daemon(request):
    endpoint = "tcp://127.0.0.1:0" if request.param == "tcp" else ipc_endpoint()
    d = start_daemon(endpoint, "--cells", "32", "--seed", "7")
    yield d
    assert d.stop() == 0


@pytest.fixture()
def dev(daemon):
    with host.connect(daemon.endpoint, timeout=10.0) as d:
        yield d


def snapshot(endpoint: str) -> dict:
    """Every RW register's value, read by an independent client (reads need no ownership)."""
    c = RawClient(endpoint)
    names = [r.name for r in REGMAP.registers.values() if r.access == "RW"]
    reply = c.transact([rd(n) for n in names])
    c.close()
    assert reply.status == Status.OK
    return {n: d.tolist() for n, d in zip(names, reply.data)}


def test_spd_32_mean_and_covariance(dev):
    """Issue #2 'done when': 32×32 SPD, cond ≈ 10, ideal profile, over a real socket."""
    rng = np.random.default_rng(11)
    n, kappa = 32, 1e-3
    A = random_spd(n, 10.0, rng)
    b = rng.uniform(-1, 1, n)
    exact = np.linalg.solve(A, b)
    dev.configure(temperature=kappa, mode="overdamped")
    T = 400.0
    m = dev.solve_step(coupling=A, bias=b, t=T, burn_in=20.0)
    rel = np.linalg.norm(m - exact) / np.linalg.norm(exact)
    assert rel < 0.02
    # and consistent with its own standard error: s.e._i = sqrt(2κ (A⁻²)_ii / T)
    se = np.sqrt(2 * kappa * np.diag(np.linalg.inv(A @ A)) / T)
    assert np.all(np.abs(m - exact) < 5 * se)

    # covariance: samples spaced Δ = 2τ0 apart; the slowest mode has λmin = 1, so x's
    # autocorrelation at one lag is ≤ e^-2 and that of the products x_i x_j ≤ e^-4, giving
    # n_eff ≈ n (1 - e^-4)/(1 + e^-4) for a covariance entry (AR(1) bound).
    ns, period = 3000, 2.0
    S = dev.samples(ns, period=period)
    C = np.cov(S.T)
    Sigma = kappa * np.linalg.inv(A)
    n_eff = ns * (1 - np.exp(-4)) / (1 + np.exp(-4))
    sd = np.sqrt((np.outer(np.diag(Sigma), np.diag(Sigma)) + Sigma**2) / n_eff)
    z = (C - Sigma) / sd
    print(f"max |z| = {np.max(np.abs(z)):.2f}, mean z² = {np.mean(z**2):.2f}, rel = {rel:.4f}")
    assert np.max(np.abs(z)) < 5.0, f"max |z| = {np.max(np.abs(z)):.2f}"
    assert np.mean(z**2) < 1.5  # the bulk of the entries is within one standard error
    # the sample mean is a time average over ns·Δ: s.e. sqrt(2κ (A⁻²)_ii / (ns Δ))
    se_samples = np.sqrt(2 * kappa * np.diag(np.linalg.inv(A @ A)) / (ns * period))
    assert np.all(np.abs(S.mean(axis=0) - exact) < 5 * se_samples)


def test_program_commit_run_wait_mean_is_one_round_trip(dev):
    rng = np.random.default_rng(2)
    A = random_spd(16, 5.0, rng)
    b = rng.uniform(-1, 1, 16)
    before = dev.stats.packets
    dev.solve_step(coupling=A, bias=b, t=20.0)
    assert dev.stats.packets - before == 1
    J = rng.standard_normal((4, 16))
    before = dev.stats.packets
    dev.solve_step(lowrank=(J, np.eye(4), np.full(16, 0.5)), bias=b, t=20.0)
    assert dev.stats.packets - before == 1


# ----------------------------------------------------------------------------- hostile input
def assert_still_serving(endpoint: str, before: dict) -> None:
    c = RawClient(endpoint)
    reply = c.transact([rd("MAGIC")])
    c.close()
    assert reply.status == Status.OK and int(reply.data[0][0]) == REGMAP.meta["magic"]
    assert snapshot(endpoint) == before


def test_malformed_msgpack(dev, daemon):
    before = snapshot(daemon.endpoint)
    c = RawClient(daemon.endpoint)
    for junk in [b"\xc1", b"\x92\x01", b"not msgpack at all", msgpack.packb([1, 2, 3]),
                 msgpack.packb({"v": list(PROTOCOL_VERSION), "seq": 1, "cid": b"x" * 16, "own": 0,
                                "tx": "bad"})]:
        c.send_frames([junk])
        reply = decode_reply(c.recv())
        assert reply.status == Status.MALFORMED
    c.close()
    assert_still_serving(daemon.endpoint, before)
    assert "rejected packet" in daemon.log()


def test_bad_version(daemon):
    c = RawClient(daemon.endpoint)
    header = {"v": [9, 0], "seq": 5, "cid": b"y" * 16, "own": 0, "tx": [[0, 0, 1]]}
    c.send_frames([msgpack.packb(header)])
    reply = decode_reply(c.recv())
    c.close()
    assert reply.status == Status.BAD_VERSION and reply.seq == 5


def test_payload_frame_size_mismatch(dev, daemon):
    before = snapshot(daemon.endpoint)
    c = RawClient(daemon.endpoint)
    frames = encode_request(1, c.cid, dev.token, [wr("SCRATCH", [1, 2])])
    frames[1] = bytes(memoryview(frames[1]))[:5]  # 5 bytes for 2 words
    c.send_frames(frames)
    assert decode_reply(c.recv()).status == Status.MALFORMED
    c.close()
    assert_still_serving(daemon.endpoint, before)


@pytest.mark.parametrize("case", ["unknown_op", "bad_address", "read_only", "too_many", "not_owner",
                                  "big_header"])
def test_rejected_packets_change_nothing(dev, daemon, case):
    before = snapshot(daemon.endpoint)
    c = RawClient(daemon.endpoint)
    good = wr("SCRATCH", [0x1234])
    tx = {
        "unknown_op": [good, Transaction(42, 0, (1,))],
        "bad_address": [good, Transaction(Op.WRITE, 0x0FFF_FFFF, (1,), np.array([1], np.uint32))],
        "read_only": [good, wr("SERIAL", [1])],
        "too_many": [good] * (limits.MAX_TRANSACTIONS + 1),
        "not_owner": [good],
        "big_header": [Transaction(Op.READ, REGMAP.SCRATCH.address, (1,))] * 10,
    }[case]
    owner = 0xBAD if case == "not_owner" else dev.token
    frames = encode_request(1, c.cid, owner, tx)
    if case == "big_header":
        h = msgpack.unpackb(frames[0])
        h["cid"] = b"z" * 16
        frames[0] = msgpack.packb(h) + b"\x00" * (limits.MAX_HEADER_BYTES + 1)
    c.send_frames(frames)
    reply = decode_reply(c.recv())
    c.close()
    expected = {"unknown_op": Status.BAD_OP, "bad_address": Status.BAD_ADDRESS,
                "read_only": Status.ACCESS, "too_many": Status.TOO_LARGE,
                "not_owner": Status.NOT_OWNER, "big_header": Status.TOO_LARGE}[case]
    assert reply.status == expected
    assert_still_serving(daemon.endpoint, before)


def test_oversized_frame_is_dropped_by_zmq(daemon):
    """A frame above MAXMSGSIZE never reaches the firmware: zmq drops the peer; others carry on."""
    before = snapshot(daemon.endpoint)
    c = RawClient(daemon.endpoint)
    c.send_frames([b"\x80", b"\0" * (limits.MAX_FRAME_BYTES + 8)])
    assert c.recv(timeout=1.0) is None
    c.close()
    assert_still_serving(daemon.endpoint, before)


def test_unstable_matrix_raises_saturated(dev):
    A = np.eye(8) * 0.5
    A[3, 3] = -0.5
    dev.load_coupling(A)
    dev.load_bias(np.full(8, 0.2))
    dev.commit()
    with pytest.raises(host.DeviceSaturated, match="not positive definite") as e:
        dev.run(100.0)
    assert 3 in e.value.cells
    assert np.all(np.isfinite(dev.state()))
    dev.clear_saturation()


def test_saturation_of_an_earlier_run_does_not_fail_the_next(dev):
    """Each run clears SATURATED in the CTRL word that starts it, so the flag reflects this run
    only: a stable system after an unstable one runs (and samples) without DeviceSaturated."""
    A = np.eye(8)
    A[0, 0] = -1.0
    dev.load_coupling(A)
    dev.load_bias(np.full(8, 0.5))
    dev.commit()
    with pytest.raises(host.DeviceSaturated):
        dev.run(50.0)
    assert dev.read("STATUS") & REGMAP.STATUS.bit("SATURATED")  # left set, as another session might
    dev.load_coupling(np.eye(8))
    dev.load_bias(np.full(8, 0.5))
    dev.commit()
    dev.run(30.0)
    np.testing.assert_allclose(dev.state(), 0.5, atol=0.15)  # cell 0 relaxed from the rail
    assert not dev.read("STATUS") & REGMAP.STATUS.bit("SATURATED")
    dev.load_coupling(A)
    dev.commit()
    with pytest.raises(host.DeviceSaturated):
        dev.run(50.0)
    dev.load_coupling(np.eye(8))
    dev.commit()
    assert dev.samples(5, period=1.0).shape == (5, 8)


def test_samples_leave_sampling_off(dev):
    """SAMPLE_PERIOD is latched by RUN and zeroed in the same packet: later runs add nothing
    to the FIFO."""
    dev.load_coupling(np.eye(8))
    dev.commit()
    assert dev.samples(4, period=0.5).shape == (4, 8)
    assert dev.read("SAMPLE_PERIOD") == 0.0
    assert dev.read("FIFO_LEVEL") == 0
    dev.run(5.0)
    assert dev.read("FIFO_LEVEL") == 0


def test_retry_with_same_seq_is_applied_once(dev, daemon):
    """A RUN retried with the same (client, seq) — e.g. after a lost reply — runs once."""
    dev.load_coupling(np.eye(4))
    dev.commit()
    c = RawClient(daemon.endpoint)
    c.cid = dev.driver.cid  # the same client id as the owner...
    t0 = dev.read("DEVICE_TIME")
    tx = [wr("RUN_TIME", [np.float32(3.0).view(np.uint32)]),
          wr("CTRL", [REGMAP.CTRL.bit("RUN")]),
          Transaction(Op.WAIT, REGMAP.STATUS.address, (REGMAP.STATUS.bit("RUNNING"), 0, 5000))]
    seq = 10**9  # ...with a seq the driver will not reach
    r1 = c.transact(tx, owner=dev.token, seq=seq)
    r2 = c.transact(tx, owner=dev.token, seq=seq)
    c.close()
    assert r1.status == r2.status == Status.OK
    assert dev.read("DEVICE_TIME") - t0 == pytest.approx(3.0, rel=1e-6)


def test_events_published(daemon, dev):
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"run_done")
    sub.connect(daemon.events)
    time.sleep(0.3)  # slow joiner
    dev.load_coupling(np.eye(4))
    dev.commit()
    dev.run(1.0)
    assert sub.poll(5000)
    topic, body = sub.recv_multipart()
    sub.close(0)
    assert topic == b"run_done"
    assert msgpack.unpackb(body)["boot_id"] == dev.read("BOOT_ID")


def test_second_host_is_locked_out_until_lease_expires(daemon):
    with host.connect(daemon.endpoint, lease_ms=400, keepalive=False) as first:
        first.write("SCRATCH", 1)
        with pytest.raises(host.NotOwner, match="owned by another host"):
            host.connect(daemon.endpoint)
        time.sleep(0.6)  # first goes silent; its lease runs out
        with host.connect(daemon.endpoint) as second:
            second.write("SCRATCH", 2)
            assert second.read("OWNER") == second.token
        with pytest.raises(host.NotOwner):
            first.write("SCRATCH", 3)


# ----------------------------------------------------------------------------- process life
def test_dead_daemon_times_out_never_hangs():
    d = start_daemon(ipc_endpoint(), "--cells", "4")
    dev = host.connect(d.endpoint, timeout=0.5, retries=1)
    d.proc.kill()
    d.proc.wait()
    t0 = time.monotonic()
    with pytest.raises(host.DeviceTimeout, match="no reply"):
        dev.read("STATUS")
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5 * 2 + 0.5  # (retries + 1) × timeout, plus slack
    dev.close()  # closing a dead device must not hang either
    d.stop()


def test_restarted_daemon_raises_device_reset_and_recovers():
    endpoint = ipc_endpoint()
    d = start_daemon(endpoint, "--cells", "4")
    dev = host.connect(endpoint, timeout=2.0)
    dev.write("SCRATCH", 5)
    dev.load_coupling(np.eye(4) * 2)
    dev.load_bias(np.ones(4))
    dev.commit()
    d.stop()
    d = start_daemon(endpoint, "--cells", "4")
    try:
        with pytest.raises(host.DeviceReset):
            dev.read("SCRATCH")
        dev.recover()
        dev.run(20.0)
        np.testing.assert_allclose(dev.mean(), 0.5, atol=0.05)
    finally:
        dev.close()
        d.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signals_stop_cleanly(sig):
    d = start_daemon(ipc_endpoint(), "--cells", "4")
    assert d.stop(sig) == 0


def test_non_loopback_bind_needs_keys_or_insecure():
    p = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--endpoint", "tcp://0.0.0.0:0",
                        "--events", "tcp://0.0.0.0:0"], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert p.returncode == 1
    assert "CURVE" in p.stderr and "--insecure" in p.stderr
