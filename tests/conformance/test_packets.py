"""Packets on the wire, against any device URL (docs/protocol.md §1, §2, §5, §6, §7, §15).

These checks speak the protocol underneath the host library: they craft request headers with
msgpack, keep several requests outstanding on the driver's link (its ``_send`` / ``_receive``,
with the link lock held so that the lease keep-alive thread cannot slip a packet in between),
and read every reply header exactly as the device sent it. Limits come from the device's own
limit registers (``dev.limits``), never from protocol/limits.py, so the same checks hold on a
small board. local:// executes each packet to its end on the caller's thread and cannot hold a
packet parked at a WAIT, so the checks that need one are skipped there.
"""
from __future__ import annotations

import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import msgpack
import numpy as np
import pytest
import zmq

import host
from host.thermo_device import rd, wr, wr_f32
from host.drivers.base import PacketDriver
from host.drivers.zmq_driver import ZmqDriver
from protocol import REGMAP, Op, Status, Transaction
from protocol.codec import encode_request

SCRATCH = REGMAP.SCRATCH.address
FIFO = REGMAP.SAMPLE_FIFO.base
LAST_ERROR = REGMAP.STATUS.field("LAST_ERROR")
REPLY_KEYS = {"v", "seq", "st", "tx", "boot", "msg"}
READ, WRITE, READ_NI, WRITE_NI, RMW, WAIT = (int(op) for op in Op)
#: Timeout of the WAITs that park (ms): short, so a failing test leaves nothing parked for long.
PARK_MS = 3000
#: Seconds to wait for a reply that is due now.
REPLY_S = 3.0
#: Sequence numbers for made-up client ids: far from any the driver's own counter reaches.
FOREIGN_SEQ = 1 << 62
#: SCRATCH values: the one that releases parked WAITs, and one it never takes.
GO, NEVER = 0x600D_0001, 0xDEAD_0002


def words(*values: int) -> bytes:
    """A payload frame: little-endian u32 words."""
    return struct.pack(f"<{len(values)}I", *values)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def wait_scratch(value: int, timeout_ms: int = PARK_MS, mask: int = 0xFFFFFFFF) -> Transaction:
    return Transaction(Op.WAIT, SCRATCH, (mask, value, timeout_ms))


def rmw_scratch(and_mask: int, or_mask: int) -> Transaction:
    return Transaction(Op.RMW, SCRATCH, (and_mask, or_mask))


def frame_bytes(frame: Any) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(memoryview(frame))


# ----------------------------------------------------------------------------- reading replies
@dataclass
class Got:
    """One reply as sent: its header map and its payload frames."""
    header: dict
    frames: list[bytes]

    @property
    def seq(self) -> int | None:
        return self.header["seq"]

    @property
    def st(self) -> int:
        return self.header["st"]

    @property
    def tx(self) -> list[int]:
        return self.header["tx"]

    def words(self) -> list[list[int]]:
        """Each payload frame as its words (a frame must be whole words)."""
        assert all(len(f) % 4 == 0 for f in self.frames), [len(f) for f in self.frames]
        return [np.frombuffer(f, dtype="<u4").tolist() for f in self.frames]


def check_header(h: Any, boot: int, version: list[int]) -> None:
    """PKT-2: exactly the six keys, of the types of the reply-header table; ``v`` the device's
    version, ``boot`` its BOOT_ID."""
    assert isinstance(h, dict) and set(h) == REPLY_KEYS, f"reply header keys: {h!r}"
    assert h["v"] == version and all(type(x) is int for x in h["v"]), h
    assert h["seq"] is None or (type(h["seq"]) is int and 0 <= h["seq"] < 1 << 63), h
    assert type(h["st"]) is int and h["st"] in set(Status) and h["st"] != Status.ABORTED, h
    assert type(h["tx"]) is list and all(type(s) is int and s in set(Status) for s in h["tx"]), h
    assert type(h["boot"]) is int and h["boot"] == boot, (h, boot)
    assert type(h["msg"]) is str, h


class Peer:
    """A link to the device on which several requests may be outstanding. Replies may arrive
    in another order than the requests (a parked packet answers later), so they are collected
    and picked by ``seq``."""

    def __init__(self, send: Callable[[list], None], receive: Callable[[float], list],
                 boot: int, version: list[int], close: Callable[[], None] = lambda: None) -> None:
        self._send, self._receive, self.close = send, receive, close
        self.boot, self.version = boot, version
        self.arrived: list[Got] = []      # received, not yet taken by a test
        self.outstanding: set[int] = set()

    def send(self, frames: list, seq: int) -> int:
        self._send(frames)
        self.outstanding.add(seq)
        return seq

    def _next(self, deadline: float) -> None:
        raw = [frame_bytes(f) for f in self._receive(deadline)]
        h = msgpack.unpackb(raw[0], raw=False, strict_map_key=False)
        check_header(h, self.boot, self.version)
        self.outstanding.discard(h["seq"])
        self.arrived.append(Got(h, raw[1:]))

    def has(self, seq: int) -> bool:
        """Has a reply with this seq arrived (among those received so far)?"""
        return any(g.seq == seq for g in self.arrived)

    def reply(self, seq: int, timeout: float = REPLY_S, *, nil: bool = False) -> Got:
        """The reply to ``seq`` (``nil``: or one whose seq is nil, for a header the device could
        not read)."""
        deadline = time.monotonic() + timeout
        while True:
            for g in self.arrived:
                if g.seq == seq or (nil and g.seq is None):
                    self.arrived.remove(g)
                    self.outstanding.discard(seq)
                    return g
            try:
                self._next(deadline)
            except TimeoutError:
                pytest.fail(f"no reply to seq {seq} within {timeout} s")

    def drain(self, timeout: float) -> None:
        """Wait for the replies still due, so that nothing is left parked or unread."""
        deadline = time.monotonic() + timeout
        while self.outstanding and time.monotonic() < deadline:
            try:
                self._next(deadline)
            except TimeoutError:
                break


