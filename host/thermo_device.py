"""ThermoDevice: a typed API over the register map, the same for emulator and hardware.

Every method builds transactions and sends them as one packet; inside ``with dev.batch():``
calls are queued and sent together at the end of the block (their results are ``Deferred``), so
"program + commit + run + wait + read mean" is one round trip. Physical values are converted
to fixed-point codes here, with full-scale registers chosen from the data.
"""
from __future__ import annotations

import math
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from host.drivers import Driver, open_driver
from host.errors import DeviceError, DeviceSaturated, LeaseLost, NotOwner, RunAborted
from host import packets
from protocol.fixed_point import scan
from protocol.limits import MAXIMUM_VALUES, MINIMUM_VALUES, Limits
from protocol.codec import Transaction
from protocol.words import f32_to_word, word_to_f32, words_to_f64
from protocol.ops import Op
from protocol.regmap import REGMAP, Register, Window, float_to_q31, q31_full_scale_for, q31_to_float
from protocol.status import RUN_END_WHY, RunEnd, Status

#: Longest WAIT slice. A run's WAIT is cut into slices the device answers at the end of (TIMEOUT
#: while still running; the host re-sends the rest of the packet): a slice is at most this, a
#: third of the lease (a parked packet is no heartbeat) and half the driver's timeout (so every
#: reply is due within one timeout, and a dead device is noticed within (retries + 1) × timeout
#: even in the middle of a long run).
RUN_WAIT_SLICE_MS = 10_000
#: How often claim(wait=...) tries again while another host holds the device.
CLAIM_POLL_S = 0.5

#: Full-scale headroom of DIAG uploads on a device with gain trims: the firmware multiplies each
#: DIAG value by its cell's trim (a few % from 1) before the DAC, which must not clip it.
DIAG_TRIM_HEADROOM = 1 / 16

_Decode = Callable[[list], Any]
MODES = {"overdamped": 0, "underdamped": 1}
INTEGRATORS = tuple(REGMAP.meta["emu_integrators"])
"""EMU_INTEGRATOR values, in register order."""


class Deferred:
    """Result of a call queued in a batch; ``.value`` once the batch has been sent."""
    _unset = object()

    def __init__(self) -> None:
        self._value: Any = Deferred._unset

    @property
    def value(self) -> Any:
        if self._value is Deferred._unset:
            raise RuntimeError("the batch has not been sent yet")
        return self._value


@dataclass
class _Call:
    tx: list[Transaction]
    decode: _Decode | None
    result: Deferred = field(default_factory=Deferred)


@dataclass
class CalibrationReport:
    """What a calibration (or a drift check) found, and what it cost."""
    valid: bool
    """STATUS.CAL_VALID after it: the residual is within the tolerance."""
    residual: float
    """Rms residual offset over the cells (V/τ0)."""
    residual_max: float
    tolerance: float
    device_time: float
    """Device time it took (τ0)."""
    hardware_time_s: float
    """The same on the chip (device_time × TAU0)."""
    calibrated_at: float
    """DEVICE_TIME of the last full calibration."""
    count: int
    """Calibrations since boot."""

    def describe(self) -> str:
        state = "valid" if self.valid else f"NOT valid (tolerance {self.tolerance:.3g})"
        return (f"residual offset {self.residual:.3g} V/tau0 rms (max {self.residual_max:.3g}), "
                f"{state}; took {self.device_time:g} tau0 of device time "
                f"({self.hardware_time_s * 1e3:.3g} ms on the chip)")


class _RunWait(Transaction):
    """A WAIT the host issued for its own run: on TIMEOUT (device alive, still running) the
    host re-sends the rest of the packet from here. A user's own WAIT is never re-sent."""


#: Bytes of a packet set aside for its header and framing when a slow link's lease budget is
#: turned into words.
HEADER_ROOM_BYTES = 16 * 1024
#: Limits field -> the register that advertises it.
_LIMIT_REGISTERS = {f: f.upper() for f in Limits.names() if f != "fifo_depth"}


def _reg(name: str) -> Register:
    return REGMAP.registers[name]


def _win(name: str) -> Window:
    return REGMAP.windows[name]


def rd(name: str, n: int = 1) -> Transaction:
    entry = REGMAP[name]
    addr = entry.address if isinstance(entry, Register) else entry.base
    count = entry.words if isinstance(entry, Register) and n == 1 else n
    return Transaction(Op.READ, addr, (count,))


def wr(name: str, words: Any) -> Transaction:
    w = np.atleast_1d(np.asarray(words)).astype(np.int64).astype(np.uint32) \
        if not (isinstance(words, np.ndarray) and words.dtype in (np.int32, np.uint32)) else words
    entry = REGMAP[name]
    addr = entry.address if isinstance(entry, Register) else entry.base
    return Transaction(Op.WRITE, addr, (w.size,), w)


def wr_f32(name: str, value: float) -> Transaction:
    return wr(name, [f32_to_word(value)])


def decode_register(reg: Register, words: np.ndarray) -> int | float:
    if reg.format == "f32":
        return word_to_f32(int(words[0]))
    if reg.format == "f64":
        return words_to_f64(int(words[0]), int(words[1]))
    return int(words[0])


