"""The generated register map's reset column is what a freshly booted device reads.

A firmware team builds its reset logic from docs/register-map.md; a wrong reset value there is a
board that disagrees with the emulator from power-on. Every register is read on a fresh device
(no claim, no write) and compared with the map's reset value, resolved against the device's
instance constants.
"""
from __future__ import annotations

import time

import pytest

from device.analog.core import AnalogCore, CoreParams
from device.analog.profiles import get_profile
from device.emulator import build_firmware
from firmware_sim import Firmware
from protocol import REGMAP
from protocol.codec import Transaction, encode_request
from protocol.ops import Op
from protocol.regmap import resolve
from protocol.words import word_to_f32, words_to_f64

#: Registers that change by themselves from boot on: their reset holds only at the instant of boot.
CLOCKS = {"UPTIME_MS", "LEASE_LEFT_MS"}


def _read_all(fw: Firmware) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for i, (name, r) in enumerate(REGMAP.registers.items()):
        if name.startswith("EMU_") and not fw.emulator:
            continue
        reply = fw.execute(encode_request(i + 1, b"r" * 16, 0,
                                          [Transaction(Op.READ, r.address, (r.words,))]))
        assert reply.status == 0, (name, reply.message)
        w = reply.data[0]
        out[name] = (word_to_f32(int(w[0])) if r.format == "f32" else
                     words_to_f64(int(w[0]), int(w[1])) if r.format == "f64" else int(w[0]))
    return out


def _expected(fw: Firmware, name: str) -> float | int:
    r = REGMAP.registers[name]
    value = resolve(r.reset, fw.regs.consts)
    return word_to_f32(_f32_word(value)) if r.format == "f32" else value


def _f32_word(value: float) -> int:
    from firmware_sim.converters import f32_to_word
    return f32_to_word(float(value))


@pytest.fixture(params=["ideal", "realistic", "spu-8", "hardware"])
def fresh(request):
    booted = time.monotonic()  # before the boot: UPTIME_MS may count from any moment after it
    if request.param == "hardware":  # the reference firmware as a board would run it
        core = AnalogCore(8, 4, get_profile("realistic"), serial=7, seed=1)
        fw = Firmware(core, serial=7, seed=1, emulator=False, params_type=CoreParams)
    else:
        fw = build_firmware(8 if request.param != "spu-8" else None, profile=request.param)
    try:
        yield request.param, fw, booted
    finally:
        fw.shutdown()


def test_every_reset_value_is_what_a_fresh_device_reads(fresh):
    profile, fw, booted = fresh
    got = _read_all(fw)
    elapsed_ms = (time.monotonic() - booted) * 1000 + 1
    wrong = []
    for name, value in got.items():
        want = _expected(fw, name)
        if name in CLOCKS:
            ok = abs(value - want) <= elapsed_ms  # UPTIME_MS counts up from 0 (LEASE_LEFT_MS: 0, free)
        else:
            ok = value == want
        if not ok:
            wrong.append(f"{name}: map says {REGMAP.registers[name].reset!r} = {want!r}, "
                         f"a fresh device reads {value!r}")
    assert not wrong, f"{profile}: " + "; ".join(wrong)


def test_instance_constant_resets_are_the_chip_and_not_a_default(fresh):
    """The instance constants the map names are the chip's own: CAPS follows the coupling modes
    of the profile and the emulator block, STATUS boots with CAL_VALID only on an exact chip."""
    profile, fw, _ = fresh
    caps = fw.regs.consts["CAPS"]
    bit = REGMAP.CAPS.bit
    assert bool(caps & bit("EMULATOR")) == (profile != "hardware")
    modes = get_profile("realistic" if profile == "hardware" else profile).modes
    assert bool(caps & bit("CAPACITIVE")) == ("capacitive" in modes)
    assert bool(caps & bit("DENSE")) == ("dense" in modes)
    assert bool(caps & bit("LOWRANK")) == bool(caps & bit("CALIBRATION")) == ("lowrank" in modes)
    cal_valid = bool(fw.regs.consts["BOOT_STATUS"] & REGMAP.STATUS.bit("CAL_VALID"))
    assert cal_valid == (profile == "ideal")
    assert fw.regs.consts["BOOT_SUBSTEP"] == pytest.approx(fw.core.dt, rel=1e-7)