class Wire:
    """The device's link, used below the host library, with the link lock held."""

    def __init__(self, dev: host.ThermoDevice) -> None:
        d = dev.driver
        if not isinstance(d, PacketDriver):
            pytest.skip("raw packets need a PacketDriver (the driver does not expose its link)")
        self.dev, self.d = dev, d
        self.limits = dev.limits
        self.boot = dev.read("BOOT_ID")
        ver = dev.read("VERSION")
        self.major = REGMAP.VERSION.field("PROTO_MAJOR").get(ver)
        self.minor = REGMAP.VERSION.field("PROTO_MINOR").get(ver)
        self.peers: list[Peer] = []

    def __enter__(self) -> Wire:
        self.d.link.acquire()  # type: ignore[attr-defined]
        d = self.d
        self.link = self._peer(lambda frames: d._send(frames, time.monotonic() + REPLY_S),
                               d._receive)
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            for p in self.peers:
                try:
                    p.drain(PARK_MS / 1000 + 1.0)
                except Exception:
                    if kind is None:
                        raise  # otherwise the test's own failure is the one to report
        finally:
            for p in self.peers:
                p.close()
            self.d.link.release()  # type: ignore[attr-defined]

    def _peer(self, send: Callable[[list], None], receive: Callable[[float], list],
              close: Callable[[], None] = lambda: None) -> Peer:
        p = Peer(send, receive, self.boot, [self.major, self.minor], close)
        self.peers.append(p)
        return p

    def dealer(self) -> Peer:
        """Another peer of the device's ROUTER: a DEALER socket of its own."""
        d = self.d
        if not isinstance(d, ZmqDriver):
            pytest.skip("needs the message transport (a tcp://, ipc:// or spawn:// ZmqDriver)")
        if d._curve is not None:
            pytest.skip("a second CURVE client would need keys of its own")
        sock = d.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(d.endpoint)

        def receive(deadline: float) -> list:
            while (left := deadline - time.monotonic()) > 0:
                if sock.poll(max(1, int(left * 1000))):
                    return sock.recv_multipart()
            raise TimeoutError("no reply before the deadline")

        return self._peer(lambda frames: sock.send_multipart(frames), receive,
                          lambda: sock.close(0))

    def next_seq(self) -> int:
        self.d.seq += 1
        return self.d.seq

    def frames(self, tx: list[Transaction], *, seq: int, own: int | None = None,
               cid: bytes | None = None) -> list:
        return encode_request(seq, self.d.cid if cid is None else cid,
                              self.d.owner if own is None else own, tx)

    def request(self, tx: list[Transaction], *, peer: Peer | None = None, seq: int | None = None,
                own: int | None = None, cid: bytes | None = None) -> int:
        """Send a packet (with the owner token unless ``own`` says otherwise); its seq."""
        seq = self.next_seq() if seq is None else seq
        return (peer or self.link).send(self.frames(tx, seq=seq, own=own, cid=cid), seq)

    def call(self, tx: list[Transaction], *, peer: Peer | None = None, **kw: Any) -> Got:
        return (peer or self.link).reply(self.request(tx, peer=peer, **kw))

    def peek(self, tx: list[Transaction], peer: Peer | None = None) -> Got:
        """Open reads (no token): nothing is stored in the reply cache, nothing renewed."""
        g = self.call(tx, peer=peer, own=0)
        assert g.st == Status.OK, g.header
        return g

    def scratch(self) -> int:
        return self.peek([rd("SCRATCH")]).words()[0][0]

    def last_error(self) -> int:
        return LAST_ERROR.get(self.peek([rd("STATUS")]).words()[0][0])

    def exchange(self, frames: list, seq: int) -> Got:
        """One crafted request and its reply (which may carry seq nil)."""
        self.link.send(frames, seq)
        return self.link.reply(seq, nil=True)

    def set_last_error_to_range(self) -> None:
        """A packet refused at validation with RANGE, so that LAST_ERROR holds a known code."""
        g = self.call([wr_f32("TEMPERATURE", -1.0)])
        assert g.tx == [Status.RANGE]


@pytest.fixture()
def wire(dev: host.ThermoDevice) -> Iterator[Wire]:
    with Wire(dev) as w:
        yield w


@pytest.fixture()
def parking(dev: host.ThermoDevice) -> None:
    if dev.driver.schemes == ("local",):
        pytest.skip("local:// executes each packet to its end: nothing can stay parked")


# ----------------------------------------------------------------------------- PKT-1: decode
@dataclass
class Ctx:
    seq: int
    cid: bytes
    own: int
    major: int
    minor: int
    new: int                    # what the packet's WRITE to SCRATCH would write
    limits: Any
    message_transport: bool     # ZeroMQ: no empty message, and frames within MAX_FRAME_BYTES


DROP = object()


def header(c: Ctx, **changes: Any) -> dict:
    """A good request header (one WRITE to SCRATCH), with ``changes`` (DROP: key left out)."""
    h: dict = {"v": [c.major, c.minor], "seq": c.seq, "cid": c.cid, "own": c.own,
               "tx": [[WRITE, SCRATCH, 1]]}
    for k, v in changes.items():
        if v is DROP:
            del h[k]
        else:
            h[k] = v
    return h


def request(c: Ctx, payload: list | None = None, **changes: Any) -> list:
    return [pack(header(c, **changes))] + ([words(c.new)] if payload is None else payload)


def reads(count: int, n: int = 1) -> list[list[int]]:
    return [[READ, SCRATCH, n]] * count


def _no_frames(c: Ctx) -> list:
    if c.message_transport:
        pytest.skip("a ZeroMQ message has at least one frame")
    return []


def _big_header(c: Ctx) -> list:
    tx = [[WRITE, SCRATCH, 1]] + reads(16_400)  # 4 bytes each: 65.6 KB of header
    frames = request(c, tx=tx)
    assert len(frames[0]) > 64 * 1024
    return frames


