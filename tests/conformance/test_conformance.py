"""Behaviour every thermohil device must show, emulated or real (docs/protocol.md).

Only the register map and the protocol are assumed; physics checks use loose tolerances that a
calibrated real board should meet too. Run: pytest tests/conformance --device-url URL
"""
from __future__ import annotations

import numpy as np
import pytest

import host
from host.thermo_device import rd, wr, wr_f32
from protocol import REGMAP, Op, Status, Transaction
from protocol.codec import encode_request

CTRL, STATUS = REGMAP.CTRL, REGMAP.STATUS


def load_stable(dev: host.ThermoDevice) -> None:
    """Stage a stable, uncoupled configuration in whichever coupling mode the chip has (a chip
    may implement any subset of them: CAPS)."""
    n, caps = dev.n_cells, dev.info()["caps"]
    if "dense" in caps:
        dev.load_coupling(np.eye(n))
    elif "lowrank" in caps:
        dev.load_lowrank(np.zeros((1, n)), np.zeros((1, 1)), np.ones(n))
    else:
        dev.load_capacitance(np.eye(n))


def coupling_args(dev: host.ThermoDevice, A: np.ndarray) -> dict:
    """A as ``solve_step`` takes it: dense if the chip has it, else as the low-rank mode's
    Jᵀ H J + diag(λ) (J = I, H = A − diag(λ)); skip on a chip with neither."""
    caps = dev.info()["caps"]
    if "dense" in caps:
        return {"coupling": A}
    if "lowrank" in caps and A.shape[0] <= dev.max_rank:
        lam = np.full(A.shape[0], 0.5)
        return {"lowrank": (np.eye(A.shape[0]), A - np.diag(lam), lam)}
    pytest.skip("the chip holds no symmetric coupling A (capacitive mode only)")


def load_matrix(dev: host.ThermoDevice, A: np.ndarray) -> None:
    args = coupling_args(dev, A)
    if "coupling" in args:
        dev.load_coupling(args["coupling"])
    else:
        dev.load_lowrank(*args["lowrank"])


def raw(dev: host.ThermoDevice, tx: list[Transaction]):
    """Send transactions exactly as given and return the reply (no error raising)."""
    return dev.driver.transact(tx)


@pytest.mark.spec("REG-1")
def test_identity(dev):
    info = dev.info()
    assert dev.read("MAGIC") == REGMAP.meta["magic"]
    assert info["protocol"].split(".")[0] == str(REGMAP.meta["protocol_major"])
    assert info["n_cells"] >= 1 and info["fifo_depth"] >= info["n_cells"]
    assert {"accumulator", "sample_fifo"} <= set(info["caps"])
    assert dev.read("BOOT_ID") == info["boot_id"] != 0


@pytest.mark.spec("TX-1", "TX-3")
def test_scratch_round_trip_and_rmw(dev):
    dev.write("SCRATCH", 0xDEADBEEF)
    assert dev.read("SCRATCH") == 0xDEADBEEF
    r = raw(dev, [Transaction(Op.RMW, REGMAP.SCRATCH.address, (0xFFFF0000, 0x00000042))])
    assert r.status == Status.OK and int(r.data[0][0]) == 0xDEADBEEF
    assert dev.read("SCRATCH") == 0xDEAD0042


@pytest.mark.spec("TX-5", "VAL-1")
def test_write_to_read_only_is_refused_and_changes_nothing(dev):
    before = dev.read("N_CELLS")
    with pytest.raises(host.DeviceError) as e:
        dev.write("N_CELLS", before + 1)
    assert e.value.status == Status.ACCESS
    assert dev.read("N_CELLS") == before


@pytest.mark.spec("TX-1")
def test_unmapped_address_and_past_depth(dev):
    r = raw(dev, [rd("SCRATCH"), Transaction(Op.READ, 0x0000_0F00, (1,))])
    assert r.tx_status == [Status.ABORTED, Status.BAD_ADDRESS]
    r = raw(dev, [Transaction(Op.READ, REGMAP.BIAS.base + dev.n_cells - 1, (2,))])
    assert r.tx_status == [Status.BAD_ADDRESS]


