"""Ownership and lease, register semantics, calibration, runs, number formats, sampling and the
stationary law: behaviour docs/protocol.md requires of every device (§8–§12, §0a).

Only the protocol and the register map are assumed. Sizes and limits are read from the device
(a small board has a FIFO of a few hundred words and 512-word replies), optional features are
skipped by their CAPS bit, and physics tolerances are what a calibrated chip meets: converter
steps, percent-level mismatch and a few standard errors of the noise, each derived where it is
used. Emulator seeds are fixed, so a run of the suite is reproducible there.

Run: pytest tests/conformance --device-url URL
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest

import host
from host.thermo_device import decode_register, rd, wr, wr_f32
from protocol import REGMAP, Op, Reply, RunEnd, Status, Transaction
from protocol.regmap import float_to_q31
from protocol.words import words_to_f64

CTRL, STATUS, IRQ = REGMAP.CTRL, REGMAP.STATUS, REGMAP.IRQ_STATUS
RUNNING = STATUS.bit("RUNNING")
RUN_END = STATUS.field("RUN_END")
FIFO = REGMAP.SAMPLE_FIFO.base
#: Lease of the lease tests: short, so that expiring it costs a fraction of a second.
LEASE_MS = 300
#: A WAIT slice: well inside the session's 30 s lease and the driver's 10 s timeout.
WAIT_SLICE_MS = 4000
#: Samples a fast FIFO-overrun check may take to fill the FIFO (the emulator takes about
#: 6000 per second; a board with a deep FIFO is covered by the slow variant).
FAST_FILL_SAMPLES = 2048


# -------------------------------------------------------------------------------- helpers
def raw(dev: host.ThermoDevice, tx: list[Transaction]) -> Reply:
    """Send transactions exactly as given, with the session's token, and return the reply."""
    return dev.driver.transact(tx)


def ok(dev: host.ThermoDevice, tx: list[Transaction]) -> list:
    """Like ``raw``, for packets that must succeed: the read data, aligned with ``tx``."""
    reply = raw(dev, tx)
    assert reply.status == Status.OK, f"{Status(reply.status).name}: {reply.message}"
    return reply.data


@contextmanager
def as_token(dev: host.ThermoDevice, token: int) -> Iterator[None]:
    """Send packets with another header token (0: none). The link lock keeps the session's
    keep-alive from sending with the borrowed token meanwhile."""
    with dev.link:
        saved, dev.driver.owner = dev.driver.owner, token
        try:
            yield
        finally:
            dev.driver.owner = saved