def _over_frame_header(c: Ctx) -> list:
    """A header just above MAX_FRAME_BYTES, where that is below 64 KiB (the smaller limit)."""
    if c.limits.max_frame_bytes >= 64 * 1024:
        pytest.skip("MAX_FRAME_BYTES is not below MAX_HEADER_BYTES: the 64 KiB case covers it")
    frames = request(c, tx=[[WRITE, SCRATCH, 1]] + reads(c.limits.max_frame_bytes // 4))
    assert c.limits.max_frame_bytes < len(frames[0]) < 64 * 1024
    return frames


def skip_unsendable(w: Wire, frames: list) -> None:
    """On the message transport libzmq drops a frame above MAX_FRAME_BYTES (the ROUTER's
    ZMQ_MAXMSGSIZE) and the peer gets no reply at all: such a request cannot be checked there."""
    if isinstance(w.d, ZmqDriver) and any(len(f) > w.limits.max_frame_bytes for f in frames):
        pytest.skip("a frame above MAX_FRAME_BYTES: libzmq drops it without a reply")


def _empty_ext(c: Ctx, code: bytes) -> list:
    h = pack(header(c, own=msgpack.ExtType(1, b"")))
    assert h.count(b"\xc7\x00\x01") == 1
    return [h.replace(b"\xc7\x00\x01", b"\xc7\x00" + code), words(c.new)]


def _per_tx(c: Ctx) -> int:
    """The most words one READ may ask for: MAX_PACKET_WORDS and MAX_FRAME_BYTES / 4."""
    return min(c.limits.max_packet_words, c.limits.max_frame_bytes // 4)


def _over_packet_words(c: Ctx) -> list[list[int]]:
    """READs of at most ``_per_tx`` words each whose sum exceeds MAX_PACKET_WORDS."""
    k = _per_tx(c)
    count = c.limits.max_packet_words // k + 1
    if count + 2 > c.limits.max_transactions:
        pytest.skip("the words of a packet cannot exceed MAX_PACKET_WORDS within MAX_TRANSACTIONS")
    return [[WRITE, SCRATCH, 1]] + reads(count, k)


M, T, NIL = Status.MALFORMED, Status.TOO_LARGE, None
SEQ = "seq"
#: name: (frames, status, whether the reply carries the request's seq or nil). The rows of the
#: decode-check table, and pairs of rows whose order the table fixes: the header's checks in
#: turn, then each transaction's (all of one transaction's before the next one's), then the
#: packet's totals.
DECODE_CASES: dict[str, Callable[[Ctx], tuple[list, Status, str | None]]] = {
    "no frames": lambda c: (_no_frames(c), M, NIL),
    "empty header frame": lambda c: ([b"", words(c.new)], M, NIL),
    "header over 64 KiB": lambda c: (_big_header(c), T, NIL),
    "header over MAX_FRAME_BYTES": lambda c: (_over_frame_header(c), T, NIL),
    "map over 32 entries": lambda c: (request(c, **{f"k{i}": 0 for i in range(28)}), T, NIL),
    "bin over 256 bytes": lambda c: (request(c, cid=bytes(257)), T, NIL),
    "str over 1024 bytes": lambda c: (request(c, **{"k" * 1025: 0}), T, NIL),
    "ext type": lambda c: (request(c, own=msgpack.ExtType(1, b"\x01")), T, NIL),
    "ext type of length 0": lambda c: (_empty_ext(c, b"\x01"), T, NIL),
    "timestamp ext of length 0": lambda c: (_empty_ext(c, b"\xff"), T, NIL),
    "not msgpack": lambda c: ([b"\xc1", words(c.new)], M, NIL),
    "trailing data": lambda c: ([pack(header(c)) + b"\xc0", words(c.new)], M, NIL),
    "integer map key": lambda c: ([pack({**header(c), 7: 0}), words(c.new)], M, NIL),
    "array, not a map": lambda c: ([pack([c.major, c.seq]), words(c.new)], M, NIL),
    "nil, not a map": lambda c: ([pack(None), words(c.new)], M, NIL),
    "unknown key": lambda c: (request(c, extra=1), M, SEQ),
    "unknown key before bad v": lambda c: (request(c, extra=1, v="2"), M, SEQ),
    "unknown key before wrong major": lambda c: (request(c, extra=1, v=[c.major + 1, 0]), M, SEQ),
    "v missing": lambda c: (request(c, v=DROP), M, SEQ),
    "v of one entry": lambda c: (request(c, v=[c.major]), M, SEQ),
    "v of three entries": lambda c: (request(c, v=[c.major, c.minor, 0]), M, SEQ),
    "v entry of 2^16": lambda c: (request(c, v=[c.major, 1 << 16]), M, SEQ),
    "v negative entry": lambda c: (request(c, v=[c.major, -1]), M, SEQ),
    "v a string": lambda c: (request(c, v=f"{c.major}.{c.minor}"), M, SEQ),
    "v of booleans": lambda c: (request(c, v=[True, False]), M, SEQ),
    "bad v before wrong major": lambda c: (request(c, v=[c.major + 1, 1 << 16]), M, SEQ),
    "wrong major": lambda c: (request(c, v=[c.major + 1, c.minor]), Status.BAD_VERSION, SEQ),
    "wrong major before missing seq": lambda c: (request(c, v=[c.major + 1, 0], seq=DROP),
                                                 Status.BAD_VERSION, NIL),
    "wrong major before bad cid": lambda c: (request(c, v=[c.major + 1, 0], cid=b"x"),
                                             Status.BAD_VERSION, SEQ),
    "seq missing": lambda c: (request(c, seq=DROP), M, NIL),
    "seq negative": lambda c: (request(c, seq=-1), M, NIL),
    "seq of 2^63": lambda c: (request(c, seq=1 << 63), M, NIL),
    "seq a boolean": lambda c: (request(c, seq=True), M, NIL),
    "seq a float": lambda c: (request(c, seq=float(c.seq)), M, NIL),
    "seq a string": lambda c: (request(c, seq=str(c.seq)), M, NIL),
    "cid missing": lambda c: (request(c, cid=DROP), M, SEQ),
    "cid of 15 bytes": lambda c: (request(c, cid=c.cid[:15]), M, SEQ),
    "cid of 17 bytes": lambda c: (request(c, cid=c.cid + b"\0"), M, SEQ),
    "cid a str": lambda c: (request(c, cid="0123456789abcdef"), M, SEQ),
    "own negative": lambda c: (request(c, own=-1), M, SEQ),
    "own of 2^32": lambda c: (request(c, own=1 << 32), M, SEQ),
    "own a boolean": lambda c: (request(c, own=True), M, SEQ),
    "own nil": lambda c: (request(c, own=None), M, SEQ),
    "tx missing": lambda c: (request(c, [], tx=DROP), M, SEQ),
    "tx a map": lambda c: (request(c, [], tx={"0": [READ, SCRATCH, 1]}), M, SEQ),
    "tx an int": lambda c: (request(c, [], tx=0), M, SEQ),
    "bad own before too many tx": lambda c: (
        request(c, [], own=-1, tx=reads(c.limits.max_transactions + 1)), M, SEQ),
    "too many transactions": lambda c: (
        request(c, [words(c.new)], tx=[[WRITE, SCRATCH, 1]] + reads(c.limits.max_transactions)),
        T, SEQ),
    "too many transactions before a bad one": lambda c: (
        request(c, [], tx=[[READ, SCRATCH]] + reads(c.limits.max_transactions)), T, SEQ),
    "transaction an int": lambda c: (request(c, tx=[[WRITE, SCRATCH, 1], 5]), M, SEQ),
    "transaction of one int": lambda c: (request(c, tx=[[WRITE, SCRATCH, 1], [READ]]), M, SEQ),
    "transaction with a negative int": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, -1]]), M, SEQ),
    "transaction with 2^32": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, 1 << 32, 1]]), M, SEQ),
    "transaction with a boolean": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, True]]), M, SEQ),
    "transaction with a string op": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], ["0", SCRATCH, 1]]), M, SEQ),
    "READ without n": lambda c: (request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH]]), M, SEQ),
    "READ with two arguments": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, 1, 1]]), M, SEQ),
    "WRITE with two arguments": lambda c: (request(c, tx=[[WRITE, SCRATCH, 1, 1]]), M, SEQ),
    "RMW with one argument": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [RMW, SCRATCH, 0]]), M, SEQ),
    "WAIT with two arguments": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [WAIT, SCRATCH, 0, 0]]), M, SEQ),
    "READ of 0 words": lambda c: (request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, 0]]), M, SEQ),
    "WRITE of 0 words": lambda c: (request(c, [b""], tx=[[WRITE, SCRATCH, 0]]), M, SEQ),
    "READ over MAX_PACKET_WORDS": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, c.limits.max_packet_words + 1]]),
        T, SEQ),
    "READ_NI over a frame's words": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ_NI, FIFO, _per_tx(c) + 1]]), T, SEQ),
    "WAIT over MAX_WAIT_MS": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [WAIT, SCRATCH, 0, 0, c.limits.max_wait_ms + 1]]),
        T, SEQ),
    "WRITE without its frame": lambda c: (request(c, []), M, SEQ),
    "second WRITE without its frame": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [WRITE_NI, SCRATCH, 1]]), M, SEQ),
    "frame of 3 bytes": lambda c: (request(c, [words(c.new)[:3]]), M, SEQ),
    "frame of 2 words for 1": lambda c: (request(c, [words(c.new, c.new)]), M, SEQ),
    "WRITE_NI frame of 1 word for 2": lambda c: (
        request(c, tx=[[WRITE_NI, SCRATCH, 2]]), M, SEQ),
    # the checks of one transaction all come before those of the next
    "transaction 1 too large before transaction 2 not a list": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, _per_tx(c) + 1], 5]), T, SEQ),
    "transaction 1 not a list before transaction 2 too large": lambda c: (
        request(c, tx=[[WRITE, SCRATCH, 1], 5, [READ, SCRATCH, _per_tx(c) + 1]]), M, SEQ),
    "missing frame of transaction 0 before a long WAIT": lambda c: (
        request(c, [], tx=[[WRITE, SCRATCH, 1], [WAIT, SCRATCH, 0, 0, c.limits.max_wait_ms + 1]]),
        M, SEQ),
    "long WAIT before a missing frame": lambda c: (
        request(c, [], tx=[[WAIT, SCRATCH, 0, 0, c.limits.max_wait_ms + 1], [WRITE, SCRATCH, 1]]),
        T, SEQ),
    "words over MAX_PACKET_WORDS": lambda c: (request(c, tx=_over_packet_words(c)), T, SEQ),
    "missing frame before packet words": lambda c: (
        request(c, tx=_over_packet_words(c) + [[WRITE, SCRATCH, 1]]), M, SEQ),
    "packet words before a leftover frame": lambda c: (
        request(c, [words(c.new), words(c.new)], tx=_over_packet_words(c)), T, SEQ),
    "leftover frame": lambda c: (request(c, [words(c.new), words(c.new)]), M, SEQ),
    "frame for a READ": lambda c: (
        request(c, [words(c.new), words(c.new)], tx=[[WRITE, SCRATCH, 1], [READ, SCRATCH, 1]]),
        M, SEQ),
}