@pytest.mark.spec("VAL-4")
def test_unknown_op(dev):
    r = raw(dev, [Transaction(17, REGMAP.SCRATCH.address, (1,))])
    assert r.tx_status == [Status.BAD_OP]


@pytest.mark.spec("VAL-1")
def test_bad_packet_changes_nothing(dev):
    """A packet with one bad transaction is rejected whole: earlier writes do not land."""
    dev.write("SCRATCH", 1)
    r = raw(dev, [wr("SCRATCH", [2]), wr_f32("TEMPERATURE", -1.0)])
    assert r.tx_status == [Status.ABORTED, Status.RANGE]
    assert dev.read("SCRATCH") == 1
    assert dev.read("TEMPERATURE") == pytest.approx(1e-3)


@pytest.mark.spec("TX-5")
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e12])
def test_out_of_range_float(dev, value):
    with pytest.raises(host.DeviceError) as e:
        dev.driver.transact  # noqa: B018 (documentation: the host would refuse non-finite input itself)
        r = raw(dev, [wr_f32("RUN_TIME", value)])
        raise host.DeviceError.from_reply(r.tx_status[0], r.message)
    assert e.value.status == Status.RANGE


@pytest.mark.spec("OWN-1", "OWN-3")
def test_wrong_owner_token(dev):
    token = dev.driver.owner
    dev.driver.owner = token ^ 0x5A5A5A5A
    try:
        with pytest.raises(host.NotOwner):
            dev.write("SCRATCH", 7)
        r = raw(dev, [wr("OWNER", [dev.driver.owner])])
        assert r.tx_status == [Status.NOT_OWNER]  # cannot steal a live lease
    finally:
        dev.driver.owner = token
    assert dev.read("OWNER") == token
    dev.write("SCRATCH", 8)
    assert dev.read("SCRATCH") == 8


@pytest.mark.spec("OWN-3")
def test_a_token_that_does_not_hold_the_lease_gets_nothing(dev):
    """A packet carrying a token acts for that lease: with a stale or foreign token even a read
    is refused, so a host whose lease lapsed never sees another host's state."""
    token = dev.driver.owner
    dev.driver.owner = token ^ 0x0F0F0F0F
    try:
        r = raw(dev, [rd("SCRATCH"), rd("STATE", 1)])
        assert r.status == Status.NOT_OWNER and all(d is None for d in r.data)
    finally:
        dev.driver.owner = token
    dev.driver.owner = 0  # no token: reads are open
    try:
        assert raw(dev, [rd("SCRATCH")]).status == Status.OK
    finally:
        dev.driver.owner = token


@pytest.mark.spec("RUN-2")
def test_run_end_says_how_the_last_run_ended(dev):
    end = STATUS.field("RUN_END")
    load_stable(dev)
    dev.commit()
    dev.run(1.0)
    assert end.get(dev.read("STATUS")) == 1  # DONE
    emulator = "emulator" in dev.info()["caps"]
    if emulator:
        dev.configure(integrator="em")  # exact propagation would finish any run at once
    long_run = 1e4 if emulator else 1e7  # seconds of wall time either way
    dev.run(long_run, wait=False)
    dev.stop()
    assert end.get(dev.read("STATUS")) == 2  # STOPPED
    with pytest.raises(host.RunAborted, match="stopped"):
        dev.wait()


@pytest.mark.spec("LIM-1", "TX-2")
def test_limits_are_advertised_and_enforced(dev):
    names = ["MAX_TRANSACTIONS", "MAX_PACKET_WORDS", "MAX_REPLY_WORDS", "MAX_OPEN_REPLY_WORDS",
             "MAX_PARKED", "MAX_PARKED_PER_CLIENT", "MAX_WAIT_MS", "REPLY_CACHE_DEPTH",
             "MAX_FRAME_BYTES", "MAX_REGISTER_NI_WORDS"]
    values = {n: dev.read(n) for n in names}
    assert all(v >= 1 for v in values.values()), values
    assert values["MAX_OPEN_REPLY_WORDS"] <= values["MAX_REPLY_WORDS"] <= values["MAX_PACKET_WORDS"]
    n = values["MAX_REGISTER_NI_WORDS"]
    r = raw(dev, [Transaction(Op.READ_NI, STATUS.address, (n + 1,))])
    assert r.status == Status.TOO_LARGE
    assert raw(dev, [Transaction(Op.READ_NI, STATUS.address, (n,))]).status == Status.OK