def reads(dev: host.ThermoDevice, tx: list[Transaction], *, token: int | None = None) -> list:
    """Plain READs, in as many packets as the device's advertised limits need (reads are
    idempotent, so splitting them changes nothing); the data aligned with ``tx``. ``token``:
    the header token (default the session's; 0 for open reads)."""
    token = dev.driver.owner if token is None else token
    lim = dev.limits
    cap = min(lim.max_reply_words if token else lim.max_open_reply_words,
              lim.max_packet_words, lim.max_frame_bytes // 4)
    pieces: list[tuple[int, Transaction]] = []
    for i, t in enumerate(tx):
        n = t.args[0]
        assert t.op == Op.READ
        pieces += [(i, Transaction(Op.READ, t.addr + k, (min(cap, n - k),)))
                   for k in range(0, n, cap)]
    parts: list[list[np.ndarray]] = [[] for _ in tx]
    with as_token(dev, token):
        while pieces:
            take, words = 0, 0
            while take < min(len(pieces), lim.max_transactions) and \
                    words + pieces[take][1].args[0] <= cap:
                words += pieces[take][1].args[0]
                take += 1
            batch, pieces = pieces[:take], pieces[take:]
            for (i, _), d in zip(batch, ok(dev, [t for _, t in batch])):
                parts[i].append(d)
    return [np.concatenate(p) for p in parts]


def open_read(dev: host.ThermoDevice, tx: list[Transaction]) -> list:
    """Reads without a token: served to anyone, and they renew no lease."""
    return reads(dev, tx, token=0)


def value(name: str, words: np.ndarray) -> int | float:
    return decode_register(REGMAP.registers[name], words)


def u32(words: np.ndarray) -> int:
    return int(words[0])


def volts(dev: host.ThermoDevice, words: np.ndarray) -> np.ndarray:
    """STATE / ACCUMULATOR / FIFO words (q31 of VMAX) as volts."""
    return np.asarray(words, dtype=np.uint32).view(np.int32).astype(np.float64) * dev.vmax / 2**31


def caps(dev: host.ThermoDevice) -> set[str]:
    return set(dev.info()["caps"])


def wait_idle(dev: host.ThermoDevice, budget_s: float = 20.0) -> None:
    """Park at a WAIT until the run ends, in slices (each new packet renews the lease)."""
    wait = Transaction(Op.WAIT, STATUS.address, (RUNNING, 0, WAIT_SLICE_MS))
    give_up = time.monotonic() + budget_s
    while True:
        reply = raw(dev, [wait])
        if reply.status == Status.OK:
            return
        assert reply.status == Status.TIMEOUT and time.monotonic() < give_up, reply.message


def load_uncoupled(dev: host.ThermoDevice, rate: float, n: int | None = None, *,
                   required: bool = True) -> None:
    """Stage A = rate·I on n cells: low-rank with rank 0 (the reset mode) where the device has
    it, dense otherwise. A chip with neither (capacitive coupling only) cannot hold such an A:
    a test that needs it is skipped; one that only needs some run (``required=False``) gets the
    reset configuration, uncoupled cells with A = 0, which every chip commits."""
    n = dev.n_cells if n is None else n
    have = caps(dev)
    if "lowrank" in have:
        dev.load_lowrank(np.zeros((0, n)), np.zeros((0, 0)), np.full(n, rate))
    elif "dense" in have:
        dev.load_coupling(rate * np.eye(n))
    elif required:
        pytest.skip("needs a coupling A = λI: the device has neither dense nor low-rank "
                    "coupling (CAPS.DENSE, CAPS.LOWRANK)")
    else:
        dev.configure(active=n)
        dev.write("COUPLING_MODE", 1)
        dev.write("RANK", 0)
        dev.write(REGMAP.DIAG.base, np.zeros(dev.n_cells, dtype=np.int64))


def long_run(dev: host.ThermoDevice) -> float:
    """A RUN_TIME that outlasts any test (the tests stop it): 10⁷ substeps of the committed
    configuration on the emulator (seconds of wall time, far inside EMU_RUN_BUDGET; Euler–
    Maruyama selected, as exact propagation finishes any run at once), 30 s of chip time on a
    board."""
    if "emulator" in caps(dev):
        dev.configure(integrator="em")
        t = 1e7 * dev.read("EMU_DT")
    else:
        t = 30.0 / dev.read("TAU0")
    return float(min(t, REGMAP.RUN_TIME.max))


@contextmanager
def borrowed_lease(dev: host.ThermoDevice) -> Iterator[int]:
    """The test takes over the session's lease (keep-alive off: only its own packets renew it)
    and may let it lapse or release it; afterwards the session host claims the device again
    with its own lease and keep-alive, as the next test expects."""
    token = dev.token
    dev._stop_keepalive()
    try:
        with dev.link:
            yield token
    finally:
        dev.driver.owner = token
        dev.claim(int(dev.lease_s * 1000))


def timed(dev: host.ThermoDevice, tx: list[Transaction], token: int | None = None
          ) -> tuple[Reply, float, float]:
    """The reply and the wall-clock interval it was produced in (send, receipt)."""
    with as_token(dev, dev.driver.owner if token is None else token):
        t0 = time.monotonic()
        reply = raw(dev, tx)
        return reply, t0, time.monotonic()


# ---------------------------------------------------------------------------- ownership §8
@contextmanager
def _released(dev: host.ThermoDevice, token: int) -> Iterator[None]:
    """Whatever happens inside, ``token`` does not keep the device (so that the session host
    can claim it back, and a failure here does not spread to the following tests)."""
    try:
        yield
    finally:
        with as_token(dev, token):
            raw(dev, [wr("OWNER", [0])])


@pytest.mark.spec("OWN-2")
def test_claim_and_release_rules(dev):
    """A claim succeeds on a free device or for the owner and fails while another token holds
    a live lease; OWNER written with a non-zero value other than the header's token is RANGE;
    only the owner may release."""
    OWNER = "OWNER"
    with borrowed_lease(dev) as mine, _released(dev, other := mine ^ 0x5A5A0000):
        assert ok(dev, [wr(OWNER, [mine]), rd(OWNER)])[1][0] == mine  # the owner claims again
        assert raw(dev, [wr(OWNER, [other])]).tx_status == [Status.RANGE]
        with as_token(dev, other):  # another host, while the lease is live
            assert raw(dev, [wr(OWNER, [other])]).tx_status == [Status.NOT_OWNER]
            assert raw(dev, [wr(OWNER, [0])]).tx_status == [Status.NOT_OWNER]
        with as_token(dev, 0):  # no token is not the owner either
            assert raw(dev, [wr(OWNER, [0])]).tx_status == [Status.NOT_OWNER]
        assert u32(open_read(dev, [rd(OWNER)])[0]) == mine

        ok(dev, [wr(OWNER, [0])])  # the owner releases: the device is free
        assert u32(open_read(dev, [rd(OWNER)])[0]) == 0
        with as_token(dev, other):
            assert raw(dev, [wr(OWNER, [mine])]).tx_status == [Status.RANGE]  # not its token
            assert ok(dev, [wr(OWNER, [other]), rd(OWNER)])[1][0] == other  # free: claimed
        # now this session's token is the stranger
        assert raw(dev, [wr(OWNER, [mine])]).tx_status == [Status.NOT_OWNER]
        assert raw(dev, [wr(OWNER, [0])]).tx_status == [Status.NOT_OWNER]
        assert u32(open_read(dev, [rd(OWNER)])[0]) == other
        with as_token(dev, other):
            ok(dev, [wr(OWNER, [0])])
        assert u32(open_read(dev, [rd(OWNER)])[0]) == 0


@pytest.mark.spec("OWN-4")
def test_every_valid_packet_renews_the_lease_and_silence_ends_it(dev):
    """Packets LEASE_MS/2 apart keep the device over several leases (read-only packets and one
    that fails at execution included); a packet refused at validation renews nothing; writing
    LEASE_MS re-arms the lease at once; after LEASE_MS of silence OWNER reads 0.

    Timing is judged from the wall-clock interval of each exchange (the device renews
    somewhere between sending and receipt of the renewing packet), so the checks tolerate a
    host that stalls for up to LEASE_MS/2 (150 ms)."""
    L = LEASE_MS
    with borrowed_lease(dev) as token:
        # a write of LEASE_MS re-arms the current lease (30 s until now): shorter ...
        left = u32(ok(dev, [wr("LEASE_MS", [L]), rd("LEASE_LEFT_MS")])[1])
        assert 0 < left <= L
        # ... and longer: the packet's own renewal gives L, only the write gives more
        left = u32(ok(dev, [wr("LEASE_MS", [2 * L]), rd("LEASE_LEFT_MS")])[1])
        assert L < left <= 2 * L
        ok(dev, [wr("LEASE_MS", [L])])

        fails_at_execution = Transaction(Op.READ_NI, FIFO, (1,))  # the FIFO is empty: RANGE
        probes = [([], Status.OK), ([rd("STATUS"), rd("SCRATCH")], Status.OK),
                  ([fails_at_execution], Status.RANGE), ([], Status.OK), ([], Status.OK)]
        for extra, status in probes:  # 2.5 L in all: without renewals the lease would end
            time.sleep(L / 2000)
            reply, t0, t1 = timed(dev, [rd("LEASE_LEFT_MS"), *extra])
            assert reply.tx_status[0] == Status.OK, reply.message
            assert reply.status == status, reply.message
            # renewed by this very packet: a lease left over from the last one has ≤ L/2
            assert u32(reply.data[0]) > 0.8 * L
            renewed = (t0, t1)

        time.sleep(L / 2000)
        refused = raw(dev, [wr_f32("TEMPERATURE", -1.0)])
        assert refused.status == Status.RANGE  # refused at validation: no heartbeat
        reply, t0, t1 = timed(dev, [rd("LEASE_LEFT_MS"), rd("OWNER")], token=0)
        silent_ms = (t0 - renewed[1]) * 1000  # at least this long since the last renewal
        left, owner = u32(reply.data[0]), u32(reply.data[1])
        assert left <= L - silent_ms + 5, (left, silent_ms)
        if (t1 - renewed[0]) * 1000 < L:  # not LEASE_MS yet since the last renewal: still ours
            assert owner == token and left > 0

        # silence (open reads renew nothing): the lease ends LEASE_MS after the last renewal
        time.sleep(max(0.0, renewed[1] + (L + 100) / 1000 - time.monotonic()))
        after = open_read(dev, [rd("OWNER"), rd("STATUS"), rd("LEASE_LEFT_MS"), rd("IRQ_STATUS")])
        assert u32(after[0]) == 0, "the lease did not expire"
        assert not u32(after[1]) & STATUS.bit("OWNED") and u32(after[2]) == 0
        assert u32(after[3]) & IRQ.bit("LEASE_EXPIRED")
        # the device is free: the old token gets nothing, but may claim it again
        assert raw(dev, [rd("SCRATCH")]).status == Status.NOT_OWNER
        assert ok(dev, [wr("OWNER", [token]), rd("OWNER")])[1][0] == token


def _kept_configuration(dev: host.ThermoDevice, n: int) -> list[Transaction]:
    return [rd("ACTIVE_CELLS"), rd("COUPLING_MODE"), rd("TEMPERATURE"), rd("BIAS_FS"),
            rd("BIAS", n), rd("DIAG_FS"), rd("DIAG", n), rd("MOBILITY_FS"), rd("MOBILITY", n)]


@pytest.mark.spec("OWN-5")
def test_lease_expiry_stops_the_owners_run_and_keeps_everything_else(dev):
    """The owner goes silent in the middle of a run: the run stops with RUN_END = OWNER_LOST,
    and x, the configuration, the accumulator and the FIFO stay as the run left them, for the
    next claim (nothing is reset by the claim either)."""
    n = dev.n_cells
    rate = 2.0
    target = np.resize([1.5, -1.0, 2.0, -2.0, 0.75], n)  # equilibrium A⁻¹b, far from x = 0
    load_uncoupled(dev, rate)
    dev.load_bias(rate * target)
    dev.configure(temperature=1e-4)  # thermal spread sqrt(κ/rate) = 7 mV
    dev.commit()
    dev.set_state(target)  # start at equilibrium: x is known whenever the run stops
    config = reads(dev, _kept_configuration(dev, n))
    t_run = long_run(dev)
    # x stays within thermal spread, ADC step and a calibrated chip's residual offsets and
    # percent-level gain errors of the target; a state reset to 0 is ≥ 0.75 V off
    close = dict(atol=0.05, rtol=0.03)
    with borrowed_lease(dev):
        d = ok(dev, [wr_f32("SAMPLE_PERIOD", 0.5), wr("SAMPLE_COUNT", [2]),
                     wr_f32("RUN_TIME", t_run),
                     wr("CTRL", [CTRL.bit("CLEAR_ACC") | CTRL.bit("CLEAR_FIFO") | CTRL.bit("RUN")]),
                     wr_f32("SAMPLE_PERIOD", 0.0), rd("RUN_COUNT"), wr("LEASE_MS", [LEASE_MS])])
        count = u32(d[5])
        started = time.monotonic()
        # from now on only open reads: they renew nothing, so the lease ends LEASE_MS from here
        while u32(open_read(dev, [rd("STATUS")])[0]) & RUNNING:
            assert time.monotonic() - started < LEASE_MS / 1000 + 2.0, "the run outlived the lease"
            time.sleep(0.02)
        names = ["STATUS", "OWNER", "RUN_COUNT", "IRQ_STATUS", "FIFO_LEVEL", "DEVICE_TIME",
                 "ACC_TIME"]
        d = open_read(dev, [*(rd(k) for k in names), rd("ACCUMULATOR", n), rd("STATE", n),
                            *_kept_configuration(dev, n)])
        v = {k: value(k, w) for k, w in zip(names, d)}
        assert RUN_END.get(v["STATUS"]) == RunEnd.OWNER_LOST, f"STATUS {v['STATUS']:#x}"
        assert v["OWNER"] == 0 and v["RUN_COUNT"] == count
        assert v["IRQ_STATUS"] & IRQ.bit("RUN_DONE") and v["IRQ_STATUS"] & IRQ.bit("LEASE_EXPIRED")
        assert not v["STATUS"] & STATUS.bit("SHADOW_DIRTY")
        for got, want in zip(d[len(names) + 2:], config):  # configuration: staged and committed
            np.testing.assert_array_equal(got, want)
        assert v["FIFO_LEVEL"] == 2 * n  # the samples stay
        assert v["ACC_TIME"] > 0  # the part of the run that was integrated stays
        np.testing.assert_allclose(volts(dev, d[len(names)]), target, **close)
        np.testing.assert_allclose(volts(dev, d[len(names) + 1]), target, **close)
        time.sleep(0.1)  # the dynamics stand still: time, accumulator and its time do not move
        again = open_read(dev, [rd("DEVICE_TIME"), rd("ACC_TIME"), rd("ACCUMULATOR", n)])
        assert value("DEVICE_TIME", again[0]) == v["DEVICE_TIME"]
        assert value("ACC_TIME", again[1]) == v["ACC_TIME"]
        np.testing.assert_array_equal(again[2], d[len(names)])
    # claimed again: still nothing reset; the samples pop, x and the committed configuration
    # carry on from where the run stopped
    d = ok(dev, [rd("FIFO_LEVEL"), rd("ACC_TIME"), Transaction(Op.READ_NI, FIFO, (2 * n,))])
    assert u32(d[0]) == 2 * n and value("ACC_TIME", d[1]) == v["ACC_TIME"]
    np.testing.assert_allclose(volts(dev, d[2]).reshape(2, n), [target, target], **close)
    dev.run(1.0)
    np.testing.assert_allclose(dev.state(), target, **close)


@pytest.mark.spec("OWN-5")
def test_releasing_the_device_stops_the_owners_run(dev):
    """A release ends the ownership too: the run stops in the releasing transaction."""
    load_uncoupled(dev, 1.0, required=False)
    dev.commit()
    t_run = long_run(dev)
    with borrowed_lease(dev):
        d = ok(dev, [wr_f32("RUN_TIME", t_run), wr("CTRL", [CTRL.bit("RUN")]), rd("STATUS"),
                     wr("OWNER", [0])])
        assert u32(d[2]) & RUNNING
        d = open_read(dev, [rd("STATUS"), rd("OWNER"), rd("IRQ_STATUS")])
        status = u32(d[0])
        assert not status & RUNNING and RUN_END.get(status) == RunEnd.OWNER_LOST
        assert u32(d[1]) == 0
        assert u32(d[2]) & IRQ.bit("RUN_DONE")
        assert not u32(d[2]) & IRQ.bit("LEASE_EXPIRED")  # a release is no expiry


# ------------------------------------------------------------------------ registers §9
@pytest.mark.spec("REG-3")
def test_ctrl_reads_zero_and_its_bits_act_in_table_order(dev):
    """CTRL reads 0 whatever was written. The bits of one word act in the table's order, not
    in bit order: COMMIT (bit 3) before RESET_STATE (bit 2), STOP before RESET_STATE, RUN
    (bit 0) last.

    Slow cells (mobility 10⁻³, rate 10⁻³/τ0) at equilibrium x = 1.5 V, no noise: x stays put
    while a run goes, and after a restart from x = 0 it has moved by well under 0.1 V within
    the 100 τ0 a board may spend on the rest of the packet."""
    n = dev.n_cells
    target = np.full(n, 1.5)
    load_uncoupled(dev, 1.0)
    dev.load_bias(target)
    dev.configure(temperature=0.0, mobility=1e-3)
    dev.commit()
    dev.set_state(target)
    t_run = long_run(dev)
    d = ok(dev, [wr_f32("RUN_TIME", t_run), wr("CTRL", [CTRL.bit("RUN")]), rd("CTRL"),
                 rd("STATUS")])
    assert u32(d[2]) == 0 and u32(d[3]) & RUNNING
    d = ok(dev, [wr("CTRL", [0xFFFFFE00]), rd("CTRL"), rd("STATUS")])  # bits 9–31: ignored
    assert u32(d[1]) == 0 and u32(d[2]) & RUNNING

    dev.load_bias(target)  # staged again: a COMMIT is pending
    assert dev.read("STATUS") & STATUS.bit("SHADOW_DIRTY")
    reply = raw(dev, [wr("CTRL", [CTRL.bit("COMMIT") | CTRL.bit("RESET_STATE")])])
    assert reply.tx_status == [Status.BUSY]  # RESET_STATE while running ...
    d = ok(dev, [rd("STATUS"), rd("CTRL"), rd("STATE", n)])
    assert not u32(d[0]) & STATUS.bit("SHADOW_DIRTY")  # ... after COMMIT had acted
    assert u32(d[0]) & RUNNING and u32(d[1]) == 0
    np.testing.assert_allclose(volts(dev, d[2]), target, atol=0.05)  # and no reset happened

    count = dev.read("RUN_COUNT")
    word = CTRL.bit("RUN") | CTRL.bit("RESET_STATE") | CTRL.bit("STOP")
    d = ok(dev, [wr("CTRL", [word]), rd("CTRL"), rd("STATUS"), rd("RUN_COUNT"), rd("STATE", n)])
    assert u32(d[1]) == 0
    assert u32(d[2]) & RUNNING and RUN_END.get(u32(d[2])) == 0  # stopped, reset, run again
    assert u32(d[3]) == count + 1
    np.testing.assert_allclose(volts(dev, d[4]), 0.0, atol=0.1)  # restarted from x = 0
    dev.stop()


@pytest.mark.spec("REG-3")
def test_irq_status_bits_clear_when_written_1_and_only_then(dev):
    """Two latched events, RUN_DONE and FIFO_THRESHOLD: writing 0s, or 1s to bits that are not
    set, clears nothing (and sets nothing); writing a set bit as 1 clears that bit alone."""
    n = dev.n_cells
    done, threshold = IRQ.bit("RUN_DONE"), IRQ.bit("FIFO_THRESHOLD")
    load_uncoupled(dev, 1.0, required=False)
    dev.commit()
    try:
        ok(dev, [wr("FIFO_THRESHOLD", [n]), wr_f32("SAMPLE_PERIOD", 0.5), wr("SAMPLE_COUNT", [1]),
                 wr_f32("RUN_TIME", 0.75), wr("CTRL", [CTRL.bit("CLEAR_FIFO") | CTRL.bit("RUN")]),
                 wr_f32("SAMPLE_PERIOD", 0.0)])
        wait_idle(dev)
        assert dev.read("FIFO_LEVEL") == n
        latched = dev.read("IRQ_STATUS")
        assert latched & done and latched & threshold, f"IRQ_STATUS {latched:#x}"
        others = 0xFFFFFFFF & ~latched
        d = ok(dev, [wr("IRQ_STATUS", [0]), rd("IRQ_STATUS"),
                     wr("IRQ_STATUS", [others]), rd("IRQ_STATUS"),
                     wr("IRQ_STATUS", [done]), rd("IRQ_STATUS"),
                     wr("IRQ_STATUS", [threshold]), rd("IRQ_STATUS")])
        assert u32(d[1]) == latched  # 0s clear nothing
        assert u32(d[3]) == latched  # 1s on clear bits neither set them nor clear the others
        assert u32(d[5]) == latched & ~done
        assert u32(d[7]) == latched & ~done & ~threshold
    finally:
        dev.write("FIFO_THRESHOLD", 0)


# ---------------------------------------------------------------------- calibration §9a
@pytest.mark.spec("CAL-1")
def test_calibrate_and_cal_check(dev):
    """Deliberately wrong trims (offsets of 0.04 V/τ0, DIAG gains of 1.5) are measured by
    CAL_CHECK and replaced by CALIBRATE; CAL_VALID follows CAL_RESIDUAL ≤ CAL_TOLERANCE each
    time; both count as runs and leave x = 0; both answer BUSY while a run goes."""
    if "calibration" not in caps(dev):
        pytest.skip("CAPS.CALIBRATION is 0: the device has no calibration routine")
    n = dev.n_cells
    bogus_offset, bogus_gain = 0.04, 1.5
    valid = STATUS.bit("CAL_VALID")
    tolerance = dev.read("CAL_TOLERANCE")
    cost = dev.read("CAL_COST")
    report = ["STATUS", "CAL_RESIDUAL", "CAL_RESIDUAL_MAX", "CAL_TOLERANCE", "RUN_COUNT",
              "CAL_COUNT", "DEVICE_TIME", "CAL_TIME"]

    def act(bit: str) -> tuple[dict, np.ndarray]:
        """The routine, after putting x away from 0; what it reported, and x after it."""
        dev.set_state(np.full(n, 1.0))
        d = ok(dev, [*(rd(k) for k in report), wr("CTRL", [CTRL.bit(bit)]),
                     *(rd(k) for k in report), rd("STATE", n)])
        before = {k: value(k, w) for k, w in zip(report, d)}
        after = {k: value(k, w) for k, w in zip(report, d[len(report) + 1:])}
        after["spent"] = after["DEVICE_TIME"] - before["DEVICE_TIME"]
        for k in ("RUN_COUNT", "CAL_COUNT"):
            after[k + "+"] = after[k] - before[k]
        return after, volts(dev, d[-1])

    def check(after: dict, x: np.ndarray) -> None:
        assert bool(after["STATUS"] & valid) == (after["CAL_RESIDUAL"] <= after["CAL_TOLERANCE"])
        assert after["RUN_COUNT+"] == 1 and RUN_END.get(after["STATUS"]) == RunEnd.DONE
        np.testing.assert_allclose(x, 0.0, atol=0.05)  # x was 1 V before

    load_uncoupled(dev, 1.0)
    dev.commit()
    try:
        fs_off, fs_gain = dev.read("OFFSET_TRIM_FS"), dev.read("DIAG_TRIM_FS")
        dev.write(REGMAP.OFFSET_TRIM.base, float_to_q31(np.full(n, bogus_offset), fs_off))
        dev.write(REGMAP.DIAG_TRIM.base, float_to_q31(np.full(n, bogus_gain), fs_gain))
        assert not dev.read("STATUS") & valid  # trims written by the host: not yet validated

        after, x = act("CAL_CHECK")  # measures the residual offset with the trims as they are
        check(after, x)
        # a calibrated chip's own offsets are millivolts: the bogus trim dominates
        residual = after["CAL_RESIDUAL"]
        assert residual == pytest.approx(bogus_offset, abs=0.01)
        assert not after["STATUS"] & valid and after["CAL_COUNT+"] == 0
        assert after["spent"] == pytest.approx(cost / 6, rel=1e-3)  # CAL_COST/6 of device time
        # CAL_CHECK sets CAL_VALID by the rule, either way: a tolerance above the residual
        # validates these trims, one below it invalidates them again
        for tol, want in ((REGMAP.CAL_TOLERANCE.max, True), (residual / 4, False)):
            dev.write("CAL_TOLERANCE", tol)
            after, x = act("CAL_CHECK")
            check(after, x)
            assert bool(after["STATUS"] & valid) is want and after["CAL_COUNT+"] == 0

        dev.write("CAL_TOLERANCE", tolerance)
        after, x = act("CALIBRATE")
        check(after, x)
        assert after["CAL_COUNT+"] == 1
        assert after["CAL_RESIDUAL"] < residual / 10  # measured and nulled
        assert after["spent"] == pytest.approx(cost, rel=1e-3)  # CAL_COST of device time
        assert after["CAL_TIME"] == after["DEVICE_TIME"]
        offsets, gains = dev.read("OFFSET_TRIM", n), dev.read("DIAG_TRIM", n)
        assert np.all(np.abs(offsets) < bogus_offset / 2), offsets  # written anew, not kept
        assert np.all(np.abs(gains - 1.0) < 0.2), gains
        dev.write("CAL_TOLERANCE", 0.0)  # the tightest tolerance: the rule still decides
        after, x = act("CAL_CHECK")
        check(after, x)
        dev.write("CAL_TOLERANCE", tolerance)

        counts = [rd("RUN_COUNT"), rd("CAL_COUNT"), rd("STATUS")]
        d = ok(dev, [wr_f32("RUN_TIME", long_run(dev)), wr("CTRL", [CTRL.bit("RUN")]), *counts])
        for bit in ("CALIBRATE", "CAL_CHECK"):
            reply = raw(dev, [wr("CTRL", [CTRL.bit(bit)])])
            assert reply.tx_status == [Status.BUSY], f"{bit} while running: {reply.message}"
        e = ok(dev, counts)
        assert [u32(w) for w in e[:2]] == [u32(w) for w in d[2:4]]  # nothing was done
        assert u32(e[2]) & RUNNING
    finally:
        dev.stop()
        dev.write("CAL_TOLERANCE", tolerance)
        if np.any(np.abs(dev.read("OFFSET_TRIM", n)) >= bogus_offset / 2):
            dev.calibrate()  # never leave the bogus trims behind


# ------------------------------------------------------------------------------ runs §10
@pytest.mark.spec("RUN-3")
def test_a_run_starts_from_where_the_last_one_stopped(dev):
    """Without noise the dynamics are deterministic, so the device is compared with itself:
    two runs of 0.5 τ0 from x₀ end where one run of 1 τ0 from x₀ ends, and the run after a
    STOP ends where a run from the stopped state, written back, ends. The chip's own time
    constants (capacitance mismatch, which calibration does not trim) cancel; what remains is
    ADC and DAC steps (atol 0.02 V). Anchors that no implicit reset can meet: the run from x₀
    (b = 0) ends at x₀e^{-1} within mismatch, not at 0, and the run after the STOP, which
    left x at the equilibrium, stays there instead of covering only 1 − e^{-0.5} of the way
    from 0."""
    n = dev.n_cells
    x0 = np.resize([2.0, -1.5, 3.0, -2.5, 1.0, -3.0], n)
    same = dict(atol=0.02, rtol=0.0)
    load_uncoupled(dev, 1.0)
    dev.load_bias(np.zeros(n))
    dev.configure(temperature=0.0)
    dev.commit()
    dev.set_state(x0)
    dev.run(1.0)
    once = dev.state()
    ratio = once / x0  # e^-1 ≈ 0.37, give or take a chip's time constants
    assert np.all((0.2 < ratio) & (ratio < 0.6)), ratio
    dev.set_state(x0)
    dev.run(0.5)
    dev.run(0.5)
    np.testing.assert_allclose(dev.state(), once, **same)

    target = -x0 / 2  # a new equilibrium; COMMIT keeps x
    dev.load_bias(target)
    dev.commit()
    dev.run(long_run(dev), wait=False)
    time.sleep(0.05)
    dev.stop()
    stopped = dev.state()
    dev.run(0.5)
    after = dev.state()
    np.testing.assert_allclose(after, stopped, **same)
    dev.set_state(stopped)
    dev.run(0.5)
    np.testing.assert_allclose(after, dev.state(), **same)


# ---------------------------------------------------------------------- number formats §11
@pytest.mark.spec("FMT-1")
def test_memories_read_back_the_codes_written_untruncated(dev):
    """Codes with all 32 bits in use, finer than any DAC: every memory keeps them as written,
    before and after COMMIT (the DAC truncates what the core uses, not the memory)."""
    n, r = dev.n_cells, min(2, dev.max_rank)
    rng = np.random.default_rng(5)

    def signed(k: int) -> np.ndarray:
        return rng.integers(-2**31, 2**31, k, dtype=np.int64).astype(np.int32)

    def positive(k: int) -> np.ndarray:  # q31u, and well above any DAC's smallest step
        return rng.integers(2**29, 2**31, k, dtype=np.int64).astype(np.int32)

    def symmetric(k: int) -> np.ndarray:
        m = signed(k * k).reshape(k, k)
        return np.where(np.triu(np.ones((k, k), bool)), m, m.T).reshape(-1)

    codes = {"BIAS": signed(n), "MOBILITY": positive(n), "FRICTION": positive(n),
             "NOISE_GAIN": positive(n)}
    if "lowrank" in caps(dev):
        codes |= {"DIAG": signed(n), "LOWRANK_J": signed(r * n), "LOWRANK_H": symmetric(r)}
        dev.configure(active=n)
        dev.write("RANK", r)
    if "dense" in caps(dev):
        codes["COUPLING"] = symmetric(n)
    for name, c in codes.items():
        dev.write(REGMAP.windows[name].base, c)
    try:
        for when in ("staged", "committed"):
            for name, c in codes.items():
                back = dev.read(REGMAP.windows[name].base, c.size).view(np.int32)
                np.testing.assert_array_equal(back, c, err_msg=f"{name} ({when})")
            dev.commit()
    finally:  # leave a harmless committed configuration behind
        load_uncoupled(dev, 1.0, required=False)
        dev.load_bias(np.zeros(n))
        dev.configure(mobility=1.0, friction=1.0, noise_gain=1.0)
        dev.commit()


@pytest.mark.spec("FMT-1")
def test_q31_codes_mean_value_times_2_31_over_full_scale(dev):
    """Raw codes, not the host's conversion: b = code·FS/2³¹ with BIAS_FS = 2, λ (or A = λI)
    = 1 from code 2²⁹ at full scale 4, so x settles at b; the ACCUMULATOR code is x·2³¹/VMAX.
    Values are multiples of 1/8 (exact on any DAC of ≥ 5 bits); a misread scale or sign is off
    by ≥ 0.125 V, the tolerance (mismatch of a calibrated chip, ADC step) is 0.02 V + 2 %."""
    n = dev.n_cells
    b = np.resize([0.5, -0.5, 0.25, -0.75, 0.875, -0.125, 0.625], n)
    dev.configure(active=n, temperature=1e-6, mobility=1.0)
    have = caps(dev)
    if not have & {"lowrank", "dense"}:
        pytest.skip("needs a coupling A = λI: the device has neither dense nor low-rank "
                    "coupling (CAPS.DENSE, CAPS.LOWRANK)")
    if "lowrank" in have:
        dev.write("COUPLING_MODE", 1)
        dev.write("RANK", 0)
        dev.write("DIAG_FS", 4.0)
        dev.write(REGMAP.DIAG.base, np.full(n, 2**29))
    else:
        dev.write("COUPLING_MODE", 0)
        dev.write("COUPLING_FS", 4.0)
        dev.write(REGMAP.COUPLING.base, (np.eye(n) * 2**29).astype(np.int64).reshape(-1))
    dev.write("BIAS_FS", 2.0)
    codes = (b * 2**31 / 2.0).astype(np.int64)
    dev.write(REGMAP.BIAS.base, codes)
    assert np.array_equal(dev.read(REGMAP.BIAS.base, n).view(np.int32), codes)
    dev.commit()
    dev.run(12.0)  # relax from wherever x was (e^-12)
    dev.run(4.0)
    acc = dev.read(REGMAP.ACCUMULATOR.base, n).view(np.int32).astype(np.float64)
    np.testing.assert_allclose(acc * dev.vmax / 2**31, b, atol=0.02, rtol=0.02)


@pytest.mark.spec("FMT-2")
def test_adc_codes_are_left_aligned(dev):
    """STATE, ACCUMULATOR and FIFO words of noisy x spread over many ADC steps of both signs:
    the 32 − ADC_BITS low bits are 0 in every one."""
    bits = dev.read("ADC_BITS")
    if bits >= 32:
        pytest.skip(f"ADC_BITS is {bits}: every bit of a read-out word is significant")
    n = dev.n_cells
    low = (1 << (32 - bits)) - 1
    load_uncoupled(dev, 1.0, required=False)
    dev.load_bias(np.zeros(n))
    dev.configure(temperature=0.05)  # σ ≥ 0.22 V: dozens of steps of a 12-bit ADC over ±10 V
    dev.commit()
    samples = min(8, dev.read("FIFO_DEPTH") // n)
    dev.run(5.0)
    words = {"ACCUMULATOR": [], "STATE": [], "SAMPLE_FIFO": []}
    for _ in range(4):
        d = ok(dev, [rd("ACCUMULATOR", n), rd("STATE", n)])
        words["ACCUMULATOR"].append(d[0])
        words["STATE"].append(d[1])
        dev.run(1.0)
    ok(dev, [wr_f32("SAMPLE_PERIOD", 0.5), wr("SAMPLE_COUNT", [samples]),
             wr_f32("RUN_TIME", 0.5 * samples + 0.25),
             wr("CTRL", [CTRL.bit("CLEAR_FIFO") | CTRL.bit("RUN")]), wr_f32("SAMPLE_PERIOD", 0.0)])
    wait_idle(dev)
    for _ in range(samples):
        words["SAMPLE_FIFO"].append(ok(dev, [Transaction(Op.READ_NI, FIFO, (n,))])[0])
    for name, chunks in words.items():
        w = np.concatenate(chunks).astype(np.uint32)
        bad = [hex(x) for x in w[w & low != 0][:4]]
        assert not bad, f"{name}: the low {32 - bits} bits are not 0 in {bad}"
        steps = w.view(np.int32) >> (32 - bits)
        assert np.unique(steps).size > 4 and steps.min() < 0 < steps.max(), name  # a real test


@pytest.mark.spec("FMT-3")
def test_f64_registers_read_low_word_first(dev):
    """A run of exactly 2.5 τ0 (0x4004000000000000): ACC_TIME reads 2.5 with the low word
    first, and DEVICE_TIME advances by 2.5; read swapped the words would be a denormal. The
    f64 also reads in place inside a longer READ."""
    load_uncoupled(dev, 1.0, required=False)
    dev.commit()
    t = 2.5
    d = ok(dev, [rd("DEVICE_TIME"), wr_f32("RUN_TIME", t),
                 wr("CTRL", [CTRL.bit("CLEAR_ACC") | CTRL.bit("RUN")]),
                 Transaction(Op.WAIT, STATUS.address, (RUNNING, 0, WAIT_SLICE_MS)),
                 rd("DEVICE_TIME"), rd("ACC_TIME"),
                 Transaction(Op.READ, REGMAP.DEVICE_TIME.address, (4,)),  # + SCRATCH, RUN_COUNT
                 Transaction(Op.READ, REGMAP.ACC_TIME.address, (3,))])    # + DAC_BITS
    before, after, acc = (words_to_f64(int(w[0]), int(w[1])) for w in (d[0], d[4], d[5]))
    assert acc == pytest.approx(t, rel=1e-9)
    assert words_to_f64(int(d[5][1]), int(d[5][0])) != pytest.approx(t, rel=0.5)
    assert int(d[5][1]) >> 20 == 0x400  # sign and exponent (2¹) are in the second word
    assert after - before == pytest.approx(t, rel=1e-9)
    assert list(d[6][:2]) == list(d[4]) and list(d[7][:2]) == list(d[5])


# ----------------------------------------------------------- sampling and accumulator §12
def _sample_run(dev: host.ThermoDevice, count: int, period: float, clear: bool = False) -> None:
    """A run that takes ``count`` samples, every ``period``, and waits for its end."""
    ctrl = CTRL.bit("RUN") | (CTRL.bit("CLEAR_FIFO") if clear else 0)
    ok(dev, [wr_f32("SAMPLE_PERIOD", period), wr("SAMPLE_COUNT", [count]),
             wr_f32("RUN_TIME", (count + 0.5) * period), wr("CTRL", [ctrl]),
             wr_f32("SAMPLE_PERIOD", 0.0)])
    wait_idle(dev, budget_s=120.0)


def _overrun(dev: host.ThermoDevice, max_samples: int | None) -> None:
    depth = dev.read("FIFO_DEPTH")
    n = dev.n_cells
    # a sample size that does not divide the depth (where there is one): the words left free
    # are then fewer than a sample, and a dropped sample must not fill them in part
    active = next((k for k in range(n, 0, -1) if depth % k), n)
    fits = depth // active
    if max_samples is not None and fits + 1 > max_samples:
        pytest.skip(f"filling FIFO_DEPTH = {depth} words takes {fits + 1} samples: longer than "
                    "this quick check allows (run the slow variant, -m slow, or a board with a "
                    "smaller FIFO)")
    # the shortest period the converters support, or 0.05 τ0 (cheap on the emulator)
    period = max(0.05, 4 * active / (dev.read("ADC_RATE") * dev.read("TAU0")))
    load_uncoupled(dev, 1.0, active, required=False)
    dev.commit()
    dev.write("IRQ_STATUS", IRQ.bit("FIFO_OVERRUN"))
    overrun = STATUS.bit("FIFO_OVERRUN")
    try:
        _sample_run(dev, fits + 2, period, clear=True)
        status, level, irq = (dev.read(k) for k in ("STATUS", "FIFO_LEVEL", "IRQ_STATUS"))
        assert level == fits * active, f"FIFO_LEVEL {level}: samples of {active} words"
        assert status & overrun and irq & IRQ.bit("FIFO_OVERRUN")
        # sticky: after one sample is popped the next one fits, and the flag stays
        ok(dev, [Transaction(Op.READ_NI, FIFO, (active,))])
        _sample_run(dev, 1, period)
        assert dev.read("FIFO_LEVEL") == fits * active
        assert dev.read("STATUS") & overrun
        # until CLEAR_FIFO, which also empties the FIFO
        d = ok(dev, [wr("CTRL", [CTRL.bit("CLEAR_FIFO")]), rd("STATUS"), rd("FIFO_LEVEL")])
        assert not u32(d[1]) & overrun and u32(d[2]) == 0
    finally:
        dev.write("CTRL", CTRL.bit("CLEAR_FIFO"))
        load_uncoupled(dev, 1.0, required=False)  # every cell active again
        dev.commit()


@pytest.mark.spec("SMP-2")
def test_a_sample_that_does_not_fit_is_dropped_whole(dev):
    _overrun(dev, FAST_FILL_SAMPLES)


@pytest.mark.slow
@pytest.mark.spec("SMP-2")
def test_a_sample_that_does_not_fit_is_dropped_whole_on_a_deep_fifo(dev):
    """The same check on any FIFO depth (the emulator's 1 Mi words take a minute or so)."""
    _overrun(dev, None)


@pytest.mark.spec("SMP-2")
def test_clear_fifo_empties_the_fifo(dev):
    load_uncoupled(dev, 1.0, required=False)
    dev.commit()
    _sample_run(dev, 3, 0.5, clear=True)
    assert dev.read("FIFO_LEVEL") == 3 * dev.n_cells
    d = ok(dev, [wr("CTRL", [CTRL.bit("CLEAR_FIFO")]), rd("FIFO_LEVEL"), rd("STATUS")])
    assert u32(d[1]) == 0 and not u32(d[2]) & STATUS.bit("FIFO_OVERRUN")
    assert raw(dev, [Transaction(Op.READ_NI, FIFO, (1,))]).tx_status == [Status.RANGE]


@pytest.mark.spec("SMP-3")
def test_accumulator_is_the_time_average_over_acc_time(dev):
    """Two runs without CLEAR_ACC, on two equilibria s₁ and s₂ = −s₁ (rate 4, κ = 10⁻⁴):
    the accumulator averages both over ACC_TIME = T₁ + T₂, relaxation included,
    (T₁s₁ + T₂s₂ + (s₁ − s₂)(1 − e^{−4T₂})/4) / (T₁ + T₂). Had RUN cleared it, it would read
    the second run's average, ≥ 0.35 V away; the noise's standard error sqrt(2κ/(16T)) is
    10⁻³ V, so 0.02 V + 2 % (ADC step, mismatch of a calibrated chip) is many of them."""
    n = dev.n_cells
    rate, t1, t2 = 4.0, 3.0, 5.0
    s1 = np.resize([2.0, -1.5, 0.5, -1.0], n)
    s2 = -s1
    close = dict(atol=0.02, rtol=0.02)
    load_uncoupled(dev, rate)
    dev.load_bias(rate * s1)
    dev.configure(temperature=1e-4)
    dev.commit()
    dev.set_state(s1)
    zero = ok(dev, [wr("CTRL", [CTRL.bit("CLEAR_ACC")]), rd("ACC_TIME"), rd("ACCUMULATOR", n)])
    assert value("ACC_TIME", zero[1]) == 0.0 and not np.any(zero[2])  # x is far from 0 now

    wait = Transaction(Op.WAIT, STATUS.address, (RUNNING, 0, WAIT_SLICE_MS))
    d = ok(dev, [wr_f32("RUN_TIME", t1), wr("CTRL", [CTRL.bit("RUN")]), wait,
                 rd("ACC_TIME"), rd("ACCUMULATOR", n)])
    assert value("ACC_TIME", d[3]) == pytest.approx(t1, rel=1e-6)
    np.testing.assert_allclose(volts(dev, d[4]), s1, **close)

    dev.load_bias(rate * s2)
    d = ok(dev, [wr_f32("RUN_TIME", t2), wr("CTRL", [CTRL.bit("COMMIT") | CTRL.bit("RUN")]),
                 wait, rd("ACC_TIME"), rd("ACCUMULATOR", n), rd("STATUS")])
    assert RUN_END.get(u32(d[5])) == RunEnd.DONE
    assert value("ACC_TIME", d[3]) == pytest.approx(t1 + t2, rel=1e-6)
    relax = (s1 - s2) * (1 - np.exp(-rate * t2)) / rate
    np.testing.assert_allclose(volts(dev, d[4]), (t1 * s1 + t2 * s2 + relax) / (t1 + t2), **close)

    zero = ok(dev, [wr("CTRL", [CTRL.bit("CLEAR_ACC")]), rd("ACC_TIME"), rd("ACCUMULATOR", n)])
    assert value("ACC_TIME", zero[1]) == 0.0 and not np.any(zero[2])


# ------------------------------------------------------------------------------ physics §0a
def _lagged_sums(A: np.ndarray, kappa: float, period: float
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """For x sampled every ``period`` from dx = (b − Ax)dt + sqrt(2κ)dW (M = I), the sums over
    all lags k of the exact lagged covariances C(k) = e^{−A·period·k} κA⁻¹: Σ_k C_ii(k)
    (variance of a sample mean × samples), Σ_k [C_ii C_jj + C_ij C_ji](k) (the same for a
    covariance entry) and Σ_k 2 tr(Σ⁻¹C(k)Σ⁻¹C(k)ᵀ) (for the equipartition statistic). They
    are the effective sample sizes of the correlated samples, not an AR(1) guess."""
    lam, Q = np.linalg.eigh(A)

    def C(k: int) -> np.ndarray:
        return kappa * (Q * (np.exp(-lam * period * k) / lam)) @ Q.T

    S = C(0)
    W = np.linalg.inv(S)
    mean_sum = np.diag(S).copy()
    cov_sum = np.outer(np.diag(S), np.diag(S)) + S * S
    q_sum = 2.0 * len(A)
    k = 1
    while True:
        Ck = C(k)
        mean_sum += 2 * np.diag(Ck)
        cov_sum += 2 * (np.outer(np.diag(Ck), np.diag(Ck)) + Ck * Ck.T)
        q_sum += 4 * np.trace(W @ Ck @ W @ Ck.T)
        if np.abs(Ck).max() < 1e-9 * np.abs(S).max():
            return mean_sum, cov_sum, q_sum
        k += 1


#: Standard errors allowed: per entry (36 covariance entries and 8 means per mode; two-sided
#: p = 7·10⁻⁶ each) and for the pooled equipartition statistic, which resolves a temperature
#: error of a few percent.
Z_ENTRY, Z_POOLED = 4.5, 4.0
#: Relative error of the equilibrium mean a calibrated chip may show from untrimmed coupling
#: mismatch (PHY-1's check allows 3 %).
MISMATCH = 0.02


@pytest.mark.spec("PHY-2")
def test_stationary_covariance_is_kappa_a_inverse_in_dense_and_lowrank_mode(dev):
    """Samples of x at equilibrium: covariance κA⁻¹ and mean A⁻¹b, entry by entry within
    Z_ENTRY standard errors computed from the exact lagged covariances (Isserlis: Var Ŝ_ij =
    Σ_k [C_ii C_jj + C_ij C_ji](k)/N; the mean also within MISMATCH), and ⟨dᵀ(κA⁻¹)⁻¹d⟩ = n
    within Z_POOLED (a 5 % temperature error is 5–7 of its standard errors). The low-rank mode
    with A = JᵀHJ + diag(DIAG) must show the same law as the dense mode with that A, and the
    two sample covariances agree with each other within Z_ENTRY·√2 standard errors.

    κ = 0.01 puts σ ≈ 0.06–0.1 V far above a 12-bit ADC's step (quantisation and 1 mV read
    noise add < 0.1 % to a variance); percent-level mismatch of a calibrated chip moves κA⁻¹
    by ~1 %, a third of a standard error here. A chip with CAPS.CALIBRATION is calibrated
    first, as a host would."""
    have = caps(dev)
    modes = [m for m in ("dense", "lowrank") if m in have]
    if not modes:
        pytest.skip("the device has neither dense nor low-rank coupling (CAPS)")
    if "calibration" in have and not dev.calibration_valid():
        dev.calibrate()
    n, r = min(8, dev.n_cells), min(2, dev.max_rank)
    rng = np.random.default_rng(7)
    J = rng.standard_normal((r, n)) * 0.4
    H = np.array([[1.0, 0.3], [0.3, 0.8]])[:r, :r]
    lam = rng.uniform(1.0, 1.5, n)
    A = J.T @ H @ J + np.diag(lam)
    b = A @ rng.uniform(-0.5, 0.5, n)
    kappa, period, count, burn = 0.01, 2.0, 2000, 10.0
    Sigma = kappa * np.linalg.inv(A)
    mean_sum, cov_sum, q_sum = _lagged_sums(A, kappa, period)
    se_mean, se_cov = np.sqrt(mean_sum / count), np.sqrt(cov_sum / count)
    se_q = np.sqrt(q_sum / count)
    W = np.linalg.inv(Sigma)
    seed = {"seed": 11} if "emulator" in have else {}

    found = {}
    for mode in modes:
        if mode == "dense":
            dev.load_coupling(A)
        else:
            dev.load_lowrank(J, H, lam)
        dev.load_bias(b)
        dev.configure(temperature=kappa, mode="overdamped", mobility=1.0, noise_gain=1.0, **seed)
        dev.commit()
        x = dev.samples(count, period=period, burn_in=burn)
        C = np.cov(x.T)
        # the mean also carries the coupling's gain mismatch, which calibration does not trim
        # (§9a): ~1 % per element moves A⁻¹b by ~1 %, allowed for as MISMATCH·|A⁻¹b|
        exact = np.linalg.solve(A, b)
        z_mean = np.maximum(np.abs(x.mean(0) - exact) - MISMATCH * np.abs(exact).max(), 0) / se_mean
        z_cov = np.abs(C - Sigma) / se_cov
        d = x - x.mean(0)
        z_q = abs(np.einsum("ti,ij,tj->t", d, W, d).mean() - n) / se_q
        worst = np.unravel_index(np.argmax(z_cov), z_cov.shape)
        assert z_cov.max() < Z_ENTRY, (
            f"{mode}: covariance entry {worst} is {z_cov.max():.1f} s.e. off: {C[worst]:.5g}, "
            f"κA⁻¹ = {Sigma[worst]:.5g} ± {se_cov[worst]:.2g}")
        assert z_mean.max() < Z_ENTRY, f"{mode}: mean {z_mean.max():.1f} s.e. off A⁻¹b"
        assert z_q < Z_POOLED, f"{mode}: ⟨dᵀΣ⁻¹d⟩ is {z_q:.1f} s.e. off {n}"
        found[mode] = C
    if len(found) == 2:
        z = np.abs(found["dense"] - found["lowrank"]) / (np.sqrt(2) * se_cov)
        assert z.max() < Z_ENTRY, f"dense and low-rank covariances differ by {z.max():.1f} s.e."