@pytest.mark.spec("PKT-1", "VER-1")
@pytest.mark.parametrize("case", DECODE_CASES)
def test_a_request_that_fails_a_decode_check(dev, wire, case):
    """The first failing check answers with its status, an empty ``tx``, no frames and ``seq``
    as the table says. Nothing changes (SCRATCH, which the packet would write; LAST_ERROR) and
    the answer is not cached: a good packet with the same (cid, seq) then executes."""
    w = wire
    w.call([wr("SCRATCH", [0x5CA7C4])])
    w.set_last_error_to_range()
    seq = w.next_seq()
    c = Ctx(seq=seq, cid=w.d.cid, own=w.d.owner, major=w.major, minor=w.minor, new=0xBAD0BAD,
            limits=w.limits, message_transport=isinstance(w.d, ZmqDriver))
    frames, status, echo = DECODE_CASES[case](c)
    skip_unsendable(w, frames)
    g = w.exchange(frames, seq)
    assert (g.st, g.tx, g.frames) == (status, [], []), g.header
    assert g.seq == (seq if echo == SEQ else None), g.header
    follow = w.frames([rd("SCRATCH"), rd("STATUS"), wr("SCRATCH", [0x600D]), rd("SCRATCH")],
                      seq=seq)
    g = w.exchange(follow, seq)
    assert g.st == Status.OK and g.tx == [Status.OK] * 4, g.header  # not SEQ_REUSED: not cached
    scratch, status_word, after = g.words()
    assert scratch == [0x5CA7C4] and after == [0x600D]
    assert LAST_ERROR.get(status_word[0]) == Status.RANGE  # decode errors do not set it


