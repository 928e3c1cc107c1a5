"""Reset values: a freshly booted device reads what docs/register-map.md says (REG-2).

The session's device (``dev``) is claimed and used by the other conformance tests, so these
checks open their own link to the URL before anything else touches it: this module sorts
before the others, and for spawn:// and local:// opening a link boots a new device. Only open
reads are sent (``own`` = 0, no claim), which change nothing. A device that has been used since
it booted (a shared tcp:// daemon, a board that ran a job) cannot show its reset values any
more: the checks then skip and say so.

Instance constants (N_CELLS, SERIAL, CAPS, the limits, TAU0, …) are the device's own values:
each is read from the register of the same name. Two are not registers: BOOT_STATUS (STATUS at
boot: 0, or CAL_VALID alone on a chip whose identity trims are exact) and BOOT_SUBSTEP (EMU_DT at
boot, the substep of the reset configuration).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from host.thermo_device import decode_register
from host.drivers import Driver, open_driver
from protocol import REGMAP, Op, Register, Status, Transaction, Window
from protocol.regmap import resolve
from protocol.words import f32_to_word, f64_to_words

#: Registers that count by themselves from boot on: their reset value holds only at the instant
#: of boot (LEASE_LEFT_MS also counts down, but on a device nobody claimed it reads 0).
CLOCKS = {"UPTIME_MS"}
#: Transactions per packet: the smallest MAX_TRANSACTIONS a device may advertise is 32.
TX_PER_PACKET = 16
#: Words of read data per packet before the device's own limits are known: the smallest
#: MAX_OPEN_REPLY_WORDS, MAX_PACKET_WORDS and MAX_FRAME_BYTES / 4 a device may advertise.
MIN_REPLY_WORDS = 256
#: Words of one window read here: the reset value is uniform, so a prefix is as good a witness
#: as the whole of a large matrix memory.
WINDOW_PREFIX = 1024
NOT_FRESH = ("the device has been used since it booted ({}); run the suite right after the "
             "board boots to check reset values")


def _read(driver: Driver, tx: list[Transaction], words: int = MIN_REPLY_WORDS
          ) -> list[np.ndarray]:
    """Open reads (no token), at most TX_PER_PACKET transactions and ``words`` words of read
    data per packet (each transaction reads at most ``words``)."""
    out: list[np.ndarray] = []
    while tx:
        take, total = 0, 0
        while take < min(len(tx), TX_PER_PACKET) and total + tx[take].args[0] <= words:
            total += tx[take].args[0]
            take += 1
        reply = driver.transact(tx[:take])
        assert reply.status == Status.OK, reply.message
        out += [np.asarray(d, dtype=np.uint32) for d in reply.data]
        tx = tx[take:]
    return out


def _words(reg: Register, value: int | float) -> list[int]:
    """The words a register holding ``value`` reads."""
    if reg.format == "f32":
        return [f32_to_word(float(value))]
    if reg.format == "f64":
        return list(f64_to_words(float(value)))
    return [int(value) & 0xFFFFFFFF]


class FreshDevice:
    """Every register of a device nobody has used since boot, read once over an open link."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        caps = _read(driver, [Transaction(Op.READ, REGMAP.CAPS.address, (1,))])[0]
        self.emulator = bool(int(caps[0]) & REGMAP.CAPS.bit("EMULATOR"))
        self.registers = {n: r for n, r in REGMAP.registers.items()
                          if self.emulator or not n.startswith("EMU_")}
        data = _read(driver, [Transaction(Op.READ, r.address, (r.words,))
                              for r in self.registers.values()])
        self.words = dict(zip(self.registers, data))
        self.values = {n: decode_register(r, self.words[n]) for n, r in self.registers.items()}

    def used(self) -> str | None:
        """Why the device is not fresh, or None."""
        v = self.values
        signs = [f"{n} = {v[n]!r}" for n in ("RUN_COUNT", "DEVICE_TIME", "OWNER", "SCRATCH")
                 if v[n] != 0]
        return ", ".join(signs) or None

    def constants(self) -> dict[str, int | float]:
        """The instance constants the map's reset column names, as this device has them."""
        consts: dict[str, int | float] = {}
        names = {t.strip() for r in self.registers.values() if isinstance(r.reset, str)
                 for t in r.reset.split("*") if not t.strip().isdigit()}
        for name in names:
            if name == "BOOT_STATUS":
                consts[name] = self.values["STATUS"] & REGMAP.STATUS.bit("CAL_VALID")
            elif name == "BOOT_SUBSTEP":
                if "EMU_DT" in self.values:
                    consts[name] = self.values["EMU_DT"]
            else:
                assert name in self.values, f"the map names {name}, which no register holds"
                consts[name] = self.values[name]
        return consts


