"""Firmware semantics through the in-process firmware (real registers, real analog core)."""
from __future__ import annotations

import numpy as np
import pytest

import host
from firmware_sim.converters import adc, dac, keep_top_bits
from firmware_sim.fifo import SampleFifo
from firmware_sim.lease import Lease
from firmware_sim.reply_cache import ReplyCache
from protocol import REGMAP, Status


@pytest.fixture(scope="module")
def dev():
    with host.connect("local://?cells=8") as d:
        yield d


def test_sc_and_w1c_and_status_flags(dev):
    dev.load_coupling(np.eye(8))
    dev.commit()
    dev.run(1.0)
    assert dev.read("CTRL") == 0
    irq = dev.read("IRQ_STATUS")
    assert irq & REGMAP.IRQ_STATUS.bit("RUN_DONE")
    dev.write("IRQ_STATUS", 0)  # writing 0 clears nothing
    assert dev.read("IRQ_STATUS") == irq
    dev.write("IRQ_STATUS", irq)
    assert dev.read("IRQ_STATUS") == 0
    assert dev.read("STATUS") & REGMAP.STATUS.bit("OWNED")


def test_writes_to_state_while_running_are_busy(dev):
    dev.load_coupling(np.eye(8) * 1e-3)
    dev.commit()
    # slow enough that the run is still going when we write (Euler–Maruyama: exact propagation
    # would finish it at once)
    dev.configure(substep=1e-4, integrator="em")
    try:
        dev.run(50.0, wait=False)
        with pytest.raises(host.DeviceError) as e:
            dev.set_state(np.ones(8))
        assert e.value.status == Status.BUSY
        x = dev.state()  # reads are served while running
        assert x.shape == (8,)
    finally:
        dev.stop()
        dev.configure(substep=0.0, integrator="exact")


def test_commit_while_running_changes_the_dynamics_in_flight(dev):
    """The TNGD overlap: new curvature/bias committed while the device keeps running (a run
    that lasts: Euler–Maruyama)."""
    dev.configure(temperature=0.0, integrator="em")
    dev.load_coupling(np.eye(8) * 2.0)
    dev.load_bias(np.full(8, 2.0))
    dev.commit()
    dev.run(30.0)
    np.testing.assert_allclose(dev.state(), 1.0, atol=1e-3)
    dev.run(1e6, wait=False)
    dev.load_bias(np.full(8, -2.0))
    dev.commit()
    import time
    time.sleep(0.3)
    dev.stop()
    np.testing.assert_allclose(dev.state(), -1.0, atol=1e-3)
    dev.configure(temperature=1e-3, integrator="exact")


def test_fifo_overrun_flag():
    fifo = SampleFifo(10)
    assert fifo.push(np.arange(4)) and fifo.push(np.arange(4))
    assert not fifo.push(np.arange(4)) and fifo.overrun and fifo.level == 8
    assert fifo.pop(6).tolist() == [0, 1, 2, 3, 0, 1]
    assert fifo.level == 2


def test_lease_expires_without_heartbeat():
    now = [0.0]
    lease = Lease(1000, clock=lambda: now[0])
    lease.claim(5)
    assert lease.live_owner() == 5 and not lease.can_claim(6)
    now[0] = 0.9
    lease.renew(5)
    now[0] = 1.8
    assert lease.live_owner() == 5
    now[0] = 2.0
    assert lease.live_owner() == 0 and lease.expired and lease.can_claim(6)


def test_reply_cache_bounds():
    cache = ReplyCache(per_client=2, clients=2)
    for seq in range(3):
        cache.put(b"a", seq, seq, digest=100 + seq)
    assert cache.get(b"a", 0) is None and cache.get(b"a", 2) == (2, 102)
    cache.put(b"b", 1, "b")
    cache.put(b"c", 1, "c")
    assert cache.get(b"a", 2) is None and cache.get(b"c", 1) == ("c", None)


def test_dac_keeps_top_bits_and_adc_saturates():
    codes = np.array([0x7FFFFFFF, -0x80000000, 0x12345678], dtype=np.int32)
    assert (keep_top_bits(codes, 12) & 0xFFFFF).tolist() == [0, 0, 0]
    assert np.all(np.abs(dac(codes, 1.0, 12) - dac(codes, 1.0, 32)) <= 2.0**-11)
    assert adc(np.array([20.0, -20.0]), 10.0, 32).tolist() == [2**31 - 1, -(2**31)]


def test_adc_rounds_to_the_nearest_step():
    """docs/physics.md, docs/protocol.md §11: the ADC rounds (no ½-step bias), unlike the DAC."""
    lsb = 10.0 / 2**11  # 12 bits over ±10 V
    v = np.array([0.4, 0.6, -0.4, -0.6, 1.49, 1.51]) * lsb
    assert (adc(v, 10.0, 12) >> 20).tolist() == [0, 1, 0, -1, 1, 2]
    assert (adc(np.array([20.0, -20.0]), 10.0, 12) >> 20).tolist() == [2047, -2048]
    x = np.random.default_rng(0).uniform(-9, 9, 10_000)
    err = adc(x, 10.0, 12) * (10.0 / 2**31) - x
    assert np.max(np.abs(err)) <= lsb / 2 and abs(err.mean()) < 0.02 * lsb