@pytest.mark.spec("PKT-1", "PKT-2", "VER-1")
def test_the_edges_of_the_decode_checks_pass(dev, wire):
    """Values at the limits of the header table decode: seq 0 and 2^63 − 1 (echoed), `own`
    left out (0: open reads), any minor version, a WAIT of exactly MAX_WAIT_MS, exactly
    MAX_TRANSACTIONS transactions."""
    w = wire
    cid = secrets.token_bytes(16)
    for seq in (0, (1 << 63) - 1):
        h = {"v": [w.major, 0xFFFF], "seq": seq, "cid": cid, "tx": [[READ, SCRATCH, 1]]}
        g = w.exchange([pack(h)], seq)
        assert (g.seq, g.st, g.tx, len(g.frames)) == (seq, Status.OK, [Status.OK], 1), g.header
    seq = w.next_seq()
    tx = [[WAIT, SCRATCH, 0, 0, w.limits.max_wait_ms]] + reads(w.limits.max_transactions - 1)
    h = {"v": [w.major, w.minor], "seq": seq, "cid": w.d.cid, "own": w.d.owner, "tx": tx}
    skip_unsendable(w, [pack(h)])
    g = w.exchange([pack(h)], seq)
    assert g.st == Status.OK and g.tx == [Status.OK] * len(tx), g.header
    assert len(g.frames) == len(tx) - 1


# ----------------------------------------------------------------------------- VER-1
@pytest.mark.spec("VER-1", "PKT-1")
def test_major_version_is_checked_and_minor_is_not(dev, wire):
    w = wire
    w.call([wr("SCRATCH", [1])])
    majors = sorted({w.major + 1, 0xFFFF, *([w.major - 1] if w.major else [])} - {w.major})
    for major in majors:
        seq = w.next_seq()
        h = {"v": [major, w.minor], "seq": seq, "cid": w.d.cid, "own": w.d.owner,
             "tx": [[WRITE, SCRATCH, 1], [READ, SCRATCH, 1]]}
        g = w.exchange([pack(h), words(2)], seq)
        assert (g.st, g.seq, g.tx, g.frames) == (Status.BAD_VERSION, seq, [], []), g.header
        assert g.header["v"] == [w.major, w.minor]  # the reply speaks the device's version
    assert w.scratch() == 1  # nothing executed
    for k, minor in enumerate(sorted({0, w.minor + 1, 0xFFFF})):
        seq = w.next_seq()
        h = {"v": [w.major, minor], "seq": seq, "cid": w.d.cid, "own": w.d.owner,
             "tx": [[WRITE, SCRATCH, 1], [READ, SCRATCH, 1]]}
        g = w.exchange([pack(h), words(100 + k)], seq)
        assert (g.st, g.tx, g.words()) == (Status.OK, [Status.OK] * 2, [[100 + k]]), g.header
    assert w.scratch() == 102


# ----------------------------------------------------------------------------- PKT-2, PKT-3
@pytest.mark.spec("PKT-2")
def test_reply_header_of_every_kind_of_answer(dev, wire):
    """Exactly v, seq, st, tx, boot, msg with their types (checked on every reply this file
    reads), ``seq`` echoed, one ``tx`` status per transaction, ``boot`` = BOOT_ID."""
    w = wire
    g = w.call([rd("BOOT_ID"), rd("SCRATCH"), rd("MAGIC")])  # OK
    assert g.st == Status.OK and len(g.tx) == 3
    assert g.header["boot"] == g.words()[0][0] == w.boot
    g = w.call([rd("SCRATCH"), wr("N_CELLS", [1]), rd("SCRATCH")])  # refused at validation
    assert (g.st, g.tx) == (Status.ACCESS, [Status.ABORTED, Status.ACCESS, Status.ABORTED])
    g = w.call([rd("SCRATCH"), wait_scratch(NEVER, 0), rd("SCRATCH"), rd("MAGIC")])  # execution
    assert (g.st, len(g.tx)) == (Status.TIMEOUT, 4)
    seq = w.next_seq()
    g = w.exchange([pack({"v": [w.major, w.minor], "seq": seq, "cid": b"short", "tx": []})], seq)
    assert (g.st, g.seq, g.tx) == (Status.MALFORMED, seq, [])  # decode error, seq readable
    g = w.exchange([b"\x93\x01\x02"], w.next_seq())  # decode error, no seq
    assert (g.st, g.seq, g.tx) == (Status.MALFORMED, None, [])
    seq = w.next_seq()
    assert w.call([rd("SCRATCH")], seq=seq).st == Status.OK
    g = w.call([rd("SCRATCH"), rd("SCRATCH")], seq=seq)  # the same (cid, seq) reused
    assert (g.st, g.seq, g.tx) == (Status.SEQ_REUSED, seq, [Status.SEQ_REUSED] * 2)
    cid = secrets.token_bytes(16)
    for seq in (0, 1, 0x7F, 0x80, 0xFFFF, 0x1_0000_0000, (1 << 63) - 1):  # msgpack int widths
        g = w.call([rd("SCRATCH")], seq=seq, own=0, cid=cid)
        assert (g.seq, g.st) == (seq, Status.OK)
    g = w.call([])  # no transactions: nothing to report, but still a reply
    assert (g.st, g.tx, g.frames) == (Status.OK, [], [])


