"""Transaction executor and device behaviour behind the register map.

A packet is checked whole before anything runs (op, address, access, ownership, value range):
one bad transaction rejects the packet and changes nothing. Errors only knowable while running
(BUSY, COMMIT of an invalid configuration, WAIT timeout, FIFO underflow) stop the packet at that
transaction; earlier ones stay applied, later ones answer ABORTED (as IPbus does).
A WAIT whose condition is false suspends the packet (``Pending``); other clients' packets run
meanwhile, and the packet resumes when the condition holds or its timeout passes.

Results belong to the run that produced them: a packet that carries a token speaks for that
token's lease, so every transaction of it (reads and WAITs included, and again after a WAIT
resumes) needs the token to be the live owner; and a run stops when the ownership of the host
that started it ends (STATUS.RUN_END says how every run ended). Cheap checks (ownership, sizes)
come before any per-word work, so nobody else's packet can stall the device.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from firmware_sim import calibration
from firmware_sim.converters import adc, dac, f32_to_word, word_to_f32
from firmware_sim.fifo import SampleFifo
from firmware_sim.lease import Lease
from firmware_sim.registers import RegisterFile
from firmware_sim.reply_cache import TOO_BIG_TO_KEEP, ReplyCache
from firmware_sim.scheduler import RunScheduler
from protocol.limits import DEFAULT as DEFAULT_LIMITS, Limits
from protocol.codec import Packet, ProtocolError, Reply, Transaction, decode_request
from protocol.ops import MUTATING, Op
from protocol.regmap import REGMAP, Register, Window, float_to_q31, resolve
from protocol.status import DESCRIPTIONS, RunEnd, Status

log = logging.getLogger("thermohil.firmware")

CTRL = REGMAP.CTRL
STATUS = REGMAP.STATUS
IRQ = REGMAP.IRQ_STATUS
CAPS = REGMAP.CAPS
_DYNAMIC = {"UPTIME_MS", "DEVICE_TIME", "STATUS", "CTRL", "IRQ_STATUS", "OWNER", "LEASE_LEFT_MS",
            "FIFO_LEVEL", "ACC_TIME", "EMU_DT", "RUN_COUNT", "CAL_TIME", "EMU_EXACT",
            "EMU_EXACT_TIME"}
_CORE_FIDELITY = ("EMU_SUBSTEP", "EMU_STABILITY")
INTEGRATORS = tuple(REGMAP.meta["emu_integrators"])
"""EMU_INTEGRATOR's values, in order (the core's names for them)."""
#: Cheapest a substep can be on any machine this runs on (s): with the per-word cost below, a
#: floor for the run-budget estimate before a configuration has been measured (it refuses only
#: runs that cannot possibly fit; the measured cost takes over after the first chunk).
STEP_COST_FLOOR_S = 2e-8
STEP_COST_PER_WORD_S = 1e-10


@dataclass
class Pending:
    """A packet suspended at a WAIT."""
    packet: Packet
    index: int = 0
    status: list[Status] = field(default_factory=list)
    data: list[np.ndarray | None] = field(default_factory=list)
    deadline: float | None = None
    message: str = ""
    parked: bool = False

    @property
    def key(self) -> tuple[bytes, int]:
        return self.packet.cid, self.packet.seq


def version_word() -> int:
    m, v = REGMAP.meta, REGMAP.VERSION
    word = v.field("PROTO_MAJOR").put(0, m["protocol_major"])
    word = v.field("PROTO_MINOR").put(word, m["protocol_minor"])
    return v.field("FIRMWARE").put(word, m["firmware_version"])


class TxError(Exception):
    def __init__(self, status: Status, message: str = "") -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Firmware:
    def __init__(self, core: Any, *, serial: int, seed: int, profile_id: int = 0,
                 limits: Limits = DEFAULT_LIMITS, emulator: bool = True,
                 params_type: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, calibrated: bool = False) -> None:
        self.core, self.clock = core, clock
        self.params_type = params_type or core.Params
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        p = core.profile
        self.boot_id = secrets.randbits(32) | 1
        self.modes = tuple(getattr(p, "modes", ("dense", "lowrank")))
        caps = ["ACCUMULATOR", "SAMPLE_FIFO"] + [c for c, mode in (
            ("DENSE", "dense"), ("LOWRANK", "lowrank"), ("UNDERDAMPED", "dense"),
            ("UNDERDAMPED", "lowrank"),
            ("CALIBRATION", "lowrank"), ("CAPACITIVE", "capacitive")) if mode in self.modes]
        caps += ["EMULATOR"] if emulator else []
        if limits.fifo_depth < core.n_cells:
            raise ValueError(f"FIFO_DEPTH {limits.fifo_depth} cannot hold one sample of "
                             f"{core.n_cells} cells")
        self.limits = limits
        consts = dict(N_CELLS=core.n_cells, MAX_RANK=core.max_rank, SERIAL=serial,
                      BOOT_ID=self.boot_id,
                      **{name.upper(): getattr(limits, name) for name in Limits.names()},
                      DAC_BITS=p.dac_bits_coupling | (p.dac_bits_bias << 8), ADC_BITS=p.adc_bits,
                      VMAX=float(np.float32(p.vmax)), EMU_PROFILE=profile_id, EMU_SEED=seed,
                      VERSION=version_word(),
                      TAU0=float(np.float32(p.tau0_s)), LINK_RATE=float(np.float32(p.link_bits_per_s)),
                      LINK_WORD_BITS=p.link_word_bits, DAC_RATE=float(np.float32(p.dac_words_per_s)),
                      ADC_RATE=float(np.float32(p.adc_words_per_s)), CAL_COST=calibration.COST,
                      CAPS=sum(CAPS.bit(c) for c in set(caps)),
                      BOOT_STATUS=STATUS.bit("CAL_VALID") if calibrated else 0,
                      BOOT_SUBSTEP=0.0)  # the reset configuration's substep: known after COMMIT
        for w in REGMAP.windows.values():  # only the dense COUPLING may outgrow its span
            if w.name != "COUPLING" and resolve(w.depth, consts) > w.span:
                raise ValueError(f"{w.name} needs {resolve(w.depth, consts)} words, more than its "
                                 f"span of {w.span}: too many cells or too high a rank")
        self.regs = RegisterFile(REGMAP, consts)
        self.emulator = emulator
        self.vmax = consts["VMAX"]
        self.fifo = SampleFifo(limits.fifo_depth)
        self.lease = Lease(self.regs.u32("LEASE_MS"), clock=clock)
        self.cache = ReplyCache(per_client=limits.reply_cache_depth)
        self.inflight: dict[tuple[bytes, int], Pending] = {}
        self.listeners: list[Callable[[str, dict], None]] = []
        #: Called (under the lock, must not block) whenever something a parked WAIT may be
        #: waiting for changed: a run ended, a sample was taken, a lease expired.
        self.wakers: list[Callable[[], None]] = []
        self.boot_time = clock()
        n = core.n_cells
        self.device_time = 0.0
        self.acc = np.zeros(n)
        self.acc_time = 0.0
        self.running = False
        self.run_owner = 0
        self.run_end = RunEnd.NONE
        self.run_count = 0
        self.run_wall_start = 0.0
        self.step_cost: float | None = None  # measured s per substep of the committed config
        self.run_left = self.run_elapsed = 0.0
        self.sample_period = 0.0
        self.sampling = False
        self.next_sample = 0.0
        self.samples_left = 0
        self.saturated = False
        self.irq_status = 0
        self.last_error = 0
        self.dirty = False
        self.active_cells = n
        self.faults: list[str] = []
        self.cal_valid = calibrated  # a chip whose identity trims are exact (the ideal one)
        self.cal_time = 0.0
        self.active_params: dict[str, Any] = {}
        if emulator:
            self._set_integrator(quiet=True)
        status = self._commit()
        if status != Status.OK:
            raise RuntimeError("reset configuration does not commit")
        self.regs.consts["BOOT_SUBSTEP"] = float(np.float32(core.dt))
        self.regs.set_f32("EMU_DT", core.dt)
        self.scheduler = RunScheduler(self)
        self.scheduler.start()

    # ================================================================ packets
    def submit(self, packet: Packet) -> Reply | Pending:
        """Start executing a packet. Returns the reply, or a Pending suspended at a WAIT.

        A packet whose (client, seq) was already answered gets the cached reply; one that is
        still suspended gets its Pending back (the caller re-routes the eventual reply).
        """
        with self.lock:
            key = (packet.cid, packet.seq)
            n = len(packet.tx)
            cached = self.cache.get(*key)
            parked = self.inflight.get(key)
            seen = cached[1] if cached is not None else _digest(parked.packet) \
                if parked is not None else None
            if seen is not None and not _repeats(packet, seen):
                return Reply(packet.seq, Status.SEQ_REUSED, [Status.SEQ_REUSED] * n, [None] * n,
                             self.boot_id, f"sequence number {packet.seq} was used before by this "
                             "client for a different packet; nothing was executed (number every "
                             "new packet afresh; re-send a packet only unchanged)")
            if cached is not None and cached[0] is TOO_BIG_TO_KEEP:
                return Reply(packet.seq, Status.TOO_LARGE, [Status.TOO_LARGE] * n, [None] * n,
                             self.boot_id, "this packet was executed once, but its reply was too "
                             "large to keep for a retry: read the data again with a new packet")
            if cached is not None:
                return cached[0]
            if parked is not None:
                return parked
            self._check_lease()
            statuses, messages = self._validate(packet)
            bad = [i for i, s in enumerate(statuses) if s != Status.OK]
            if bad:
                i = bad[0]
                self.last_error = int(statuses[i])
                reply = Reply(packet.seq, statuses[i],
                              [s if s != Status.OK else Status.ABORTED for s in statuses],
                              [None] * len(packet.tx), self.boot_id,
                              f"transaction {i}: {messages[i]}; packet not executed")
                return reply  # not cached: nothing ran, so a retry may simply be checked again
            self.lease.renew(packet.owner)  # a valid packet from the owner is its heartbeat
            return self._continue(Pending(packet))

    def handle(self, frames: list) -> Reply | Pending:
        """Decode an untrusted request and submit it; undecodable input gets an error reply."""
        try:
            packet = decode_request(frames, self.limits)
        except ProtocolError as e:  # the transport logs the rejection (it knows the peer)
            return Reply(e.seq, e.status, [], [], self.boot_id, e.message)
        try:
            return self.submit(packet)
        except Exception as e:  # a firmware bug must not take the device down
            log.exception("internal error validating packet %d", packet.seq)
            self.last_error = int(Status.INTERNAL)
            n = len(packet.tx)
            return Reply(packet.seq, Status.INTERNAL, [Status.INTERNAL] * n, [None] * n,
                         self.boot_id, f"internal error: {e!r}")

    def resume(self, pending: Pending) -> Reply | Pending:
        """Re-check a packet parked at a WAIT. (A parked WAIT is no heartbeat: a crashed host
        must not keep the lease alive through it.)"""
        with self.lock:
            return self._continue(pending)

    def abandon(self, pending: Pending) -> None:
        """Forget a parked packet whose client gave up (in-process use); it never resumes."""
        with self.lock:
            self.inflight.pop(pending.key, None)

    def execute(self, frames: list, timeout: float | None = None) -> Reply | Pending:
        """Run a request on the caller's thread (in-process use) until it completes or
        ``timeout`` passes (then the Pending is returned; re-sending the same request later
        picks the parked packet up again)."""
        out = self.handle(frames)
        limit = None if timeout is None else self.clock() + timeout
        with self.cond:
            while isinstance(out, Pending):
                if limit is not None and self.clock() > limit:
                    return out  # still parked; the caller may call execute again (reply cache)
                wait = 0.05 if out.deadline is None else max(0.0, min(0.05, out.deadline - self.clock()))
                self.cond.wait(wait)
                out = self.resume(out)
        return out

    def _continue(self, p: Pending) -> Reply | Pending:
        """Execute from where the packet stands; a firmware bug answers INTERNAL, never kills."""
        try:
            return self._step(p)
        except Exception as e:
            log.exception("internal error executing packet %d", p.packet.seq)
            self.inflight.pop(p.key, None)
            self.last_error = int(Status.INTERNAL)
            n = len(p.packet.tx)
            return Reply(p.packet.seq, Status.INTERNAL, [Status.INTERNAL] * n, [None] * n,
                         self.boot_id, f"internal error: {e!r}")

    def _step(self, p: Pending) -> Reply | Pending:
        tx = p.packet.tx
        while p.index < len(tx):
            t = tx[p.index]
            try:
                token = p.packet.owner
                if token and not self._writes_owner(t) and self.lease.live_owner() != token:
                    # the lease ended since validation (e.g. while the packet was parked); the
                    # device has noticed, so the consequences (the owner's run stopped, the
                    # LEASE_EXPIRED event) follow now, not at the next run chunk
                    self._check_lease()
                    raise self._token_error(token, self.lease.live_owner(),
                                            f"any more (at transaction {p.index})")
                if t.op == Op.WAIT:
                    if not self._wait_done(t, p):
                        self.inflight[p.key] = p
                        return p
                    result = None
                else:
                    result = self._execute(t, p.packet)
                p.status.append(Status.OK)
                p.data.append(result)
            except TxError as e:
                self.last_error = int(e.status)
                p.status.append(e.status)
                p.data.append(None)
                p.message = f"transaction {p.index}: {e.message or DESCRIPTIONS[e.status]}"
                rest = len(tx) - p.index - 1
                p.status += [Status.ABORTED] * rest
                p.data += [None] * rest
                break
            p.index += 1
        first_bad = next((s for s in p.status if s != Status.OK), Status.OK)
        reply = Reply(p.packet.seq, first_bad, p.status, p.data, self.boot_id, p.message)
        self.inflight.pop(p.key, None)
        if p.packet.owner:
            # only packets that act for a lease can change anything, so only theirs are kept
            # for retries: open reads are idempotent, and must not evict the owner's replies
            self.cache.put(*p.key, reply, _digest(p.packet))
        return reply

    def _wait_done(self, t: Transaction, p: Pending) -> bool:
        mask, value, timeout_ms = t.args
        reg = REGMAP.register_at(t.addr)
        assert reg is not None
        if (self._read_register(reg)[0] & mask) == value:
            p.deadline = None
            return True
        now = self.clock()
        if p.deadline is None:
            p.deadline = now + timeout_ms / 1000
        if now >= p.deadline:
            p.deadline = None
            raise TxError(Status.TIMEOUT, f"WAIT on {reg.name} (mask {mask:#x}, value {value:#x}) "
                          f"timed out after {timeout_ms} ms")
        if not p.parked:
            self._admit_parking(p, reg.name)
        return False

    def _admit_parking(self, p: Pending, what: str) -> None:
        """Parking is for the owner, and bounded: a parked packet costs a re-check each time
        the device changes, and nobody else may make the device carry thousands of them."""
        if not p.packet.owner:  # (a token that lost the lease was refused before the WAIT)
            p.deadline = None
            raise TxError(Status.TIMEOUT, f"WAIT on {what} is not true, and only packets carrying "
                          "the live owner token may park at a WAIT (others are checked once): "
                          "follow the device on the event socket instead")
        total = len(self.inflight)
        mine = sum(1 for cid, _ in self.inflight if cid == p.packet.cid)
        if total >= self.regs.u32("MAX_PARKED") or mine >= self.regs.u32("MAX_PARKED_PER_CLIENT"):
            p.deadline = None
            raise TxError(Status.BUSY, f"too many packets parked at a WAIT ({mine} of this client, "
                          f"{total} in all; limits MAX_PARKED_PER_CLIENT = "
                          f"{self.regs.u32('MAX_PARKED_PER_CLIENT')}, MAX_PARKED = "
                          f"{self.regs.u32('MAX_PARKED')})")
        p.parked = True

    # ================================================================ validation
    def _validate(self, packet: Packet) -> tuple[list[Status], list[str]]:
        owner = self.lease.live_owner()
        statuses, messages = [], []
        reply_words = 0
        for t in packet.tx:
            try:
                owner = self._check_tx(t, packet.owner, owner)
                reply_words += self._reply_words(t)
                self._check_reply_size(reply_words, packet.owner, owner)
                statuses.append(Status.OK)
                messages.append("")
            except TxError as e:
                statuses.append(e.status)
                messages.append(e.message or DESCRIPTIONS[e.status])
        return statuses, messages

    @staticmethod
    def _reply_words(t: Transaction) -> int:
        return t.count if t.op in (Op.READ, Op.READ_NI) else 1 if t.op == Op.RMW else 0

    def _check_reply_size(self, words: int, token: int, owner: int) -> None:
        mine = token != 0 and token == owner
        name = "MAX_REPLY_WORDS" if mine else "MAX_OPEN_REPLY_WORDS"
        if words > self.regs.u32(name):
            whose = "from the owner" if mine else "without the live owner token"
            raise TxError(Status.TOO_LARGE, f"the reply would carry {words} words; the limit is "
                          f"{self.regs.u32(name)} for packets {whose} ({name})")

    @staticmethod
    def _writes_owner(t: Transaction) -> bool:
        return t.op in (Op.WRITE, Op.WRITE_NI) and t.addr == REGMAP.OWNER.address

    def _token_error(self, token: int, owner: int, where: str) -> TxError:
        if owner == 0:
            why = "the device is free: this host's lease expired or was released"
        else:
            why = f"another host owns the device (lease {self.lease.left_ms()} ms left)"
        where = f" {where}" if where else ""
        return TxError(Status.NOT_OWNER, f"token {token:#010x} does not hold the lease{where}: "
                       f"{why}. A packet carrying a token acts for that lease, so nothing of it "
                       "runs (its reads would show another run's state); claim the device again")

    def _check_tx(self, t: Transaction, token: int, owner: int) -> int:
        """Static checks of one transaction; returns the owner after it (claims count)."""
        if t.op not in Op.__members__.values():
            raise TxError(Status.BAD_OP, f"unknown op code {t.op}")
        if token and token != owner and not self._writes_owner(t):
            raise self._token_error(token, owner, "")
        found = REGMAP.locate(t.addr)
        if found is None:
            raise TxError(Status.BAD_ADDRESS, f"nothing mapped at {t.addr:#010x}")
        entry, offset = found
        if entry.name.startswith("EMU_") and not self.emulator:
            raise TxError(Status.BAD_ADDRESS, f"{entry.name} exists only on the emulator")
        n = t.count
        if isinstance(entry, Window):
            depth = self.regs.depth[entry.name]
            if t.op in (Op.RMW, Op.WAIT):
                raise TxError(Status.ACCESS, f"{t.op.name} needs a register, {entry.name} is a memory")
            if entry.fifo != (t.op in (Op.READ_NI, Op.WRITE_NI)):
                raise TxError(Status.ACCESS, f"{entry.name}: use READ_NI on FIFO ports and "
                              "incrementing READ/WRITE on memories")
            if not entry.fifo and offset + n > depth:
                raise TxError(Status.BAD_ADDRESS, f"{entry.name} has {depth} words on this device; "
                              f"access to word {offset + n - 1}")
            writing = t.op in (Op.WRITE, Op.WRITE_NI)
            if writing and entry.access == "RO":
                raise TxError(Status.ACCESS, f"{entry.name} is read-only")
            if entry.fifo:  # popping is destructive: only the owner may drain the FIFO
                self._require_owner(token, owner, entry.name, verb="popping")
            if writing:
                self._require_owner(token, owner, entry.name)
                if self.regs.check_memory_words(entry, t.data) != Status.OK:
                    raise TxError(Status.RANGE, f"{entry.name}: code out of range")
            return owner
        # registers
        if offset != 0:
            raise TxError(Status.BAD_ADDRESS, f"{t.addr:#x} is the middle of {entry.name}")
        if t.op in (Op.READ_NI, Op.WRITE_NI) and n > self.regs.u32("MAX_REGISTER_NI_WORDS"):
            raise TxError(Status.TOO_LARGE, f"{t.op.name} of {n} words on register {entry.name} "
                          f"(limit MAX_REGISTER_NI_WORDS = {self.regs.u32('MAX_REGISTER_NI_WORDS')})")
        regs = self._span(t)
        if t.op == Op.WAIT:
            if entry.words != 1:
                raise TxError(Status.ACCESS, f"WAIT needs a one-word register, {entry.name} is not")
            return owner
        if t.op in (Op.READ, Op.READ_NI):
            return owner
        if t.op == Op.RMW:
            if entry.access != "RW" or entry.format != "u32" or entry.name == "OWNER":
                raise TxError(Status.ACCESS, f"RMW needs a plain RW u32 register, {entry.name} is not")
            self._require_owner(token, owner, entry.name)
            return owner
        # WRITE / WRITE_NI: ownership before any per-word work
        if not any(r.name == "OWNER" for r in regs):
            self._require_owner(token, owner, entry.name)
        words = [int(w) for w in t.data] if t.data is not None else []
        targets = [(r, k) for r in regs for k in range(r.words)] if t.op == Op.WRITE else [(entry, 0)] * n
        for (reg, k), w in zip(targets, words):
            if reg.access == "RO":
                raise TxError(Status.ACCESS, f"{reg.name} is read-only")
            if reg.name == "OWNER":
                owner = self._check_claim(token, owner, w)
                continue
            self._require_owner(token, owner, reg.name)
            if self.regs.check_register_word(reg, k, w) != Status.OK:
                raise TxError(Status.RANGE, f"{reg.name}: {self._show(reg, w)} outside "
                              f"[{reg.min}, {reg.max}]" if reg.min is not None or reg.max is not None
                              else f"{reg.name}: {self._show(reg, w)} is not a valid value")
        return owner

    def _span(self, t: Transaction) -> list[Register]:
        """Registers covered by an incrementing access starting at t.addr."""
        if t.op not in (Op.READ, Op.WRITE):
            reg = REGMAP.register_at(t.addr)
            if t.op in (Op.READ_NI, Op.WRITE_NI) and reg is not None and reg.words != 1:
                raise TxError(Status.ACCESS, f"non-incrementing access to two-word {reg.name}")
            return [reg] if reg else []
        regs, addr, end = [], t.addr, t.addr + t.count
        while addr < end:
            reg = REGMAP.register_at(addr)
            if reg is None:
                raise TxError(Status.BAD_ADDRESS, f"nothing mapped at {addr:#010x}")
            if addr + reg.words > end:
                raise TxError(Status.BAD_ADDRESS, f"access ends in the middle of {reg.name}")
            regs.append(reg)
            addr += reg.words
        return regs

    @staticmethod
    def _show(reg: Register, w: int) -> str:
        return f"{word_to_f32(w):g}" if reg.format == "f32" else str(w)

    def _require_owner(self, token: int, owner: int, what: str, verb: str = "writing") -> None:
        if owner == 0:
            raise TxError(Status.NOT_OWNER, f"{verb} {what} needs ownership: claim the device "
                          "first (write your token to OWNER)")
        if token != owner:
            raise TxError(Status.NOT_OWNER, f"{verb} {what}: the device is owned by another host "
                          f"(lease {self.lease.left_ms()} ms left)")

    def _check_claim(self, token: int, owner: int, value: int) -> int:
        if value == 0:
            if owner and token != owner:
                raise TxError(Status.NOT_OWNER, "only the owner can release the device")
            return 0
        if value != token:
            raise TxError(Status.RANGE, "OWNER must be written with the header's own token")
        if owner not in (0, token):
            raise TxError(Status.NOT_OWNER, f"device is owned by another host "
                          f"(lease {self.lease.left_ms()} ms left)")
        return token

    # ================================================================ execution
    def _execute(self, t: Transaction, packet: Packet) -> np.ndarray | None:
        entry, offset = REGMAP.locate(t.addr)  # type: ignore[misc]
        destructive = t.op in MUTATING or (t.op == Op.READ_NI and isinstance(entry, Window))
        if entry.name == "OWNER" and t.op in (Op.WRITE, Op.WRITE_NI):  # a WAIT may have passed
            self._check_claim(packet.owner, self.lease.live_owner(),
                              int(t.data[0] if t.op == Op.WRITE else t.data[-1]))
        elif destructive and self.lease.live_owner() != packet.owner:
            # ownership can change while a packet is parked at a WAIT
            verb = "popping" if t.op == Op.READ_NI else "writing"
            raise TxError(Status.NOT_OWNER, f"lost ownership before {verb} {entry.name}")
        if isinstance(entry, Window):
            if t.op == Op.READ_NI:
                if t.count > self.fifo.level:
                    raise TxError(Status.RANGE, f"SAMPLE_FIFO holds {self.fifo.level} words, "
                                  f"{t.count} requested")
                return self.fifo.pop(t.count).view(np.uint32)
            if t.op == Op.READ:
                return self._read_window(entry, offset, t.count).view(np.uint32)
            self._write_window(entry, offset, t.data.view(np.int32))
            return None
        if t.op == Op.READ:
            return np.array([w for r in self._span(t) for w in self._read_register(r)], dtype=np.uint32)
        if t.op == Op.READ_NI:
            return np.full(t.count, self._read_register(entry)[0], dtype=np.uint32)
        if t.op == Op.RMW:
            and_mask, or_mask = t.args
            old = self._read_register(entry)[0]
            new = (old & and_mask) | or_mask
            if self.regs.check_register_word(entry, 0, new) != Status.OK:
                raise TxError(Status.RANGE, f"RMW would set {entry.name} to {new}, out of range")
            self._write_register(entry, 0, new, packet.owner)
            return np.array([old], dtype=np.uint32)
        if t.op == Op.WRITE:
            k = 0
            for reg in self._span(t):
                for j in range(reg.words):
                    self._write_register(reg, j, int(t.data[k]), packet.owner)
                    k += 1
        else:  # WRITE_NI
            for w in t.data:
                self._write_register(entry, 0, int(w), packet.owner)
        return None

    # -- registers ---------------------------------------------------------------------------
    def _read_register(self, reg: Register) -> list[int]:
        if reg.name in _DYNAMIC:
            self._refresh(reg.name)
        return [self.regs.words[reg.address + k] for k in range(reg.words)]

    def _refresh(self, name: str) -> None:
        r = self.regs
        if name == "UPTIME_MS":
            r.set_u32(name, int((self.clock() - self.boot_time) * 1000))
        elif name == "DEVICE_TIME":
            r.set_f64(name, self.device_time)
        elif name == "ACC_TIME":
            r.set_f64(name, self.acc_time)
        elif name == "STATUS":
            r.set_u32(name, self.status_word())
        elif name == "CTRL":
            r.set_u32(name, 0)
        elif name == "IRQ_STATUS":
            r.set_u32(name, self.irq_status)
        elif name == "OWNER":
            self._check_lease()
            r.set_u32(name, self.lease.live_owner())
        elif name == "LEASE_LEFT_MS":
            r.set_u32(name, self.lease.left_ms())
        elif name == "FIFO_LEVEL":
            r.set_u32(name, self.fifo.level)
        elif name == "EMU_DT":
            r.set_f32(name, self.core.dt)
        elif name == "RUN_COUNT":
            r.set_u32(name, self.run_count)
        elif name == "CAL_TIME":
            r.set_f64(name, self.cal_time)
        elif name == "EMU_EXACT":
            r.set_u32(name, int(bool(getattr(self.core, "exact", False))))
        elif name == "EMU_EXACT_TIME":
            r.set_f64(name, float(getattr(self.core, "exact_time", 0.0)))

    def status_word(self) -> int:
        s = 0
        s |= STATUS.bit("RUNNING") if self.running else 0
        s |= STATUS.bit("SATURATED") if self.saturated else 0
        s |= STATUS.bit("FIFO_OVERRUN") if self.fifo.overrun else 0
        s |= STATUS.bit("SHADOW_DIRTY") if self.dirty else 0
        s |= STATUS.bit("CAL_VALID") if self.cal_valid else 0
        s |= STATUS.bit("OWNED") if self.lease.live_owner() else 0
        s = STATUS.field("RUN_END").put(s, int(self.run_end))
        return STATUS.field("LAST_ERROR").put(s, self.last_error)

    def _write_register(self, reg: Register, k: int, word: int, token: int) -> None:
        name = reg.name
        if name == "CTRL":
            self._ctrl(word, token)
        elif name == "IRQ_STATUS":
            self.irq_status &= ~word & 0xFFFFFFFF
        elif name == "OWNER":
            if word:
                self.lease.claim(word)
                log.info("device claimed by token %08x", word)
            else:
                self.lease.release()
                log.info("device released")
                self._stop_orphaned_run()
        else:
            self.regs.words[reg.address + k] = word
            if name == "LEASE_MS":
                self.lease.length_ms = word
                self.lease.renew(token)
            elif name == "EMU_SEED":
                self.core.reseed(word)
            elif name == "EMU_INTEGRATOR":
                self._set_integrator()
            elif name in _CORE_FIDELITY:
                self.core.set_fidelity(stability=self.regs.f32("EMU_STABILITY"),
                                       substep=self.regs.f32("EMU_SUBSTEP"))
            if reg.shadow:
                self.dirty = True

    def _set_integrator(self, quiet: bool = False) -> None:
        set_integrator = getattr(self.core, "set_integrator", None)
        if set_integrator is not None:
            set_integrator(INTEGRATORS[self.regs.u32("EMU_INTEGRATOR")])
            if not self.core.exact and not quiet:
                log.info("Euler-Maruyama integrates the committed configuration: %s",
                         self.core.exact_reason)

    def _ctrl(self, word: int, token: int) -> None:
        if word & CTRL.bit("COMMIT"):
            status = self._commit()
            if status != Status.OK:
                raise TxError(Status.RANGE, self._commit_error)
        if word & CTRL.bit("STOP") and self.running:
            self._finish_run(RunEnd.STOPPED)
        if word & CTRL.bit("RESET_STATE"):
            if self.running:
                raise TxError(Status.BUSY, "RESET_STATE while running (STOP first)")
            self.core.reset_state()
        if word & CTRL.bit("CLEAR_ACC"):
            self.acc[:] = 0.0
            self.acc_time = 0.0
        if word & CTRL.bit("CLEAR_FIFO"):
            self.fifo.clear()
        if word & CTRL.bit("CLEAR_SAT"):
            self.saturated = False
            self.core.clear_saturation()
        if word & CTRL.bit("CALIBRATE"):
            self._calibrate(check_only=False)
        if word & CTRL.bit("CAL_CHECK"):
            self._calibrate(check_only=True)
        if word & CTRL.bit("RUN"):
            self._start_run(token)

    # -- memories ----------------------------------------------------------------------------
    def _read_window(self, w: Window, offset: int, n: int) -> np.ndarray:
        sl = slice(offset, offset + n)
        if w.name == "STATE":
            return adc(self.core.read_adc_input()[sl], self.vmax, self.core.profile.adc_bits)
        if w.name == "VELOCITY":
            return adc(self.core.v[sl], self.vmax, self.core.profile.adc_bits)
        if w.name == "ACCUMULATOR":
            mean = self.acc[sl] / self.acc_time if self.acc_time > 0 else np.zeros(n)
            return adc(mean, self.vmax, self.core.profile.adc_bits)
        if w.name == "SAT_MAP":
            return self.core.sat[sl].astype(np.int32)
        return self.regs.mem[w.name][sl].copy()

    def _write_window(self, w: Window, offset: int, codes: np.ndarray) -> None:
        sl = slice(offset, offset + codes.size)
        if w.name in ("STATE", "VELOCITY"):
            if self.running:
                raise TxError(Status.BUSY, f"writing {w.name} while running (STOP first)")
            x, v = self.core.x.copy(), self.core.v.copy()
            target = x if w.name == "STATE" else v
            target[sl] = dac(codes, self.vmax, self.core.profile.dac_bits_bias)
            self.core.set_state(x, v)
            return
        self.regs.mem[w.name][sl] = codes
        if w.name in ("OFFSET_TRIM", "DIAG_TRIM"):  # not shadowed: used from the next COMMIT
            self.cal_valid = False  # trims from elsewhere: CAL_CHECK says whether they hold
        else:
            self.dirty = True

    # -- COMMIT: shadow bank -> analog core --------------------------------------------------
    _commit_error = ""

    def _commit(self) -> Status:
        try:
            values = self.shadow_values()
            self.core.program(self.params_type(**self._trimmed(values)))
        except ValueError as e:
            self._commit_error = f"COMMIT rejected, configuration unchanged: {e}"
            return Status.RANGE
        self.active_params = values
        self.active_cells = values["active"]
        self.dirty = False
        self.step_cost = None  # a new configuration: its cost per substep is measured afresh
        return Status.OK

    def shadow_values(self) -> dict[str, Any]:
        """The shadow bank as physical parameters, through the DACs (before the trims)."""
        r, n, p = self.regs, self.core.n_cells, self.core.profile
        for reg in REGMAP.registers.values():  # belt and braces: nothing out of range commits
            if reg.shadow and r.check_register_word(reg, 0, r.words[reg.address]) != Status.OK:
                raise ValueError(f"{reg.name} holds an out-of-range value")
        active, mode, rank = r.u32("ACTIVE_CELLS"), r.u32("COUPLING_MODE"), r.u32("RANK")
        kind = ("dense", "lowrank", "capacitive")[mode]
        if kind not in self.modes and not (kind == "lowrank" and rank == 0):  # (the boot state)
            raise ValueError(f"this chip has no {kind} coupling (COUPLING_MODE {mode}); it has: "
                             f"{', '.join(self.modes)}")
        bc, bb = p.dac_bits_coupling, p.dac_bits_bias

        def mem(name: str, count: int, bits: int) -> np.ndarray:
            w = REGMAP.windows[name]
            return dac(r.mem[name][:count], r.f32(w.scale), bits)

        A = J = H = None
        if mode in (0, 2):
            A = mem("COUPLING", active * active, bc).reshape(active, active)
        else:
            J = np.zeros((rank, n))
            if active == n:  # decoded straight into place: the largest window of a big chip
                w = REGMAP.windows["LOWRANK_J"]
                dac(r.mem["LOWRANK_J"][:rank * n], r.f32(w.scale), bc, out=J.reshape(-1))
            else:
                J[:, :active] = mem("LOWRANK_J", rank * active, bc).reshape(rank, active)
            H = mem("LOWRANK_H", rank * rank, bc).reshape(rank, rank)
        mobility = mem("MOBILITY", n, bc)
        if np.any(mobility[:active] <= 0):
            raise ValueError("MOBILITY must be > 0 on every active cell")
        return dict(active=active, coupling=("dense", "lowrank", "capacitive")[mode], A=A, J=J, H=H,
                    diag_codes=r.mem["DIAG"][:n].copy(), bias=mem("BIAS", n, bb), mobility=mobility,
                    friction=mem("FRICTION", n, bc), underdamped=r.mem["MODE"][:n] == 1,
                    temperature=r.f32("TEMPERATURE"), noise_gain=mem("NOISE_GAIN", n, bc))

    # -- calibration: trims between the registers and the core ----------------------------
    def _converters(self) -> calibration.Converters:
        return calibration.Converters(vmax=self.vmax, adc_bits=self.core.profile.adc_bits,
                                      bias_bits=self.core.profile.dac_bits_bias,
                                      trim_fs=self.regs.f32("OFFSET_TRIM_FS"))

    def _trims(self) -> tuple[np.ndarray, np.ndarray]:
        """(offset trim in V/τ0 as its DAC makes it, DIAG gain trim) per cell."""
        n = self.core.n_cells
        offset = calibration.quantize_trim(self.regs.physical("OFFSET_TRIM", n), self._converters())
        return offset, self.regs.physical("DIAG_TRIM", n)

    def _trimmed(self, values: dict[str, Any]) -> dict[str, Any]:
        """Physical parameters with the trims applied: offset trims add to the bias, DIAG codes
        are scaled by the gain trim (digitally, before the DAC)."""
        out = dict(values)
        offset, gain = self._trims()
        codes, bits = out.pop("diag_codes"), self.core.profile.dac_bits_coupling
        # the trims correct the DIAG path's gain (λ of the low-rank coupling); in capacitive mode
        # DIAG holds 1/L, which has no such path
        untrimmed = np.all(gain == 1.0) or out["coupling"] != "lowrank"
        trimmed = codes if untrimmed else calibration.apply_diag_trim(codes, gain, bits)
        out["lam"] = dac(trimmed, self.regs.f32("DIAG_FS"), bits)
        out["bias"] = out["bias"] + offset
        return out

    def _calibrate(self, check_only: bool) -> None:
        """CTRL.CALIBRATE / CAL_CHECK: measure on the core itself, then restore the committed
        configuration (state reset to 0, saturation cleared). Runs to completion under the lock:
        a few hundred τ0 of an uncoupled core is milliseconds."""
        if not self.regs.u32("CAPS") & CAPS.bit("CALIBRATION"):
            raise TxError(Status.ACCESS, "this chip has no calibration routine (CAPS.CALIBRATION)")
        if self.running:
            raise TxError(Status.BUSY, "calibration while running (STOP first)")
        r, core, n = self.regs, self.core, self.core.n_cells
        cal = calibration.Calibrator(core, self.params_type, self._converters())
        core.set_fidelity()  # the automatic substep, whatever EMU_SUBSTEP says (bounded cost)
        t0 = getattr(core, "time", None)
        try:
            offset, gain = self._trims()
            if check_only:
                residual = cal.residual_offset(offset)
                cost = calibration.OFFSET_WINDOW
            else:
                fs = 2 * calibration.GAIN_DIAG  # its own range, whatever the host's DIAG_FS
                diag_dac = lambda lam: dac(calibration.apply_diag_trim(  # noqa: E731
                    float_to_q31(lam, fs), np.ones(n), self.core.profile.dac_bits_coupling), fs,
                    self.core.profile.dac_bits_coupling)
                gain = cal.diag_gain(offset, diag_dac)  # first: the offsets cancel in x₊ − x₋
                trim, residual = cal.offsets(offset)    # last, so drift has least time to act
                r.mem["OFFSET_TRIM"][:] = float_to_q31(trim, r.f32("OFFSET_TRIM_FS"))
                r.mem["DIAG_TRIM"][:] = float_to_q31(1.0 / gain, r.f32("DIAG_TRIM_FS"))
                cost = calibration.COST
        finally:
            core.set_fidelity(stability=r.f32("EMU_STABILITY"), substep=r.f32("EMU_SUBSTEP"))
            core.program(self.params_type(**self._trimmed(self.active_params)))
            core.reset_state()
            core.clear_saturation()
            self.saturated = False
        if t0 is not None:
            cost = core.time - t0
        self.device_time += cost
        # the core's state is no run's result any more: a host that reads it must see that
        self.run_count = (self.run_count + 1) & 0xFFFFFFFF
        self.run_owner, self.run_end = 0, RunEnd.DONE
        rms, worst = float(np.sqrt(np.mean(residual**2))), float(np.max(np.abs(residual)))
        r.set_f32("CAL_RESIDUAL", rms)
        r.set_f32("CAL_RESIDUAL_MAX", worst)
        self.cal_valid = rms <= r.f32("CAL_TOLERANCE")
        if not check_only:
            self.cal_time = self.device_time
            r.set_u32("CAL_COUNT", r.u32("CAL_COUNT") + 1)
        log.info("%s: residual offset %.3g V/tau0 rms (max %.3g), %s", "calibration check"
                 if check_only else "calibration", rms, worst, "valid" if self.cal_valid else
                 f"beyond CAL_TOLERANCE {r.f32('CAL_TOLERANCE'):.3g}")

    # ================================================================ runs (scheduler side)
    def run_budget(self) -> float:
        """Wall seconds one run may take; a build without the emulator block stands for a board,
        where a run of t lasts t·τ0, so it has none."""
        return float(self.regs.f32("EMU_RUN_BUDGET")) if self.emulator else math.inf

    def step_cost_estimate(self) -> float:
        """Seconds per substep, at least a floor from the configuration's size: the cost measured
        on it (a running average over the chunks since COMMIT), once there is one."""
        eff = self.core.effective
        n, r = eff.active, (eff.J.shape[0] if eff.J is not None else 0)
        words = 2 * r * n + r * r + n if eff.coupling == "lowrank" else n * n
        floor = STEP_COST_FLOOR_S + STEP_COST_PER_WORD_S * words
        return max(floor, self.step_cost or 0.0)

    def _start_run(self, token: int) -> None:
        run_time = float(self.regs.f32("RUN_TIME"))
        substeps = run_time / self.core.dt
        # an exact run costs a few products per stretch, whatever its length: no estimate when
        # its first stretch is exact's (away from the rails); otherwise EM's substeps
        exact = getattr(self.core, "exact", False) and self.core.exact_safe(
            min(run_time, self.core.exact_horizon()))
        wall = substeps * self.step_cost_estimate() if self.emulator and not exact else 0.0
        if wall > self.run_budget():
            raise TxError(Status.RANGE, f"RUN of {run_time:g} tau0 needs {substeps:.3g} substeps of "
                          f"{self.core.dt:.3g} tau0, about {_duration(wall)} of wall time on the "
                          f"emulator; the budget EMU_RUN_BUDGET is {_duration(self.run_budget())}. "
                          "Shorten RUN_TIME, rescale a stiff coupling, raise EMU_SUBSTEP or "
                          "EMU_STABILITY, or raise EMU_RUN_BUDGET")
        self.run_left = run_time
        self.run_count = (self.run_count + 1) & 0xFFFFFFFF
        self.run_owner = token
        self.run_end = RunEnd.NONE
        self.run_wall_start = self.clock()
        self.run_elapsed = 0.0
        self.sample_period = self.regs.f32("SAMPLE_PERIOD")
        self.samples_left = self.regs.u32("SAMPLE_COUNT") or -1
        self.sampling = self.sample_period > 0
        self.next_sample = self.sample_period
        self.running = True
        self.cond.notify_all()
        if self.run_left <= 0:
            self._finish_run(RunEnd.DONE)

    def _finish_run(self, end: int) -> None:
        self.running = False
        self.run_left = 0.0
        self.run_end = end
        self._event("RUN_DONE", "run_done", device_time=self.device_time, end=int(end))
        self.cond.notify_all()

    def _stop_orphaned_run(self) -> None:
        """A run belongs to the host that started it: when that host's ownership ends (lease
        expiry, release), the run stops, so nobody later reads a half-run as a whole one."""
        if self.running and self.lease.live_owner() != self.run_owner:
            log.info("run stopped: its owner %08x no longer holds the lease", self.run_owner)
            self._finish_run(RunEnd.OWNER_LOST)

    def after_chunk(self, t: float, clamps: int, wall: float = 0.0, exact: bool = False) -> None:
        """Bookkeeping after the scheduler advanced the core by device time t (wall seconds;
        ``exact``: propagated exactly, which says nothing of a substep's cost)."""
        if t > 0 and wall > 0 and not exact:
            per_step = wall / max(1.0, t / self.core.dt)
            self.step_cost = per_step if self.step_cost is None else 0.7 * self.step_cost + 0.3 * per_step
        self._elapse(t)
        if clamps:
            self._saturation()
        if self.sampling and self.run_elapsed >= self.next_sample - 1e-9 * max(1.0, self.next_sample):
            self._take_samples(self.core.read_adc_input()[None, :], self.sample_period)
        self._after_advance()

    def after_samples(self, inputs: np.ndarray, period: float) -> None:
        """Bookkeeping after the scheduler advanced the core through len(inputs) sample periods
        at once (``inputs``: the ADC inputs at each sample time, as ``read_adc_input``): the
        same FIFO contents, flags and events as that many single samples, converted at once."""
        self._elapse(len(inputs) * period)
        if self.core.sat.any():  # a batch the core redid by EM clamped
            self._saturation()
        self._take_samples(inputs, period)
        self._after_advance()

    def _elapse(self, t: float) -> None:
        self.device_time += t
        self.acc_time += t
        self.run_elapsed += t
        self.run_left -= t

    def _saturation(self) -> None:
        """A cell reached a rail: the sticky flag, and the event on its edge."""
        if not self.saturated:
            self.saturated = True
            cells = np.flatnonzero(self.core.sat)[:16].tolist()
            self._event("SATURATED", "saturated", cells=cells, device_time=self.device_time)

    def _after_advance(self) -> None:
        if self.run_left <= 1e-12 * max(1.0, self.run_elapsed):
            self._finish_run(RunEnd.DONE)
        elif self.clock() - self.run_wall_start > self.run_budget():
            log.warning("run stopped at its wall-time budget (%.3g s)", self.run_budget())
            self._finish_run(RunEnd.BUDGET)
        else:
            self._check_lease()

    def _take_samples(self, inputs: np.ndarray, period: float) -> None:
        """Samples (k × cells of ADC inputs, one period apart) into the FIFO: those that fit,
        overrun and threshold events on their edges, one wake for a parked WAIT."""
        k, n = len(inputs), self.active_cells
        codes = adc(inputs[:, :n], self.vmax, self.core.profile.adc_bits)
        level, overrun = self.fifo.level, self.fifo.overrun
        if self.fifo.push_block(codes) < k and not overrun:  # events fire on the edge, once
            self._event("FIFO_OVERRUN", "fifo_overrun", level=self.fifo.level)
        thr = self.regs.u32("FIFO_THRESHOLD")
        if thr and level < thr <= self.fifo.level:
            self._event("FIFO_THRESHOLD", "fifo_threshold", level=self.fifo.level)
        self.next_sample += k * period
        self.samples_left -= k
        if self.samples_left == 0:
            self.sampling = False
        self._wake()

    # ================================================================ events, lease, faults
    def _wake(self) -> None:
        if self.inflight:  # nothing parked: nobody to wake (a sampling run would wake per sample)
            for wake in self.wakers:
                wake()

    def _event(self, irq: str, topic: str, **body: Any) -> None:
        bit = IRQ.bit(irq)
        self.irq_status |= bit
        self._wake()
        if self.regs.u32("IRQ_MASK") & bit:
            for listener in self.listeners:
                listener(topic, body)

    def _check_lease(self) -> None:
        self.lease.live_owner()
        if self.lease.expired:
            self.lease.expired = False
            log.info("lease expired; device is free")
            self._event("LEASE_EXPIRED", "lease", owner=0)
        self._stop_orphaned_run()

    def tick(self) -> None:
        """Periodic housekeeping from the host loop (lease expiry)."""
        with self.lock:
            self._check_lease()

    def fault(self, message: str) -> None:
        log.error("fault: %s", message)
        self.faults.append(message)
        self.last_error = int(Status.INTERNAL)
        if self.running:
            self._finish_run(RunEnd.FAULT)

    def shutdown(self) -> None:
        self.scheduler.shutdown()

    # convenience for tests and the local driver
    def boot_event(self) -> dict:
        return {"boot_id": self.boot_id, "serial": self.regs.u32("SERIAL"),
                "n_cells": self.core.n_cells, "uptime_ms": 0}


def _digest(packet: Packet) -> tuple[int, int]:
    """What a retry of an executed ``packet`` must match: the CRCs of its header and of all its
    bytes."""
    return packet.header_crc, packet.full_crc()


def _repeats(packet: Packet, seen: tuple[int, int]) -> bool:
    """Is ``packet`` the one ``seen`` was taken of? Headers first: the payload is read only when
    the header matches (an honest retry), so a stranger's big packet costs no pass over it."""
    return packet.header_crc == seen[0] and packet.full_crc() == seen[1]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


__all__ = ["Firmware", "Pending", "f32_to_word"]