@pytest.fixture(scope="module")
def fresh(resolved_url: str) -> Iterator[FreshDevice]:
    driver = open_driver(resolved_url, timeout=10.0)
    try:
        driver.owner = 0  # open reads only: nothing is claimed, nothing changes
        device = FreshDevice(driver)
        why = device.used()
        if why:
            pytest.skip(NOT_FRESH.format(why))
        yield device
    finally:
        driver.close()


@pytest.mark.spec("REG-2")
def test_every_register_reads_its_reset_value_after_boot(fresh: FreshDevice):
    consts = fresh.constants()
    wrong = []
    for name, reg in fresh.registers.items():
        if name in CLOCKS:
            continue
        want = _words(reg, resolve(reg.reset, consts))
        got = [int(w) for w in fresh.words[name]]
        if got != want:
            wrong.append(f"{name}: the map's reset {reg.reset!r} is "
                         f"{decode_register(reg, np.array(want, dtype=np.uint32))!r}, the device reads "
                         f"{fresh.values[name]!r} ({' '.join(f'{w:#010x}' for w in got)})")
    assert not wrong, "registers not at their reset value after boot:\n" + "\n".join(wrong)


@pytest.mark.spec("REG-2")
def test_boot_status_and_substep_are_what_the_map_describes(fresh: FreshDevice):
    """The two reset values that are no register of their own: STATUS boots with no bit but
    CAL_VALID (nothing runs, nothing is owned, staged, saturated or overrun, no error, no run
    ended), and the emulator's substep is that of the uncoupled reset configuration."""
    status = fresh.values["STATUS"]
    assert status & ~REGMAP.STATUS.bit("CAL_VALID") == 0, f"STATUS reads {status:#x} at boot"
    if not fresh.emulator:
        return
    dt = fresh.values["EMU_DT"]
    ceiling = resolve(REGMAP.EMU_SUBSTEP.max, {})
    assert 0 < dt <= ceiling, f"EMU_DT reads {dt!r} at boot"


@pytest.mark.spec("REG-2")
def test_memories_read_their_reset_value_after_boot(fresh: FreshDevice):
    """The map gives a reset value for every memory window too. Stored memories read it as a
    code of the window's full scale at its own reset value; STATE (x = 0 through the ADC, whose
    input noise it includes) reads within 1 % of VMAX of 0; the FIFO port is empty (FIFO_LEVEL
    is checked with the registers)."""
    consts = fresh.constants()
    vmax = fresh.values["VMAX"]
    limit = min(fresh.values["MAX_OPEN_REPLY_WORDS"], fresh.values["MAX_PACKET_WORDS"],
                fresh.values["MAX_FRAME_BYTES"] // 4)
    wrong = []
    for w in REGMAP.windows.values():
        if w.fifo:
            continue
        n = min(w.depth_for(consts), WINDOW_PREFIX)
        got = np.concatenate(_read(fresh.driver, [
            Transaction(Op.READ, w.base + k, (min(limit, n - k),)) for k in range(0, n, limit)],
            limit))
        codes = got.view(np.int32)
        if w.name == "STATE":
            worst = float(np.max(np.abs(codes.astype(np.float64)))) * vmax / 2**31
            if worst > 0.01 * vmax:
                wrong.append(f"STATE: |x| up to {worst:g} V at boot (reset 0)")
            continue
        want = _reset_code(w, fresh.values)
        bad = np.flatnonzero(codes != want)
        if bad.size:
            i = int(bad[0])
            wrong.append(f"{w.name}[{i}]: reset {w.reset!r} is code {want:#x}, the device reads "
                         f"{int(got[i]):#010x} ({bad.size} of {n} words differ)")
    assert not wrong, "memories not at their reset value after boot:\n" + "\n".join(wrong)


def _reset_code(w: Window, values: dict[str, int | float]) -> int:
    if not w.format.startswith("q31"):
        return int(w.reset)
    assert w.scale is not None
    fs = values[w.scale]
    return int(np.clip(round(float(w.reset) * 2**31 / fs), -2**31, 2**31 - 1))