@pytest.mark.spec("PKT-3")
def test_one_frame_per_successful_read_in_order(dev, wire):
    """READ (register and memory), READ_NI and RMW each return one frame of exactly 4·n
    little-endian bytes, in transaction order; WRITE and WAIT return none."""
    w = wire
    k = min(4, dev.n_cells)
    codes = [0x01020304 * (i + 1) & 0xFFFFFFFF for i in range(k)]
    bias = REGMAP.BIAS.base
    staged = w.peek([Transaction(Op.READ, bias, (k,))]).words()[0]  # put back at the end
    tx = [wr("SCRATCH", [0x11223344]), rd("SCRATCH"),
          Transaction(Op.WRITE, bias, (k,), np.array(codes, dtype=np.uint32)),
          Transaction(Op.READ_NI, SCRATCH, (3,)), rmw_scratch(0x0000FFFF, 0xA5000000),
          wait_scratch(0xA5003344, 0), Transaction(Op.READ, bias, (k,)), rd("SCRATCH")]
    g = w.call(tx)
    assert g.st == Status.OK and g.tx == [Status.OK] * len(tx), g.header
    assert g.frames == [words(0x11223344), words(*[0x11223344] * 3), words(0x11223344),
                        words(*codes), words(0xA5003344)]
    # after an execution error: frames only for the reads that ran and succeeded
    g = w.call([rd("SCRATCH"), Transaction(Op.RMW, REGMAP.RANK.address, (0, 0xFFFFFFFF)),
                rd("SCRATCH"), rmw_scratch(0, 0)])
    assert g.tx == [Status.OK, Status.RANGE, Status.ABORTED, Status.ABORTED]
    assert g.frames == [words(0xA5003344)]
    g = w.call([rd("SCRATCH"), Transaction(Op.READ, 0x0F00, (1,))])  # refused: no frames
    assert g.tx == [Status.ABORTED, Status.BAD_ADDRESS] and g.frames == []
    w.call([Transaction(Op.WRITE, bias, (k,), np.array(staged, dtype=np.uint32))])


# ----------------------------------------------------------------------------- VAL-2, VAL-3
def _range_by_rmw(dev: host.ThermoDevice) -> Transaction:
    return Transaction(Op.RMW, REGMAP.RANK.address, (0, 0xFFFFFFFF))  # beyond MAX_RANK


def _timeout_at_once(dev: host.ThermoDevice) -> Transaction:
    return wait_scratch(NEVER, 0)


def _fifo_underflow(dev: host.ThermoDevice) -> Transaction:
    return Transaction(Op.READ_NI, FIFO, (dev.read("FIFO_LEVEL") + 1,))


@pytest.mark.spec("VAL-2", "PKT-3")
@pytest.mark.parametrize("failing, status", [
    (_range_by_rmw, Status.RANGE), (_timeout_at_once, Status.TIMEOUT),
    (_fifo_underflow, Status.RANGE)], ids=["rmw-range", "wait-timeout", "fifo-underflow"])
def test_an_execution_error_stops_the_packet_there(dev, failing, status):
    """Earlier transactions stay applied and their read data is returned; the failing one
    carries its status, every later one ABORTED."""
    bad = failing(dev)
    level = dev.read("FIFO_LEVEL")
    with Wire(dev) as w:
        w.call([wr("SCRATCH", [7])])
        g = w.call([wr("SCRATCH", [0xA]), rd("SCRATCH"), rmw_scratch(0xFFFFFFFF, 0xB0), bad,
                    wr("SCRATCH", [0xC]), rd("SCRATCH"), rmw_scratch(0, 0xD)])
        assert g.st == status, g.header
        assert g.tx == [Status.OK] * 3 + [status] + [Status.ABORTED] * 3
        assert g.frames == [words(0xA), words(0xA)]  # the READ, and the RMW's old value
        assert w.scratch() == 0xB0 | 0xA
        assert w.peek([rd("FIFO_LEVEL")]).words() == [[level]]


def _fifo_chunks(total: int, chunk: int) -> list[Transaction]:
    return [Transaction(Op.READ_NI, FIFO, (min(chunk, total - i),)) for i in range(0, total, chunk)]