@pytest.mark.spec("TX-4")
def test_only_the_owner_parks_at_a_wait(dev):
    dev.write("SCRATCH", 1)
    never = Transaction(Op.WAIT, REGMAP.SCRATCH.address, (0xFFFFFFFF, 2, 5000))
    token, dev.driver.owner = dev.driver.owner, 0
    try:
        import time
        t0 = time.monotonic()
        r = raw(dev, [never])
        assert r.status == Status.TIMEOUT and time.monotonic() - t0 < 2.0  # checked once
    finally:
        dev.driver.owner = token


@pytest.mark.spec("LIM-1")
def test_too_many_transactions(dev):
    n = dev.read("MAX_TRANSACTIONS")  # the device's own limit, which a small board lowers
    assert raw(dev, [rd("SCRATCH")] * n).status == Status.OK
    r = raw(dev, [rd("SCRATCH")] * (n + 1))
    assert r.status == Status.TOO_LARGE
    assert dev.read("MAGIC") == REGMAP.meta["magic"]


@pytest.mark.spec("REG-4")
def test_shadow_bank_and_commit(dev):
    dev.load_bias(np.linspace(-1, 1, dev.n_cells))
    assert dev.read("STATUS") & STATUS.bit("SHADOW_DIRTY")
    bits = dev.info()["dac_bits"]["bias"]  # the host rounds uploads to the DAC's grid
    step = 2.0 / (2 ** (bits - 1) - 1)     # one step at the full scale the host picks for 1.0
    np.testing.assert_allclose(dev.read("BIAS"), np.linspace(-1, 1, dev.n_cells),
                               atol=step / 2 + 1e-6)
    dev.commit()
    assert not dev.read("STATUS") & STATUS.bit("SHADOW_DIRTY")


@pytest.mark.spec("RUN-1")
def test_run_advances_device_time_and_latches_irq(dev):
    t0 = dev.read("DEVICE_TIME")
    load_stable(dev)
    dev.commit()
    dev.run(2.5)
    assert dev.read("DEVICE_TIME") - t0 == pytest.approx(2.5, rel=1e-6)
    assert dev.read("IRQ_STATUS") & REGMAP.IRQ_STATUS.bit("RUN_DONE")
    dev.write("IRQ_STATUS", REGMAP.IRQ_STATUS.bit("RUN_DONE"))  # write-1-to-clear
    assert not dev.read("IRQ_STATUS") & REGMAP.IRQ_STATUS.bit("RUN_DONE")
    assert dev.read("CTRL") == 0  # self-clearing
    assert dev.read("ACC_TIME") == pytest.approx(2.5, rel=1e-6)


@pytest.mark.spec("PHY-1")
def test_equilibrium_mean_in_one_round_trip(dev):
    rng = np.random.default_rng(3)
    n = min(8, dev.n_cells)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (q * np.geomspace(1, 4, n)) @ q.T
    b = rng.uniform(-1, 1, n)
    args = coupling_args(dev, A)
    before = dev.stats.packets
    m = dev.solve_step(bias=b, t=200.0, burn_in=8.0, **args)
    assert dev.stats.packets - before == 1
    exact = np.linalg.solve(A, b)
    # s.e. of a time average ~ sqrt(2κ(A⁻²)_ii/T) ≈ 3e-3 here; 3% of |x| is a loose bound
    # that a calibrated board must meet too.
    assert np.linalg.norm(m - exact) / np.linalg.norm(exact) < 0.03


@pytest.mark.spec("SMP-1")
def test_samples_and_fifo(dev):
    load_stable(dev)
    dev.commit()
    S = dev.samples(20, period=0.5)
    assert S.shape == (20, dev.n_cells) and np.all(np.isfinite(S))
    assert dev.read("FIFO_LEVEL") == 0
    r = raw(dev, [Transaction(Op.READ_NI, REGMAP.SAMPLE_FIFO.base, (1,))])
    assert r.tx_status == [Status.RANGE]  # reading an empty FIFO is an error, never zeros