class ThermoDevice:
    def __init__(self, driver: Driver, *, claim: bool = True, lease_ms: int = 30_000,
                 keepalive: bool = True) -> None:
        self.driver = driver
        # one request on the link at a time, whoever sends it (keep-alive thread, other threads,
        # other ThermoDevice objects on the same driver): the lock lives with the driver
        if getattr(driver, "link", None) is None:
            driver.link = threading.RLock()  # type: ignore[attr-defined]
        self.link = driver.link  # type: ignore[attr-defined]
        self._local = threading.local()  # a batch belongs to the thread that opened it
        self.last_sent = time.monotonic()
        self._keepalive_wanted = keepalive
        self._keepalive = None
        self._wait_slice_ms = self._slice_ms(lease_ms)
        self._lease_ms = lease_ms
        self._config: dict[str, list[Transaction]] = {}  # last configuration, for recover()
        self._settings: dict[tuple[int, int], Transaction] = {}
        self.rounding_rng: np.random.Generator | None = None  # see stochastic_rounding()
        self.token = 0
        self._static = self._read_static()  # within any device's limits: one packet
        self.limits = self._read_limits()
        self.n_cells: int = self._static["n_cells"]
        self.vmax: float = self._static["vmax"]
        self.max_rank: int = self._static["max_rank"]
        self.active: int = self._static["active_cells"]  # committed cell count (FIFO sample size)
        self._staged_active = self.active
        self._run_id: int | None = None  # RUN_COUNT of the last run this host started
        # chosen once: a retried claim (after a lost answer, a reboot, a lapsed lease) must
        # carry the token of the claim that may already have landed
        self._last_token = secrets.randbits(32) | 1
        if claim:
            self.claim(lease_ms)

    # ---------------------------------------------------------------- transport
    @property
    def _batch(self) -> list[_Call] | None:
        return getattr(self._local, "batch", None)

    @_batch.setter
    def _batch(self, calls: list[_Call] | None) -> None:
        self._local.batch = calls

    @property
    def stats(self):
        return self.driver.stats

    @property
    def lease_s(self) -> float:
        return self._lease_ms / 1000

    def _transact(self, tx: list[Transaction], *, single: bool = False) -> Any:
        """One request on the link (``single``: one attempt, no resends)."""
        with self.link:
            self.last_sent = time.monotonic()
            retries = getattr(self.driver, "retries", None)
            if single and retries is not None:
                self.driver.retries = 0
            try:
                return self.driver.transact(tx, timeout=self._timeout())
            finally:
                if single and retries is not None:
                    self.driver.retries = retries

    def renew_lease(self) -> None:
        """One cheap packet carrying the token: the device renews the lease (NotOwner if it is
        gone). The keep-alive thread calls this while the host computes."""
        reply = self._transact([rd("LEASE_LEFT_MS")], single=True)
        if reply.status != Status.OK:
            raise DeviceError.from_reply(reply.status, reply.message)

    def _send(self, calls: list[_Call]) -> None:
        """Send the calls' transactions as one packet, or as the few packets the device's
        limits require (host/packets.py says where a request may be split), and hand each
        call its read data."""
        tx = [t for c in calls for t in c.tx]
        plan = packets.plan(tx, self._packet_limits(), owner=bool(self.token))
        data: list = []
        with self.link:  # a split request's packets follow each other, nothing in between
            for packet in plan.packets:
                data += self._send_packet(packet)
        data = plan.merge(data)
        k = 0
        for c in calls:
            part = data[k:k + len(c.tx)]
            k += len(c.tx)
            if c.decode is not None:
                c.result._value = c.decode(part)
            else:
                c.result._value = None

    def _packet_limits(self) -> Limits:
        """The device's limits, tightened on a slow link so that each packet arrives within a
        third of the lease: the lease is renewed by whole packets, so one that takes longer on
        the wire than LEASE_MS would arrive after the lease had run out."""
        rate = getattr(self.driver, "link_rate", None)
        if not rate:
            return self.limits
        budget = int(rate * self._lease_ms / 1000 / 3)  # bytes one packet may take
        # its words, less room for the header and framing of a packet (at most 16 KiB); never
        # below the minimum every device accepts (a link that slow gets less margin)
        words = max(MINIMUM_VALUES.max_packet_words, (budget - HEADER_ROOM_BYTES) // 4)
        lim = self.limits
        return replace(lim, max_packet_words=min(lim.max_packet_words, words),
                       max_reply_words=min(lim.max_reply_words, words),
                       max_open_reply_words=min(lim.max_open_reply_words, words),
                       max_frame_bytes=min(lim.max_frame_bytes, max(MINIMUM_VALUES.max_frame_bytes,
                                                                     4 * words)))

    def _send_packet(self, tx: list[Transaction]) -> list:
        """One packet; its WAITs for this host's runs are re-sent while the run goes on."""
        data: list = []
        start = 0
        while True:
            # the packet's WAITs share one slice of at most timeout/2, so one timeout covers it
            reply = self._transact(self._share_wait_slice(tx[start:]))
            # the failing transaction, not the ones a refused packet marks ABORTED before it
            bad = next((i for i, s in enumerate(reply.tx_status)
                        if s not in (Status.OK, Status.ABORTED)),
                       next((i for i, s in enumerate(reply.tx_status) if s != Status.OK), None))
            if bad is None and reply.status == Status.OK:
                data += reply.data
                break
            if bad is not None and reply.tx_status[bad] == Status.TIMEOUT and \
                    isinstance(tx[start + bad], _RunWait):
                data += reply.data[:bad]  # device alive, still running: wait again from here
                start += bad
                continue
            index = None if bad is None else start + bad
            status = reply.status if bad is None else reply.tx_status[bad]
            if status == Status.NOT_OWNER and self.token and not _writes_owner(tx[start:]):
                self._run_id = None  # whatever the device holds now is not known to be ours
                raise LeaseLost(
                    f"this host no longer holds the device: {reply.message}. Nothing of the "
                    "packet ran, and no result was returned (it could have come from another "
                    "host's run). Call dev.claim() to take the device again and upload the "
                    "problem again (dev.recover() re-applies the last configuration)",
                    status, index)
            raise DeviceError.from_reply(status, reply.message, index)
        return data

    def _share_wait_slice(self, tx: list[Transaction]) -> list[Transaction]:
        """Split one wait slice among the host's run WAITs of a packet. A parked packet does not
        renew the lease, so the packet as a whole, not each WAIT, must end inside the slice
        (lease/3): k runs in one batch get slice/k each, and a WAIT that times out is re-sent
        (a new packet, which renews the lease)."""
        k = sum(isinstance(t, _RunWait) for t in tx)
        if not k:
            return tx
        ms = max(1, self._wait_slice_ms // k)
        return [_RunWait(t.op, t.addr, (t.args[0], t.args[1], ms)) if isinstance(t, _RunWait) else t
                for t in tx]

    def _timeout(self) -> float:
        return float(getattr(self.driver, "timeout", 5.0))

    def _slice_ms(self, lease_ms: int) -> int:
        return max(1, min(RUN_WAIT_SLICE_MS, lease_ms // 3, int(self._timeout() * 1000) // 2))

    def _do(self, tx: list[Transaction], decode: _Decode | None = None) -> Any:
        call = _Call(tx, decode)
        if self._batch is not None:
            self._batch.append(call)
            return call.result
        self._send([call])
        return call.result.value

    @contextmanager
    def batch(self) -> Iterator["ThermoDevice"]:
        """Queue calls and send them as one packet when the block ends (as several only where
        the device's limits require it and the split cannot change the meaning:
        host/packets.py)."""
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        self._batch = []
        active = self.active
        try:
            yield self
            calls, self._batch = self._batch, None
            if calls:
                self._send(calls)
        except BaseException:
            self.active = active  # a COMMIT in a failed batch may not have happened
            raise
        finally:
            self._batch = None

    # ---------------------------------------------------------------- identity, ownership
    def _read_static(self) -> dict:
        names = ["MAGIC", "VERSION", "CAPS", "N_CELLS", "MAX_RANK", "SERIAL", "BOOT_ID",
                 "FIFO_DEPTH", "DAC_BITS", "ADC_BITS", "VMAX", "ACTIVE_CELLS", "DEVICE_TIME",
                 *_LIMIT_REGISTERS.values()]  # 23 registers: within any device's limits
        tx = [rd(n) for n in names]
        reply = self._transact(tx)
        if reply.status != Status.OK:
            raise DeviceError.from_reply(reply.status, reply.message)
        v = {n: decode_register(_reg(n), d) for n, d in zip(names, reply.data)}
        if v["MAGIC"] != REGMAP.meta["magic"]:
            raise DeviceError(f"not a thermohil device: MAGIC reads {v['MAGIC']:#x}", Status.INTERNAL)
        ver, caps = _reg("VERSION"), _reg("CAPS")
        info = {
            "url": self.driver.url,
            "protocol": f"{ver.field('PROTO_MAJOR').get(v['VERSION'])}.{ver.field('PROTO_MINOR').get(v['VERSION'])}",
            "firmware": ver.field("FIRMWARE").get(v["VERSION"]),
            "caps": [f.name.lower() for f in caps.fields if f.get(v["CAPS"])],
            "n_cells": v["N_CELLS"], "max_rank": v["MAX_RANK"], "serial": v["SERIAL"],
            "boot_id": v["BOOT_ID"], "fifo_depth": v["FIFO_DEPTH"],
            "dac_bits": {"coupling": v["DAC_BITS"] & 0xFF, "bias": (v["DAC_BITS"] >> 8) & 0xFF},
            "adc_bits": v["ADC_BITS"], "vmax": v["VMAX"], "active_cells": v["ACTIVE_CELLS"],
            "device_time": v["DEVICE_TIME"],
            "limits": {f: v[r] for f, r in _LIMIT_REGISTERS.items()} | {"fifo_depth": v["FIFO_DEPTH"]},
        }
        # the chip's timing (protocol 2.1 on) and, on the emulator, its settings: one packet
        timing = ["TAU0", "LINK_RATE", "LINK_WORD_BITS", "DAC_RATE", "ADC_RATE"]
        emu = ["EMU_PROFILE", "EMU_SEED", "EMU_SUBSTEP", "EMU_STABILITY", "EMU_DT",
               "EMU_INTEGRATOR", "EMU_EXACT"]
        emu = emu if "emulator" in info["caps"] else []
        r = self._transact([rd(n) for n in timing + emu])
        if r.status != Status.OK and emu:  # an older device publishes no timing
            timing = []
            r = self._transact([rd(n) for n in emu])
        if r.status == Status.OK:
            v = {n: decode_register(_reg(n), d) for n, d in zip(timing + emu, r.data)}
        elif emu:
            raise DeviceError.from_reply(r.status, r.message)
        else:
            v, timing = {}, []
        if timing:
            info["timing"] = {"tau0_s": v["TAU0"], "link_bits_per_s": v["LINK_RATE"],
                              "link_word_bits": v["LINK_WORD_BITS"],
                              "dac_words_per_s": v["DAC_RATE"], "adc_words_per_s": v["ADC_RATE"]}
        if emu:
            names = REGMAP.meta["emu_profiles"]
            info["emulator"] = {
                "profile": names[v["EMU_PROFILE"]] if v["EMU_PROFILE"] < len(names)
                else "file" if v["EMU_PROFILE"] == 255 else v["EMU_PROFILE"],
                "seed": v["EMU_SEED"], "substep": v["EMU_SUBSTEP"] or "auto",
                "stability": v["EMU_STABILITY"], "dt": v["EMU_DT"],
                "integrator": INTEGRATORS[v["EMU_INTEGRATOR"]]
                if v["EMU_INTEGRATOR"] < len(INTEGRATORS) else v["EMU_INTEGRATOR"],
                "exact": bool(v["EMU_EXACT"])}
        return info

    def _read_limits(self) -> Limits:
        """The resource limits the device advertises (a small board lowers them): every packet
        the host sends keeps inside them."""
        advertised = self._static["limits"]
        # a device may advertise more than this host knows of (a later, bigger board): keep to
        # the protocol maxima this host was built with
        clamped = {k: min(v, getattr(MAXIMUM_VALUES, k)) for k, v in advertised.items()}
        try:
            return Limits(**clamped)
        except ValueError as e:
            raise DeviceError(f"the device advertises limits this host cannot work within: {e}",
                              Status.INTERNAL) from None

    def info(self) -> dict:
        """Identity, capabilities, limits, converter resolutions and (on the emulator) its
        settings."""
        self._static = self._read_static()
        self.limits = self._read_limits()
        return dict(self._static)

    def claim(self, lease_ms: int = 30_000, *, wait: float = 0.0,
              on_wait: Callable[[float], None] | None = None) -> None:
        """Take ownership (writes need it). The lease renews with every packet you send.

        A device held by another host raises NotOwner, unless its lease runs out within ``wait``
        seconds: then the call waits for it (``on_wait(seconds_left)`` is told first) and
        claims. A host that died or froze cannot release the device; its lease is what frees it.
        """
        if lease_ms < 300:
            raise ValueError(f"lease_ms must be >= 300, got {lease_ms}")
        if self._batch is not None:
            raise RuntimeError("claim() cannot run inside a batch")
        # after a reboot or a lapsed lease, claim with the same token: a claim of ours that
        # reached the device but whose answer was lost must not lock us out for a lease
        token = self.token or self._last_token
        give_up = time.monotonic() + wait
        told = False
        while True:
            self.driver.owner = token
            try:
                self._do([wr("OWNER", [token]), wr("LEASE_MS", [lease_ms])])
                break
            except NotOwner:
                self.driver.owner = self.token = 0
                left = self.read("LEASE_LEFT_MS") / 1000 + 0.05
                if time.monotonic() + left > give_up:
                    raise
                if on_wait is not None and not told:
                    on_wait(left)
                    told = True
                time.sleep(min(left, CLAIM_POLL_S))  # the holder may release before its lease ends
            except DeviceError:
                self.driver.owner = self.token
                raise
        if token != self.token:  # the device is newly ours: what it holds is not our result
            self._run_id = None
        self.token = self._last_token = token
        self._set_lease(lease_ms)
        if self._keepalive_wanted and self._keepalive is None:
            from host.keepalive import KeepAlive
            self._keepalive = KeepAlive(self)
            self._keepalive.start()

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()
            self._keepalive = None

    def _set_lease(self, lease_ms: int) -> None:
        # a parked WAIT is no heartbeat: the host's WAIT slices must end well inside the lease
        self._lease_ms = lease_ms
        self._wait_slice_ms = self._slice_ms(lease_ms)

    def release(self) -> None:
        self._stop_keepalive()
        if self.token:
            try:
                self._do([wr("OWNER", [0])])
            finally:
                self.token = 0
                self.driver.owner = 0

    def close(self) -> None:
        """Release the device and close the link. The release never blocks longer than one
        timeout: one attempt, and none at all when the device did not answer the last request
        (its lease then frees it). (spawn:// then stops its daemon: up to 10 s for a clean exit,
        1 s if it had stopped answering.)"""
        self._stop_keepalive()
        try:
            if self.token and getattr(self.driver, "responsive", True) and \
                    getattr(self.driver, "reset", None) is None:
                self._transact([wr("OWNER", [0])], single=True)
        except DeviceError:
            pass  # a dead or reset device cannot be released; closing must still succeed
        finally:
            self.token = self.driver.owner = 0
            self.driver.close()

    def __enter__(self) -> "ThermoDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def acknowledge_reset(self) -> None:
        """Accept a rebooted device as it is (its configuration is the reset one; this host's
        claim is gone). ``recover()`` does this and re-applies the configuration."""
        ack = getattr(self.driver, "acknowledge_reset", None)
        if ack is not None:
            ack()
        self._stop_keepalive()
        self.token = self.driver.owner = 0
        self._run_id = None  # RUN_COUNT restarted at the reboot: old counts mean nothing
        self._static = self._read_static()  # within any device's limits: one packet
        self.limits = self._read_limits()
        self.active = self._staged_active = self._static["active_cells"]

    def recover(self) -> None:
        """After DeviceReset (or LeaseLost): claim the device again and re-apply the last
        configuration (then upload the problem and run again: the device state is not kept)."""
        self.acknowledge_reset()
        self.claim(self._lease_ms)
        for tx in self._config.values():
            self._do(list(tx))
        if self._config:
            self.commit()

    # ---------------------------------------------------------------- raw registers
    def read(self, what: str | int, n: int | None = None) -> Any:
        """A register (typed value), a memory (physical values), or a raw address (words)."""
        if isinstance(what, int):
            tx = [Transaction(Op.READ, what, (n or 1,))]
            return self._do(tx, lambda d: int(d[0][0]) if n is None else d[0].copy())
        entry = REGMAP[what.upper()]
        if isinstance(entry, Register):
            return self._do([rd(entry.name)], lambda d: decode_register(entry, d[0]))
        count = n or self._window_len(entry)
        if entry.fifo:
            tx = [Transaction(Op.READ_NI, entry.base, (count,))]
        else:
            tx = [rd(entry.name, count)]
        if not entry.format.startswith("q31"):
            return self._do(tx, lambda d: d[0].view(np.int32).copy())
        scale = entry.scale
        assert scale is not None
        tx.insert(0, rd(scale))
        return self._do(tx, lambda d: q31_to_float(d[1].view(np.int32),
                                                   decode_register(_reg(scale), d[0])))

    def write(self, what: str | int, value: Any) -> None:
        """Write a register (typed), a memory (physical values; its full scale is chosen) or a
        raw address (words)."""
        if isinstance(what, int):
            self._do([Transaction(Op.WRITE, what, (np.size(value),),
                                  np.atleast_1d(np.asarray(value, dtype=np.int64)).astype(np.uint32))])
            return
        entry = REGMAP[what.upper()]
        if isinstance(entry, Register):
            if entry.format == "f32":
                self._do([wr_f32(entry.name, float(value))])
            elif entry.name == "LEASE_MS":
                # set first, so run WAITs queued after it in a batch already fit the new lease
                previous = self._lease_ms
                self._set_lease(int(value))
                try:
                    self._do([wr(entry.name, [int(value)])])
                except DeviceError:
                    self._set_lease(previous)
                    raise
            elif entry.name == "CTRL" and int(value) & _reg("CTRL").bit("RUN"):
                # a run started by hand is this host's run too
                self._do([wr("CTRL", [int(value)]), rd("RUN_COUNT")],
                         lambda d: self._remember_run(d[1]))
            elif entry.format == "u32":
                self._do([wr(entry.name, [int(value)])])
            else:
                raise DeviceError(f"{entry.name} ({entry.format}) is not writable", Status.ACCESS)
            return
        self._do(self._window_tx(entry.name, np.asarray(value)))

    def _window_len(self, w: Window) -> int:
        if w.fifo:
            raise ValueError(f"reading {w.name} needs n (words to pop)")
        # the map's own rule (a product of the instance constants, never beyond the span), as
        # the device computes it
        return REGMAP.windows[w.name].depth_for({"N_CELLS": self.n_cells,
                                                 "MAX_RANK": self._static["max_rank"]})

    def _window_tx(self, name: str, values: np.ndarray) -> list[Transaction]:
        w = _win(name)
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        if w.format == "u32":
            return [wr(name, flat.astype(np.int64))]
        top, low, finite = scan(flat)  # one pass for the checks and the full scale
        if not finite:
            raise ValueError(f"{name}: values must be finite")
        if w.format == "q31u" and low < 0:
            raise ValueError(f"{name}: values must be >= 0")
        assert w.scale is not None
        bits = self._dac_bits(name)
        if name == "DIAG" and self.calibration_capable:
            top *= 1 + DIAG_TRIM_HEADROOM  # room for the firmware's gain trims (they multiply)
        fs = q31_full_scale_for(top, bits=bits)
        codes = float_to_q31(flat, fs, bits, self.rounding_rng)
        if self.rounding_rng is not None and name in ("COUPLING", "LOWRANK_H"):  # one per pair
            n = math.isqrt(codes.size)
            m = codes.reshape(n, n)
            codes = (np.triu(m) + np.triu(m, 1).T).reshape(-1)
        return [wr_f32(w.scale, fs), wr(name, codes)]

    @contextmanager
    def stochastic_rounding(self, seed: Any = None) -> Iterator["ThermoDevice"]:
        """Inside the block, uploads round stochastically to each DAC's grid (unbiased) instead
        of to the nearest step: averaging results over several programmings made this way takes
        the quantisation error from O(ε) to O(ε²) (Aifer et al. 2024, error mitigation)."""
        previous, self.rounding_rng = self.rounding_rng, np.random.default_rng(seed)
        try:
            yield self
        finally:
            self.rounding_rng = previous

    @property
    def dac_bits(self) -> dict[str, int]:
        """Resolution (bits) of the coupling DACs and of the bias DACs, as read at connect."""
        return dict(self._static["dac_bits"])

    @property
    def adc_bits(self) -> int:
        """Resolution (bits) of the ADCs behind STATE, VELOCITY and the accumulator."""
        return int(self._static["adc_bits"])

    def _dac_bits(self, window: str) -> int:
        """Resolution of the DAC behind a memory: the bias DACs take BIAS, STATE and VELOCITY,
        the coupling DACs everything else."""
        bits = self._static["dac_bits"]
        return bits["bias"] if window in ("BIAS", "STATE", "VELOCITY") else bits["coupling"]

    # ---------------------------------------------------------------- configuration
    def configure(self, *, mode: str | Sequence[str] | None = None, temperature: float | None = None,
                  mobility: Any = None, friction: Any = None, noise_gain: Any = None,
                  active: int | None = None, substep: float | None = None,
                  stability: float | None = None, seed: int | None = None,
                  sample_period: float | None = None, integrator: str | None = None) -> Any:
        """Stage cell settings (committed by ``commit()``; EMU_* act at once). Scalars apply to
        every cell; arrays give one value per cell. ``integrator`` (emulator only): "exact"
        propagates the dynamics exactly where they allow it, "em" always integrates them by
        Euler–Maruyama at the substep."""
        n = self.n_cells
        if integrator is not None:  # checked before anything is staged
            if integrator not in INTEGRATORS:
                raise ValueError(f"integrator must be one of {', '.join(INTEGRATORS)}, "
                                 f"got {integrator!r}")
            if "emulator" not in self._static["caps"]:
                raise ValueError("integrator: this device is not an emulator (CAPS.EMULATOR is "
                                 "clear); a board's dynamics are its own")
        tx: list[Transaction] = []
        if mode is not None:
            modes = [mode] * n if isinstance(mode, str) else list(mode)
            try:
                codes = [MODES[m] if isinstance(m, str) else int(bool(m)) for m in modes]
            except KeyError as e:
                raise ValueError(f"mode must be 'overdamped' or 'underdamped', got {e.args[0]!r}") from None
            tx.append(wr("MODE", self._per_cell(codes, "mode").astype(np.int64)))
        if temperature is not None:
            if not (np.isfinite(temperature) and temperature >= 0):
                raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
            tx.append(wr_f32("TEMPERATURE", float(temperature)))
        for name, val, default in (("MOBILITY", mobility, 1.0), ("FRICTION", friction, 1.0),
                                   ("NOISE_GAIN", noise_gain, 1.0)):
            if val is not None:
                tx += self._window_tx(name, self._per_cell(val, name.lower(), default))
        if active is not None:
            if not 1 <= active <= n:
                raise ValueError(f"active must be in 1..{n}, got {active}")
            tx.append(wr("ACTIVE_CELLS", [active]))
            self._staged_active = active
        if integrator is not None:
            tx.append(wr("EMU_INTEGRATOR", [INTEGRATORS.index(integrator)]))
        if substep is not None:
            tx.append(wr_f32("EMU_SUBSTEP", substep))
        if stability is not None:
            tx.append(wr_f32("EMU_STABILITY", stability))
        if seed is not None:
            tx.append(wr("EMU_SEED", [seed]))
        if sample_period is not None:
            tx.append(wr_f32("SAMPLE_PERIOD", sample_period))
        self._settings.update({(t.addr, t.count): t for t in tx})  # latest value per register
        self._remember("configure", list(self._settings.values()))
        return self._do(tx)

    def _remember(self, key: str, tx: list[Transaction]) -> None:
        """Keep the last upload of each kind, in the order they were made, for recover()."""
        self._config.pop(key, None)
        self._config[key] = tx

    def _per_cell(self, val: Any, what: str, default: float = 0.0) -> np.ndarray:
        arr = np.asarray(val, dtype=np.float64)
        if arr.ndim == 0:
            return np.full(self.n_cells, float(arr))
        if arr.ndim != 1 or arr.size > self.n_cells:
            raise ValueError(f"{what}: expected a scalar or at most {self.n_cells} values, got shape {arr.shape}")
        out = np.full(self.n_cells, default)
        out[: arr.size] = arr
        return out

    def load_coupling(self, A: Any) -> Any:
        """Stage a dense coupling matrix A (n x n, n <= N_CELLS); sets ACTIVE_CELLS = n."""
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"coupling must be a square matrix, got shape {A.shape}")
        if A.shape[0] > self.n_cells:
            raise ValueError(f"coupling is {A.shape[0]}x{A.shape[0]} but the device has {self.n_cells} cells")
        if not np.all(np.isfinite(A)):
            raise ValueError("coupling has non-finite entries")
        self._staged_active = A.shape[0]
        tx = [wr("ACTIVE_CELLS", [A.shape[0]]), wr("COUPLING_MODE", [0])]
        tx += self._window_tx("COUPLING", A)
        self._remember("coupling", tx)
        return self._do(tx)

    def load_lowrank(self, J: Any, H: Any, lam: Any = None) -> Any:
        """Stage A = Jᵀ H J + diag(lam) without forming it: J (r x n), H (r x r), lam (n).
        ``lam=None`` keeps the DIAG already loaded (saves N words per upload)."""
        J, H = np.atleast_2d(np.asarray(J, float)), np.atleast_2d(np.asarray(H, float))
        keep_diag = lam is None
        lam = np.broadcast_to(np.asarray(0.0 if keep_diag else lam, float), (J.shape[1],))
        r, n = J.shape
        if H.shape != (r, r):
            raise ValueError(f"H must be {r}x{r} for J of shape {J.shape}, got {H.shape}")
        if n > self.n_cells or r > self._static["max_rank"]:
            raise ValueError(f"J is {r}x{n}; the device has {self.n_cells} cells and MAX_RANK "
                             f"{self._static['max_rank']}")
        for name, m in (("J", J), ("H", H), ("lam", lam)):
            if not scan(m)[2]:          # one pass, no temporary the size of J
                raise ValueError(f"{name} has non-finite entries")
        self._staged_active = n
        tx = [wr("ACTIVE_CELLS", [n]), wr("COUPLING_MODE", [1]), wr("RANK", [r])]
        if r:
            tx += self._window_tx("LOWRANK_J", J) + self._window_tx("LOWRANK_H", H)
        if not keep_diag:
            tx += self._window_tx("DIAG", lam)
            self._remember("diag", tx[-2:])
        self._remember("coupling", tx)
        return self._do(tx)

    def load_capacitance(self, C: Any, *, inv_inductance: Any = 1.0, conductance: Any = 1.0) -> Any:
        """Stage capacitively coupled RLC cells (CAPS.CAPACITIVE; the published SPU's physics):
        C the Maxwell capacitance matrix (n x n, positive definite), per cell 1/L and the
        conductance 1/R. The node voltages then equilibrate to N(0, κC⁻¹) at TEMPERATURE κ."""
        if "capacitive" not in self._static["caps"]:
            raise DeviceError("this device has no capacitive coupling mode (CAPS.CAPACITIVE is 0)",
                              Status.ACCESS)
        C = np.asarray(C, dtype=np.float64)
        if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] > self.n_cells:
            raise ValueError(f"C must be a square matrix of at most {self.n_cells} cells, got "
                             f"shape {C.shape}")
        n = C.shape[0]
        per_cell = {}
        for name, value in (("inv_inductance", inv_inductance), ("conductance", conductance)):
            arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(f"{name} must be finite and >= 0 on every cell")
            per_cell[name] = np.concatenate([arr, np.zeros(self.n_cells - n)])
        if not np.all(np.isfinite(C)):
            raise ValueError("C has non-finite entries")
        self._staged_active = n
        tx = [wr("ACTIVE_CELLS", [n]), wr("COUPLING_MODE", [2]), *self._window_tx("COUPLING", C),
              *self._window_tx("DIAG", per_cell["inv_inductance"]),
              *self._window_tx("FRICTION", per_cell["conductance"])]
        self._remember("coupling", tx)
        return self._do(tx)

    def load_bias(self, b: Any) -> Any:
        """Stage the bias vector b: one value per staged active cell (the size of the coupling
        staged last, or ``configure(active=)``), or a scalar for every cell. A length mismatch is
        an error, not a silent zero-pad or truncation."""
        b = np.asarray(b, dtype=np.float64)
        if b.ndim > 1:
            raise ValueError(f"bias must be a vector, got shape {b.shape}")
        if b.ndim == 1 and b.size != self._staged_active:
            raise ValueError(f"bias has {b.size} values but the staged configuration has "
                             f"{self._staged_active} active cells (stage the coupling first; "
                             f"the device has {self.n_cells} cells)")
        # only the active cells' words go up (the rest of the memory is not used by the run)
        tx = self._window_tx("BIAS", b if b.ndim == 1 else self._per_cell(b, "bias"))
        self._remember("bias", tx)
        return self._do(tx)

    def commit(self) -> Any:
        """Swap the staged configuration into the running dynamics, atomically."""
        previous, self.active = self.active, self._staged_active  # later calls in a batch see it
        try:
            return self._do([wr("CTRL", [_reg("CTRL").bit("COMMIT")])])
        except DeviceError:
            self.active = previous
            raise

    def reset_state(self) -> Any:
        return self._do([wr("CTRL", [_reg("CTRL").bit("RESET_STATE")])])

    def set_state(self, x: Any) -> Any:
        x = self._per_cell(x, "state")
        if np.any(np.abs(x) >= self.vmax):
            raise ValueError(f"initial state must lie inside the rails ±{self.vmax} V")
        return self._do([wr("STATE", float_to_q31(x, self.vmax, self._dac_bits("STATE")))])

    def set_velocity(self, v: Any) -> Any:
        """Initial loop currents of underdamped cells (the momenta an optimizer hands to them)."""
        v = self._per_cell(v, "velocity")
        if np.any(np.abs(v) >= self.vmax):
            raise ValueError(f"initial velocity must lie inside the full scale ±{self.vmax}")
        return self._do([wr("VELOCITY", float_to_q31(v, self.vmax, self._dac_bits("VELOCITY")))])

    # ---------------------------------------------------------------- running
    # Every result is read with STATUS and RUN_COUNT in the same packet, and checked: it must
    # come from the last run this host started, and that run must have ended whole.
    @staticmethod
    def _provenance() -> list[Transaction]:
        return [rd("STATUS"), rd("RUN_COUNT")]

    @staticmethod
    def _start(ctrl: int, run_time: float) -> list[Transaction]:
        """Transactions that start a run; the last reads RUN_COUNT (for ``_remember_run``)."""
        return [wr_f32("RUN_TIME", run_time), wr("CTRL", [ctrl]), rd("RUN_COUNT")]

    def _remember_run(self, count_words: np.ndarray) -> None:
        """This host's run is the one RUN_COUNT names: results must come from it."""
        self._run_id = int(count_words[0])

    def _wait_idle(self) -> list[Transaction]:
        running = _reg("STATUS").bit("RUNNING")
        return [_RunWait(Op.WAIT, _reg("STATUS").address, (running, 0, self._wait_slice_ms)),
                *self._provenance(), rd("SAT_MAP", self.n_cells)]

    def _check_result(self, status_words: np.ndarray, count_words: np.ndarray, *,
                      snapshot: bool = False) -> None:
        """A result is this host's and whole: its run is the last one this host started, and
        has ended DONE. A snapshot (state, velocity) is the device's state at this moment: it
        may be taken while the run goes on or after it was stopped, but never after a fault."""
        status, count = int(status_words[0]), int(count_words[0])
        running = bool(status & _reg("STATUS").bit("RUNNING"))
        if running and not snapshot:
            raise DeviceError("the run is still going: its average covers only part of it; "
                              "call wait() first", Status.BUSY)
        if self._run_id is None:
            raise RunAborted("this host has started no run since it claimed the device, so what "
                             "the device holds (state, average) was produced by another host or "
                             "before this claim: run it first", "foreign")
        if count != self._run_id:
            raise RunAborted(f"the device's last run (RUN_COUNT {count}) is not the one this host "
                             f"started (RUN_COUNT {self._run_id}): another host, a calibration or a "
                             "reboot came in between, so what the device holds is not this host's "
                             "result",
                             "foreign")
        if running:
            return  # a snapshot of this host's own run in progress, as asked
        code = _reg("STATUS").field("RUN_END").get(status)
        if code in (RunEnd.NONE, RunEnd.DONE) or (snapshot and code != RunEnd.FAULT):
            return
        try:
            name, why = RunEnd(code).name.lower(), RUN_END_WHY[RunEnd(code)]
        except (ValueError, KeyError):
            name, why = "unknown", f"RUN_END reads {code}, a code this host does not know"
        raise RunAborted(f"the run did not complete: {why}; its state and average cover only "
                         "part of it, so none is returned", name)

    def _check_run(self, status_words: np.ndarray, count_words: np.ndarray,
                   sat_words: np.ndarray) -> None:
        """After a run's WAIT: the run is this host's, ended whole, and hit no rail."""
        self._check_result(status_words, count_words)
        if int(status_words[0]) & _reg("STATUS").bit("SATURATED"):
            cells = np.flatnonzero(sat_words).tolist()
            raise DeviceSaturated(
                f"the run saturated: node voltage of cell(s) {cells[:10]}{'...' if len(cells) > 10 else ''} "
                f"hit the rails ±{self.vmax:g} V. The coupling is probably not positive definite "
                "(unstable dynamics), or A⁻¹b lies outside the rails — check the eigenvalues of A "
                "or scale b down. The next run clears the flag.", cells)

    def run(self, t: float, *, wait: bool = True, accumulate: bool = False) -> Any:
        """Run the dynamics for device time t (units of τ0). The accumulator restarts unless
        ``accumulate``; with ``wait`` the call returns when the run ends and raises
        DeviceSaturated if a rail was hit during this run (the same CTRL word that starts it
        clears the sticky flag, so an earlier run's saturation does not leak into this one)."""
        if not (np.isfinite(t) and t >= 0):
            raise ValueError(f"run time must be finite and >= 0, got {t}")
        ctrl = _reg("CTRL")
        ctrl = ctrl.bit("CLEAR_SAT") | ctrl.bit("RUN") | (0 if accumulate else ctrl.bit("CLEAR_ACC"))
        tx = self._start(ctrl, t)
        if not wait:
            return self._do(tx, lambda d: self._remember_run(d[2]))
        tx += self._wait_idle()
        return self._do(tx, lambda d: (self._remember_run(d[2]),
                                       self._check_run(d[4], d[5], d[6]))[0])

    def wait(self) -> Any:
        """Block until the current run ends. Raises DeviceSaturated if a rail was hit, and
        RunAborted if the run did not end whole or is not the one this host started."""
        if not self.token:
            raise NotOwner("waiting for a run needs ownership (the device parks only its "
                           "owner's WAITs): claim the device, or follow it on the event socket")
        return self._do(self._wait_idle(), lambda d: self._check_run(d[1], d[2], d[3]))

    def stop(self) -> Any:
        return self._do([wr("CTRL", [_reg("CTRL").bit("STOP")])])

    def clear_saturation(self) -> Any:
        return self._do([wr("CTRL", [_reg("CTRL").bit("CLEAR_SAT")])])

    # ---------------------------------------------------------------- calibration
    _CAL_READ = ("DEVICE_TIME", "STATUS", "CAL_RESIDUAL", "CAL_RESIDUAL_MAX", "CAL_TOLERANCE",
                 "CAL_TIME", "CAL_COUNT")

    def _require_calibration(self) -> None:
        if not self.calibration_capable:
            raise DeviceError("this device has no calibration routine (CAPS.CALIBRATION is 0)",
                              Status.ACCESS)

    def _run_calibration(self, bit: str) -> Any:
        """CTRL.CALIBRATE or CAL_CHECK in one packet; its cost is the change of DEVICE_TIME."""
        self._require_calibration()
        tx = [rd("DEVICE_TIME"), wr("CTRL", [_reg("CTRL").bit(bit)]),
              *[rd(n) for n in self._CAL_READ]]

        def decode(d: list) -> CalibrationReport:
            v = {n: decode_register(_reg(n), w) for n, w in zip(self._CAL_READ, d[2:])}
            spent = v["DEVICE_TIME"] - decode_register(_reg("DEVICE_TIME"), d[0])
            return CalibrationReport(
                valid=bool(v["STATUS"] & _reg("STATUS").bit("CAL_VALID")),
                residual=v["CAL_RESIDUAL"], residual_max=v["CAL_RESIDUAL_MAX"],
                tolerance=v["CAL_TOLERANCE"], device_time=spent,
                hardware_time_s=spent * self._static.get("timing", {}).get("tau0_s", 0.0),
                calibrated_at=v["CAL_TIME"], count=v["CAL_COUNT"])
        return self._do(tx, decode)

    def calibrate(self) -> Any:
        """Run the device's calibration routine (CTRL.CALIBRATE): offsets nulled, DIAG gains
        trimmed, CAL_VALID set when the residual is within CAL_TOLERANCE. Resets the state to 0
        (a following result needs a new run). Returns a CalibrationReport (residual offset,
        device time it took)."""
        return self._run_calibration("CALIBRATE")

    def check_calibration(self) -> Any:
        """The drift check (CTRL.CAL_CHECK): measure the residual offsets with the trims applied;
        CAL_VALID says whether they are within CAL_TOLERANCE. It does not re-measure the DIAG
        gain trims. Resets the state to 0."""
        return self._run_calibration("CAL_CHECK")

    @property
    def calibration_capable(self) -> bool:
        """CAPS.CALIBRATION: the device has the calibration routine."""
        return "calibration" in self._static["caps"]

    def calibration_valid(self) -> bool:
        """STATUS.CAL_VALID: the trims are valid (False on a device without calibration)."""
        if not self.calibration_capable:
            return False
        return bool(self.read("STATUS") & _reg("STATUS").bit("CAL_VALID"))

    def trims(self) -> dict[str, np.ndarray]:
        """The calibration trims per cell: offset (V/τ0, added to the bias) and DIAG gain."""
        self._require_calibration()
        return {"offset": self.read("OFFSET_TRIM", self.n_cells),
                "diag_gain": self.read("DIAG_TRIM", self.n_cells)}

    def load_trims(self, offset: Any, diag_gain: Any) -> Any:
        """Write saved trims back and validate them with a drift check (CAL_CHECK), which also
        puts them into the running configuration. Returns the check's CalibrationReport."""
        self._require_calibration()
        offset, gain = np.asarray(offset, float), np.asarray(diag_gain, float)
        for name, arr in (("offset", offset), ("diag_gain", gain)):
            if arr.shape != (self.n_cells,) or not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} trims must be {self.n_cells} finite values, got shape "
                                 f"{arr.shape}")
        if self._batch is not None:
            raise RuntimeError("load_trims() cannot run inside a batch (it reads the trim ranges)")
        fs_off, fs_gain = self.read("OFFSET_TRIM_FS"), self.read("DIAG_TRIM_FS")
        if np.any(np.abs(offset) > fs_off) or np.any(gain < 0) or np.any(gain >= fs_gain):
            raise ValueError(f"trims out of range: |offset| <= {fs_off:g}, 0 <= diag_gain < {fs_gain:g}")
        self._do([wr("OFFSET_TRIM", float_to_q31(offset, fs_off)),
                  wr("DIAG_TRIM", float_to_q31(gain, fs_gain))])
        return self.check_calibration()

    # ---------------------------------------------------------------- read-out
    def _snapshot(self, window: str) -> Any:
        def decode(d: list) -> np.ndarray:
            self._check_result(d[0], d[1], snapshot=True)
            return q31_to_float(d[2].view(np.int32), self.vmax)
        return self._do([*self._provenance(), rd(window, self.active)], decode)

    def state(self) -> Any:
        """Node voltages x of the active cells, through the ADC: a snapshot, also of a run in
        progress. Raises RunAborted if the last run is not one this host started (or faulted)."""
        return self._snapshot("STATE")

    def velocity(self) -> Any:
        """Loop currents v of the active cells (checked like ``state``)."""
        return self._snapshot("VELOCITY")

    def mean(self) -> Any:
        """Time average of x since the accumulator was cleared (the last run, by default).
        Raises if that run is still going, did not end whole, or is not this host's."""
        def decode(d: list) -> np.ndarray:
            self._check_result(d[0], d[1])
            if words_to_f64(int(d[2][0]), int(d[2][1])) <= 0:
                raise DeviceError("the accumulator is empty: run the device before reading the mean",
                                  Status.RANGE)
            return q31_to_float(d[3].view(np.int32), self.vmax)
        return self._do([*self._provenance(), rd("ACC_TIME"), rd("ACCUMULATOR", self.active)], decode)

    def samples(self, n: int, period: float = 1.0, *, burn_in: float = 0.0) -> np.ndarray:
        """n samples of x taken every ``period`` of device time (after ``burn_in``). Leaves
        SAMPLE_PERIOD at 0, so later runs do not keep filling the FIFO."""
        if n < 1 or not (np.isfinite(period) and period > 0):
            raise ValueError(f"need n >= 1 and period > 0, got n={n}, period={period}")
        if self._batch is not None:
            raise RuntimeError("samples() cannot run inside a batch (it may need several packets)")
        if burn_in > 0:
            self.run(burn_in)
        per_chunk = max(1, self._static["fifo_depth"] // self.active)
        out, done = [], 0
        ctrl = _reg("CTRL")
        while done < n:
            k = min(per_chunk, n - done)
            # RUN latches SAMPLE_PERIOD, so it is zeroed again right after, in the same packet
            start = self._start(ctrl.bit("CLEAR_FIFO") | ctrl.bit("CLEAR_SAT") | ctrl.bit("RUN"),
                                (k + 0.5) * period)
            tx = [wr_f32("SAMPLE_PERIOD", period), wr("SAMPLE_COUNT", [k]), *start,
                  wr_f32("SAMPLE_PERIOD", 0.0), *self._wait_idle(),
                  Transaction(Op.READ_NI, _win("SAMPLE_FIFO").base, (k * self.active,))]
            chunk = self._do(tx, lambda d: (self._remember_run(d[4]),
                                            self._check_run(d[7], d[8], d[9]),
                                            q31_to_float(d[10].view(np.int32), self.vmax))[2])
            out.append(chunk.reshape(k, self.active))
            done += k
        return np.concatenate(out)

    def solve_step(self, *, bias: Any = None, coupling: Any = None, lowrank: tuple | None = None,
                   t: float, burn_in: float = 0.0, readout: str = "mean") -> np.ndarray:
        """Upload (bias, coupling or low-rank factors), commit, run and read back — one packet."""
        with self.batch():
            if coupling is not None:
                self.load_coupling(coupling)
            if lowrank is not None:
                self.load_lowrank(*lowrank)
            if bias is not None:
                self.load_bias(bias)
            self.commit()
            if burn_in > 0:
                self.run(burn_in)
            self.run(t)
            out = self.mean() if readout == "mean" else self.state()
        return out.value


def _writes_owner(tx: list[Transaction]) -> bool:
    return any(t.op == Op.WRITE and t.addr == _reg("OWNER").address for t in tx)


def connect(url: str = "spawn://", *, timeout: float | None = None, retries: int | None = None,
            claim: bool = True, lease_ms: int = 30_000, wait_for_lease: float = 0.0,
            on_wait: Callable[[float], None] | None = None, keepalive: bool = True) -> ThermoDevice:
    """Open a device by URL: tcp://, ipc://, local://, spawn:// or a registered scheme.
    ``wait_for_lease``: seconds to wait for another host's lease to run out (see ``claim``).
    ``keepalive``: renew the lease from a thread while this host computes between calls (the
    lease then frees the device only when this process dies, freezes or loses the link)."""
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if retries is not None:
        options["retries"] = retries
    driver = open_driver(url, **options)
    try:
        dev = ThermoDevice(driver, claim=False, lease_ms=lease_ms, keepalive=keepalive)
        if claim:
            dev.claim(lease_ms, wait=wait_for_lease, on_wait=on_wait)
        return dev
    except BaseException:
        driver.close()
        raise