def test_load_bias_length_must_match_the_staged_cells(dev):
    """No silent zero-pad or truncation; a refused bias leaves the device unchanged."""
    dev.load_coupling(np.eye(4))
    dev.load_bias(np.full(4, 0.5))
    dev.commit()
    before = dev.read("BIAS"), dev.read("STATUS")
    for bad in (np.ones(8), np.ones(3), np.ones(9), np.ones((2, 2))):
        with pytest.raises(ValueError, match="bias") as e:
            dev.load_bias(bad)
        if bad.ndim == 1:
            assert f"has {bad.size} values" in str(e.value) and "4 active cells" in str(e.value)
    with pytest.raises(ValueError, match="8 values .* 4 active"):
        with dev.batch():  # refused at the call: nothing of the batch is sent
            dev.write("SCRATCH", 77)
            dev.load_bias(np.ones(8))
    after = dev.read("BIAS"), dev.read("STATUS")
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1] and dev.read("SCRATCH") != 77
    with dev.batch():  # the coupling staged first in the same batch sets the size
        dev.load_coupling(np.eye(8))
        dev.load_bias(np.ones(8))
        dev.commit()
    dev.load_bias(0.25)  # a scalar applies to every cell
    np.testing.assert_allclose(dev.read("BIAS"), 0.25)


def test_a_packet_of_many_run_waits_stays_inside_the_lease():
    """A parked packet does not renew the lease: k run WAITs of one packet share one slice
    (lease/3), so a batch of runs longer than the lease in all still owns the device."""
    with host.connect("local://?cells=8", lease_ms=600) as d:
        d.configure(temperature=1e-3, substep=1e-4)  # ~0.1 s of wall time per run of 60 τ0
        d.load_coupling(np.eye(8))
        d.load_bias(np.zeros(8))
        d.commit()
        with d.batch():
            for _ in range(10):  # ~1 s in all, well over the 0.6 s lease
                d.run(60.0)
        assert d.read("DEVICE_TIME") == pytest.approx(600.0)
        assert d.read("OWNER") == d.token
        d.write("LEASE_MS", 300)  # a lease set by a plain write shortens the slice too
        assert d._wait_slice_ms == 100
        with d.batch():
            for _ in range(6):
                d.run(60.0)
        assert d.read("OWNER") == d.token


def test_realistic_profile_quantizes_the_dac():
    with host.connect("local://?cells=4&profile=realistic") as d:
        info = d.info()
        assert info["emulator"]["profile"] == "realistic"
        assert info["dac_bits"]["coupling"] < 32 and info["adc_bits"] < 32
        d.configure(temperature=0.0)
        d.load_coupling(np.eye(4))
        d.load_bias(np.full(4, 0.1234567))
        d.commit()
        d.run(40.0)
        x = d.state()
        # mismatch and offsets make the answer differ from the ideal 0.1234567 — reported, not hidden
        assert np.all(np.isfinite(x)) and not np.allclose(x, 0.1234567, atol=1e-6)
        assert np.allclose(x, 0.1234567, atol=0.05)


def test_emulator_block_is_absent_on_hardware_builds():
    """A firmware built without the emulator block answers BAD_ADDRESS there, like a board."""
    from device.analog.core import AnalogCore, CoreParams
    from device.analog.profiles import get_profile
    from firmware_sim import Firmware
    from host.thermo_device import rd
    from protocol.codec import encode_request

    core = AnalogCore(4, 2, get_profile("ideal"), serial=1, seed=1)
    fw = Firmware(core, serial=1, seed=1, emulator=False, params_type=CoreParams)
    try:
        reply = fw.execute(encode_request(1, b"h" * 16, 0, [rd("CAPS"), rd("EMU_SEED")]))
        assert reply.tx_status[1] == Status.BAD_ADDRESS
        reply = fw.execute(encode_request(2, b"h" * 16, 0, [rd("CAPS")]))
        assert not int(reply.data[0][0]) & REGMAP.CAPS.bit("EMULATOR")
    finally:
        fw.shutdown()


def test_integrator_selection_is_checked_before_anything_is_staged(dev):
    active = dev.read("ACTIVE_CELLS")
    with pytest.raises(ValueError, match="integrator must be one of em, exact"):
        dev.configure(active=5, temperature=0.5, integrator="rk4")
    assert dev.read("ACTIVE_CELLS") == active and dev._staged_active != 5
    assert dev.read("TEMPERATURE") != pytest.approx(0.5)
    dev.configure(integrator="em")
    assert dev.info()["emulator"]["integrator"] == "em" and dev.read("EMU_EXACT") == 0
    with pytest.raises(host.DeviceError) as e:       # the register's own range, on the wire
        dev.write("EMU_INTEGRATOR", 2)
    assert e.value.status == Status.RANGE and dev.read("EMU_INTEGRATOR") == 0
    dev.configure(integrator="exact")
    assert dev.info()["emulator"]["integrator"] == "exact"


def test_a_board_has_no_integrator_to_select(monkeypatch):
    with host.connect("local://?cells=4") as d:
        monkeypatch.setitem(d._static, "caps", [c for c in d._static["caps"] if c != "emulator"])
        with pytest.raises(ValueError, match="not an emulator"):
            d.configure(integrator="em")


def test_the_register_map_names_the_cores_integrators():
    """EMU_INTEGRATOR's values are listed once, in the map; the core must know each by name."""
    from device.analog.core import INTEGRATORS
    assert tuple(REGMAP.meta["emu_integrators"]) == INTEGRATORS
    assert REGMAP.EMU_INTEGRATOR.max == len(INTEGRATORS) - 1