@pytest.mark.spec("RC-1")
def test_retried_packet_is_answered_from_cache(dev):
    """Same (client, seq) twice: the FIFO pop happens once and both replies carry the same data."""
    d = dev.driver
    if not hasattr(d, "_exchange"):
        pytest.skip("driver does not expose packet-level resend")
    load_stable(dev)
    dev.commit()
    dev.write("CTRL", CTRL.bit("CLEAR_FIFO"))
    dev.samples(3, period=0.5)  # leaves the FIFO empty; take 3 more without reading them
    with dev.batch():
        dev.write("SAMPLE_PERIOD", 0.5)  # samples() left it 0
        dev.write("SAMPLE_COUNT", 3)
        dev.write("RUN_TIME", 1.75)
        dev.write("CTRL", CTRL.bit("RUN"))
    dev.wait()
    level = dev.read("FIFO_LEVEL")
    assert level == 3 * dev.n_cells
    d.seq += 1
    tx = [Transaction(Op.READ_NI, REGMAP.SAMPLE_FIFO.base, (dev.n_cells,))]
    frames = encode_request(d.seq, d.cid, d.owner, tx)
    first = d._exchange(frames, d.seq, 10.0)
    second = d._exchange(encode_request(d.seq, d.cid, d.owner, tx), d.seq, 10.0)
    assert [bytes(memoryview(f)) for f in first[1:]] == [bytes(memoryview(f)) for f in second[1:]]
    assert dev.read("FIFO_LEVEL") == level - dev.n_cells


@pytest.mark.spec("PHY-3")
def test_unstable_matrix_saturates_with_a_clear_error(dev):
    n = dev.n_cells
    A = np.eye(n)
    A[0, 0] = -1.0  # one unstable mode
    load_matrix(dev, A)
    dev.load_bias(np.full(n, 0.1))
    dev.commit()
    with pytest.raises(host.DeviceSaturated, match="not positive definite") as e:
        dev.run(40.0)
    assert 0 in e.value.cells
    x = dev.state()
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= dev.vmax
    dev.clear_saturation()
    assert not dev.read("STATUS") & STATUS.bit("SATURATED")


@pytest.mark.spec("REG-5")
def test_commit_of_invalid_configuration_is_refused(dev):
    load_stable(dev)
    dev.commit()
    dev.write("MOBILITY", np.zeros(dev.n_cells))  # zero mobility is not a physical cell
    with pytest.raises(host.DeviceError) as e:
        dev.commit()
    assert e.value.status == Status.RANGE
    assert dev.read("STATUS") & STATUS.bit("SHADOW_DIRTY")  # nothing was committed


@pytest.mark.spec("TX-3")
def test_rmw_result_is_range_checked(dev):
    """RMW cannot smuggle in a value a WRITE would be refused (e.g. RANK beyond MAX_RANK)."""
    before = dev.read("RANK")
    r = raw(dev, [Transaction(Op.RMW, REGMAP.RANK.address, (0, 0xFFFFFFFF))])
    assert r.tx_status == [Status.RANGE]
    assert dev.read("RANK") == before
    assert dev.read("MAGIC") == REGMAP.meta["magic"]


@pytest.mark.spec("OWN-1", "SMP-1")
def test_only_the_owner_may_drain_the_fifo(dev):
    load_stable(dev)
    dev.commit()
    with dev.batch():
        dev.write("SAMPLE_PERIOD", 0.5)
        dev.write("SAMPLE_COUNT", 1)
        dev.write("RUN_TIME", 0.75)
        dev.write("CTRL", CTRL.bit("CLEAR_FIFO") | CTRL.bit("RUN"))
    dev.wait()
    level = dev.read("FIFO_LEVEL")
    assert level == dev.n_cells
    token = dev.driver.owner
    dev.driver.owner = 0
    try:
        r = raw(dev, [Transaction(Op.READ_NI, REGMAP.SAMPLE_FIFO.base, (1,))])
    finally:
        dev.driver.owner = token
    assert r.tx_status == [Status.NOT_OWNER]
    assert dev.read("FIFO_LEVEL") == level


@pytest.mark.spec("OWN-4")
def test_lease_length_applies_to_the_claim(dev):
    assert dev.read("LEASE_LEFT_MS") > 10_000  # connect() claims with a 30 s lease