@pytest.mark.spec("VAL-3")
def test_reply_size_limit_of_the_owner(dev, wire):
    """A packet with the live token may ask for MAX_REPLY_WORDS of read data and not one word
    more: TOO_LARGE at the transaction that crosses it, nothing executed. (FIFO pops pass every
    other validation check whatever their size, and the FIFO is empty: a packet that passed
    validation fails RANGE at its first pop instead. RMW counts one word and no packet word.)"""
    w, lim = wire, wire.limits
    reply, chunk = lim.max_reply_words, min(lim.max_packet_words, lim.max_frame_bytes // 4)
    pops = _fifo_chunks(reply - 1, chunk)
    if reply - 1 > lim.max_packet_words or len(pops) + 2 > lim.max_transactions:
        pytest.skip("MAX_REPLY_WORDS cannot be reached within MAX_PACKET_WORDS and "
                    "MAX_TRANSACTIONS on this device")
    w.call([wr("SCRATCH", [1])])
    assert w.peek([rd("FIFO_LEVEL")]).words() == [[0]]
    g = w.call([rmw_scratch(0, 2)] + pops + [rmw_scratch(0, 3)])  # MAX_REPLY_WORDS + 1
    assert g.st == Status.TOO_LARGE, g.header
    assert g.tx == [Status.ABORTED] * (1 + len(pops)) + [Status.TOO_LARGE] and g.frames == []
    assert w.scratch() == 1
    g = w.call([rmw_scratch(0, 2)] + pops)  # exactly MAX_REPLY_WORDS passes validation
    assert g.tx == [Status.OK, Status.RANGE] + [Status.ABORTED] * (len(pops) - 1), g.header
    assert g.frames == [words(1)] and w.scratch() == 2
    over_open = _fifo_chunks(lim.max_open_reply_words + 1, chunk)
    if lim.max_open_reply_words < reply and len(over_open) <= lim.max_transactions:
        g = w.call(over_open)  # the owner is not held to the open limit
        assert g.tx == [Status.RANGE] + [Status.ABORTED] * (len(over_open) - 1), g.header


@pytest.mark.spec("VAL-3")
def test_reply_size_limit_without_the_token(dev, wire):
    """A packet without the token may read MAX_OPEN_REPLY_WORDS and not one word more."""
    w, lim = wire, wire.limits
    ni = min(lim.max_register_ni_words, lim.max_packet_words, lim.max_frame_bytes // 4)
    polls = [Transaction(Op.READ_NI, SCRATCH, (min(ni, lim.max_open_reply_words - i),))
             for i in range(0, lim.max_open_reply_words, ni)]
    if lim.max_open_reply_words + 1 > lim.max_packet_words or len(polls) + 1 > lim.max_transactions:
        pytest.skip("MAX_OPEN_REPLY_WORDS + 1 cannot be asked for within MAX_PACKET_WORDS and "
                    "MAX_TRANSACTIONS with register reads on this device")
    g = w.call(polls + [rd("SCRATCH")], own=0)
    assert g.st == Status.TOO_LARGE, g.header
    assert g.tx == [Status.ABORTED] * len(polls) + [Status.TOO_LARGE] and g.frames == []


# ----------------------------------------------------------------------------- ORD-1, ORD-2
@pytest.mark.spec("ORD-1")
def test_a_parked_packet_does_not_hold_up_others(dev, parking, wire):
    w = wire
    w.call([wr("SCRATCH", [0])])
    parked = w.request([wait_scratch(GO), rd("SCRATCH"), rd("MAGIC")])
    g = w.call([rd("SCRATCH"), rmw_scratch(0xFFFFFFFF, 0x10)])  # served while it waits
    assert g.st == Status.OK and g.words() == [[0], [0]]
    assert not w.link.has(parked)
    g = w.call([wr("SCRATCH", [GO])])  # makes its condition true
    assert g.st == Status.OK
    t0 = time.monotonic()
    g = w.link.reply(parked)
    assert time.monotonic() - t0 < 1.0  # resumed, not run into its timeout
    assert (g.st, g.tx) == (Status.OK, [Status.OK] * 3), g.header
    assert g.words() == [[GO], [REGMAP.meta["magic"]]]


@pytest.mark.spec("ORD-1", "VAL-2")
def test_a_parked_wait_that_times_out(dev, parking, wire):
    """TIMEOUT at the WAIT when its timeout passes first; what ran before it stays applied,
    what follows is ABORTED."""
    w = wire
    w.call([wr("SCRATCH", [GO])])
    t0 = time.monotonic()
    parked = w.request([rmw_scratch(0xFFFFFFFF, 0x100), wait_scratch(NEVER, 400),
                        wr("SCRATCH", [7]), rd("SCRATCH")])
    g = w.call([rd("SCRATCH")])  # runs while the other one waits
    assert g.words() == [[GO | 0x100]] and not w.link.has(parked)
    g = w.link.reply(parked)
    assert time.monotonic() - t0 >= 0.38  # it waited (parked), not checked once
    assert g.st == Status.TIMEOUT, g.header
    assert g.tx == [Status.OK, Status.TIMEOUT, Status.ABORTED, Status.ABORTED]
    assert g.frames == [words(GO)]
    assert w.scratch() == GO | 0x100


@pytest.mark.spec("ORD-2")
def test_parking_limits(dev, parking, wire):
    """MAX_PARKED_PER_CLIENT per cid, MAX_PARKED in all; a WAIT beyond either fails BUSY (an
    execution error: the READ before it is returned)."""
    w, lim = wire, wire.limits
    per, total = lim.max_parked_per_client, lim.max_parked
    w.call([wr("SCRATCH", [0])])
    park = [wait_scratch(GO), rd("SCRATCH")]
    beyond = [rd("SCRATCH"), wait_scratch(GO), rd("SCRATCH")]
    parked = [w.request(park) for _ in range(per)]
    busy = [w.request(beyond)]  # one too many for this cid
    seq = FOREIGN_SEQ + secrets.randbits(32)
    count = per
    while count < total:  # other clients (same token) fill the device up to MAX_PARKED
        cid = secrets.token_bytes(16)
        for _ in range(min(per, total - count)):
            seq += 1
            parked.append(w.request(park, cid=cid, seq=seq))
            count += 1
    seq += 1
    busy.append(w.request(beyond, cid=secrets.token_bytes(16), seq=seq))  # one too many in all
    for s in busy:
        g = w.link.reply(s)
        assert g.st == Status.BUSY, g.header
        assert g.tx == [Status.OK, Status.BUSY, Status.ABORTED] and g.frames == [words(0)]
    assert not any(w.link.has(s) for s in parked)  # they were parked, not answered
    assert w.call([wr("SCRATCH", [GO])]).st == Status.OK
    for s in parked:
        g = w.link.reply(s)
        assert (g.st, g.tx, g.frames) == (Status.OK, [Status.OK] * 2, [words(GO)]), g.header


# ----------------------------------------------------------------------------- RC-2, RC-3
@pytest.mark.spec("RC-2")
def test_a_reused_seq_with_other_bytes_is_refused(dev, wire):
    w = wire
    seq = w.next_seq()
    original = [wr("SCRATCH", [0xA]), rd("SCRATCH")]
    first = w.exchange(w.frames(original, seq=seq), seq)
    assert first.st == Status.OK and first.frames == [words(0xA)]
    w.set_last_error_to_range()
    variants = {
        "payload differs": w.frames([wr("SCRATCH", [0xB]), rd("SCRATCH")], seq=seq),
        "header differs": w.frames([wr("SCRATCH", [0xB])], seq=seq),
        "no token": w.frames([wr("SCRATCH", [0xB]), rd("SCRATCH"), rd("SCRATCH")], seq=seq, own=0),
        "more transactions": w.frames(original + [rd("MAGIC")], seq=seq),
    }
    for name, frames in variants.items():
        n = len(msgpack.unpackb(frames[0])["tx"])
        g = w.exchange(frames, seq)
        assert (g.seq, g.st, g.tx, g.frames) == \
            (seq, Status.SEQ_REUSED, [Status.SEQ_REUSED] * n, []), (name, g.header)
    assert w.scratch() == 0xA and w.last_error() == Status.RANGE  # nothing executed
    again = w.exchange(w.frames(original, seq=seq), seq)  # the stored reply stays
    assert (again.header, again.frames) == (first.header, first.frames)
    assert w.scratch() == 0xA


@pytest.mark.spec("RC-2")
def test_a_reused_seq_of_a_parked_packet_is_refused(dev, parking, wire):
    w = wire
    w.call([wr("SCRATCH", [0])])
    seq = w.request([wait_scratch(GO), rd("SCRATCH")])
    g = w.exchange(w.frames([wr("SCRATCH", [GO])], seq=seq), seq)  # would release it if run
    assert (g.st, g.tx, g.frames) == (Status.SEQ_REUSED, [Status.SEQ_REUSED], []), g.header
    assert w.scratch() == 0 and not w.link.has(seq)  # still parked
    assert w.call([wr("SCRATCH", [GO])]).st == Status.OK
    g = w.link.reply(seq)
    assert (g.st, g.frames) == (Status.OK, [words(GO)]), g.header


@pytest.mark.spec("RC-3")
def test_a_repeat_of_a_parked_packet_is_not_executed_again(dev, parking, wire):
    """The packet starts a run (RUN_TIME 0, so RUN_COUNT counts each execution) and parks. Its
    byte-for-byte repeat joins it: one execution, one reply, sent to the latest copy (on the
    message transport: to the other socket)."""
    w = wire
    run_time = w.peek([rd("RUN_TIME")]).words()[0]  # put back at the end
    w.call([wr_f32("RUN_TIME", 0.0), wr("SCRATCH", [0])])
    runs = w.peek([rd("RUN_COUNT")]).words()[0][0]
    seq = w.next_seq()
    frames = w.frames([wr("CTRL", [REGMAP.CTRL.bit("RUN")]), wait_scratch(GO), rd("RUN_COUNT"),
                       rd("SCRATCH")], seq=seq)
    w.link.send(frames, seq)
    assert w.peek([rd("RUN_COUNT")]).words() == [[runs + 1]]  # ran up to its WAIT
    other = w.dealer() if isinstance(w.d, ZmqDriver) and w.d._curve is None else w.link
    other.send(frames, seq)  # the repeat, byte for byte
    g = w.peek([rd("RUN_COUNT"), rd("SCRATCH")], peer=other)  # the repeat has been handled
    assert g.words() == [[runs + 1], [0]]
    assert not other.has(seq) and not w.link.has(seq)  # no answer yet: it is still parked
    assert w.call([wr("SCRATCH", [GO])]).st == Status.OK
    g = other.reply(seq)
    assert (g.st, g.tx) == (Status.OK, [Status.OK] * 4), g.header
    assert g.words() == [[runs + 1], [GO]]
    w.peek([rd("MAGIC")], peer=other)  # anything sent before this reply has arrived now
    w.peek([rd("MAGIC")])
    assert not other.has(seq) and not w.link.has(seq)  # one reply, to the latest copy only
    assert w.peek([rd("RUN_COUNT")]).words() == [[runs + 1]]
    w.link.outstanding.discard(seq)  # the first copy gets no reply: nothing to wait for
    w.call([wr("RUN_TIME", run_time)])


# ----------------------------------------------------------------------------- MSG-1
@pytest.mark.spec("MSG-1")
def test_each_reply_goes_to_the_peer_that_sent_the_request(dev, wire):
    """Two DEALERs of their own interleave requests with the same seqs; each gets exactly the
    replies to its own requests, a parked one included."""
    w = wire
    a, b = w.dealer(), w.dealer()
    cid_a, cid_b = secrets.token_bytes(16), secrets.token_bytes(16)
    w.call([wr("SCRATCH", [0])])
    rounds = 6
    for seq in range(1, rounds + 1):  # A asks seq reads of MAGIC, B seq + 1 reads of BOOT_ID
        w.request([rd("MAGIC")] * seq, peer=a, seq=seq, own=0, cid=cid_a)
        w.request([rd("BOOT_ID")] * (seq + 1), peer=b, seq=seq, own=0, cid=cid_b)
    for seq in range(1, rounds + 1):
        g = a.reply(seq)
        assert g.tx == [Status.OK] * seq and g.words() == [[REGMAP.meta["magic"]]] * seq
        g = b.reply(seq)
        assert g.tx == [Status.OK] * (seq + 1) and g.words() == [[w.boot]] * (seq + 1)
    parked = w.request([wait_scratch(GO), rd("SCRATCH")], peer=a, seq=rounds + 1, cid=cid_a)
    w.peek([rd("SCRATCH")], peer=a)  # A's WAIT has been handled: it is parked
    assert not a.has(parked)
    g = w.call([wr("SCRATCH", [GO])], peer=b, seq=rounds + 1, cid=cid_b)  # B releases it
    assert (g.tx, g.frames) == ([Status.OK], [])
    g = a.reply(parked)
    assert (g.tx, g.frames) == ([Status.OK] * 2, [words(GO)])
    w.peek([rd("MAGIC")], peer=a)
    w.peek([rd("MAGIC")], peer=b)
    w.peek([rd("MAGIC")])
    assert a.arrived == b.arrived == w.link.arrived == []  # nobody got anyone else's reply

