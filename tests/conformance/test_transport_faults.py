"""Transport faults, against any device URL: a link that loses, garbles, stalls or drops.

Faults are injected between the driver base and the transport's link methods (``_send`` /
``_receive`` of every PacketDriver; ``_write`` / ``_read`` of a byte-stream driver), so the same
tests run over tcp://, ipc://, spawn://, uart:// or a vendor's scheme, and exercise the real
device on the other end: its reply cache, its NAKs, its resynchronisation. A driver passes when
every fault costs retries and time, never a wrong or doubled result, and ends in the right
typed error when the link does not come back. local:// has no link and is skipped.

Faults hit only packets sent from the test's own thread (the lease keep-alive thread's packets
pass untouched), so what a test counts is what it caused.
"""
from __future__ import annotations

import struct
import threading
import time
import zlib
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import pytest

import host
from host.drivers.base import PacketDriver
from host.drivers.stream import StreamDriver
from host.errors import LinkDown
from protocol import stream
from protocol.codec import Transaction, decode_reply, encode_request
from protocol.ops import Op
from protocol.regmap import REGMAP
from protocol.status import Status

SCRATCH = REGMAP.SCRATCH.address
U32 = struct.Struct("<I")
#: Per-attempt timeout while faults are injected: short, so a lost packet costs little.
FAULT_TIMEOUT_S = 1.0


@pytest.fixture()
def link(dev: host.ThermoDevice) -> Iterator[PacketDriver]:
    d = dev.driver
    if not isinstance(d, PacketDriver) or d.schemes == ("local",):
        pytest.skip("no link to fault: the driver is not a PacketDriver with a transport")
    saved = d.timeout, d.retries, d.link_rate
    d.timeout, d.retries = FAULT_TIMEOUT_S, 2
    try:
        yield d
    finally:
        d.timeout, d.retries, d.link_rate = saved
        for name in ("_send", "_receive", "_write", "_read"):
            d.__dict__.pop(name, None)  # drop any injected wrapper
        d._reset_link()


@pytest.fixture()
def stream_link(link: PacketDriver) -> StreamDriver:
    if not isinstance(link, StreamDriver):
        pytest.skip("byte-level faults need a byte-stream transport (a StreamDriver)")
    return link


@contextmanager
def inject(driver: Any, method: str, fault: Callable[..., Any], times: int = 1) -> Iterator[list[int]]:
    """Replace ``driver.method`` by ``fault(original, *args)`` for the next ``times`` calls made
    from this thread; yields a one-item list counting the calls that were faulted."""
    original = getattr(driver, method)
    me = threading.current_thread()
    hits = [0]

    def wrapper(*args: Any) -> Any:
        if threading.current_thread() is me and hits[0] < times:
            hits[0] += 1
            return fault(original, *args)
        return original(*args)

    setattr(driver, method, wrapper)
    try:
        yield hits
    finally:
        driver.__dict__.pop(method, None)


def counters(d: PacketDriver) -> dict[str, int]:
    return dict(vars(d.stats))


def grew(before: dict[str, int], d: PacketDriver) -> dict[str, int]:
    return {k: v - before[k] for k, v in vars(d.stats).items() if v != before[k]}


def transact(d: PacketDriver, tx: list[Transaction]) -> Any:
    with d.link:  # type: ignore[attr-defined]  # the lock ThermoDevice shares with its keep-alive
        return d.transact(tx)


def rmw(d: PacketDriver, and_mask: int, or_mask: int) -> int:
    reply = transact(d, [Transaction(Op.RMW, SCRATCH, (and_mask, or_mask))])
    assert reply.status == 0, reply.message
    return int(reply.data[0][0])


# ----------------------------------------------------------------------------- any transport
@pytest.mark.spec("HOST-2")
def test_a_lost_request_is_resent(dev, link):
    dev.write("SCRATCH", 0x1234)
    before = counters(link)
    with inject(link, "_send", lambda original, frames, deadline: None) as hits:  # never arrives
        assert dev.read("SCRATCH") == 0x1234
    assert hits == [1]
    assert grew(before, link).get("timeouts") == 1 and grew(before, link).get("retries") == 1


@pytest.mark.spec("RC-1", "HOST-2")
def test_a_lost_reply_does_not_execute_the_packet_twice(dev, link):
    """The device executed the RMW, its reply was lost: the resent packet is answered from the
    reply cache (old value 0x10), not executed again (which would answer 0x30)."""
    dev.write("SCRATCH", 0x10)

    def lose(original: Any, deadline: float) -> Any:
        original(deadline)
        raise TimeoutError("reply lost on the way back")

    with inject(link, "_receive", lose) as hits:
        assert rmw(link, 0xFFFFFFFF, 0x20) == 0x10
    assert hits == [1] and dev.read("SCRATCH") == 0x30
    assert rmw(link, 0, 0x01) == 0x30  # and the next packet is a new one


def test_a_board_replugged_within_the_timeout_is_found_again(dev, link):
    unplugged_until = time.monotonic() + 0.4

    def unplugged(original: Any, frames: Any, deadline: float) -> Any:
        if time.monotonic() < unplugged_until:
            raise LinkDown("board unplugged (injected)")
        return original(frames, deadline)

    dev.write("SCRATCH", 7)
    t0 = time.monotonic()
    with inject(link, "_send", unplugged, times=1000):
        assert dev.read("SCRATCH") == 7
    assert 0.4 <= time.monotonic() - t0 < FAULT_TIMEOUT_S * 3


def test_an_unplugged_board_is_device_unplugged_and_works_after_replug(dev, link):
    def unplugged(original: Any, frames: Any, deadline: float) -> Any:
        raise LinkDown("board unplugged (injected)")

    before = counters(link)
    t0 = time.monotonic()
    with inject(link, "_send", unplugged, times=1000):
        with pytest.raises(host.DeviceUnplugged, match="not there"):
            dev.read("MAGIC")
    waited = time.monotonic() - t0
    assert FAULT_TIMEOUT_S * 3 * 0.9 <= waited < FAULT_TIMEOUT_S * 3 + 2.0
    assert grew(before, link)["link_errors"] == 3 and not link.responsive
    assert dev.read("MAGIC") == REGMAP.meta["magic"] and link.responsive  # replugged


def test_a_silent_device_is_device_timeout_not_unplugged(dev, link):
    def silent(original: Any, deadline: float) -> Any:
        time.sleep(max(0.0, deadline - time.monotonic()))
        raise TimeoutError("silent (injected)")

    with inject(link, "_receive", silent, times=1000):
        with pytest.raises(host.DeviceTimeout) as err:
            dev.read("MAGIC")
    assert not isinstance(err.value, host.DeviceUnplugged)
    assert "3 attempts" in str(err.value)
    assert dev.read("MAGIC") == REGMAP.meta["magic"]


def test_a_slow_link_gets_its_transfer_time(dev, link):
    """A request that takes 0.5 s on the wire, with a 0.2 s timeout: declared at its rate, the
    link gets the transfer time on top of the timeout and succeeds on the first attempt."""
    words = np.arange(min(1024, dev.limits.max_register_ni_words), dtype=np.uint32)
    tx = [Transaction(Op.WRITE_NI, SCRATCH, (words.size,), words)]
    rate = 4 * words.size / 0.5  # bytes/s: the payload alone takes 0.5 s

    def slow(original: Any, frames: Any, deadline: float) -> Any:
        time.sleep(sum(memoryview(f).nbytes for f in frames) / rate)
        return original(frames, deadline)

    # a link declared slow already (a real serial line) keeps its own transfer time too
    link.timeout = 0.2
    link.link_rate = rate if not link.link_rate else 1 / (1 / rate + 1 / link.link_rate)
    before = counters(link)
    with inject(link, "_send", slow, times=1000):
        assert transact(link, tx).status == 0
    assert "retries" not in grew(before, link)
    assert dev.read("SCRATCH") == words[-1]


# ----------------------------------------------------------------------------- byte streams
@pytest.mark.spec("STR-3", "HOST-1")
def test_a_garbled_request_is_nakked_and_resent_at_once(dev, stream_link):
    dev.write("SCRATCH", 0xBEEF)
    before = counters(stream_link)
    state = {"garbled": False}

    def garble(original: Any, data: Any, deadline: float) -> Any:
        raw = bytearray(memoryview(data).cast("B"))
        if not state["garbled"] and len(raw) > stream.HEADER_BYTES + 8:
            state["garbled"] = True  # one bit of the body, past the header: its CRC fails
            raw[stream.HEADER_BYTES + (len(raw) - stream.HEADER_BYTES) // 2] ^= 0x04
        return original(bytes(raw), deadline)

    t0 = time.monotonic()
    with inject(stream_link, "_write", garble, times=1000):
        assert dev.read("SCRATCH") == 0xBEEF
    assert state["garbled"] and time.monotonic() - t0 < FAULT_TIMEOUT_S  # a NAK, not a timeout
    grown = grew(before, stream_link)
    assert grown.get("crc_errors") == 1 and "retries" not in grown  # repaired within the attempt


@pytest.mark.spec("HOST-1", "STR-1", "STR-6")
def test_a_garbled_reply_is_nakked_and_sent_again(dev, stream_link):
    """The host NAKs a damaged reply and the device sends it again: the (possibly large)
    request is not re-sent, and no attempt is spent."""
    dev.write("SCRATCH", 0x10)
    before = counters(stream_link)
    state = {"bytes": 0, "flipped": False}

    def garble(original: Any, deadline: float) -> Any:
        data = bytearray(original(deadline))
        if not state["flipped"] and state["bytes"] + len(data) > stream.HEADER_BYTES + 8:
            data[max(0, stream.HEADER_BYTES + 8 - state["bytes"])] ^= 0x01  # inside the body
            state["flipped"] = True
        state["bytes"] += len(data)
        return bytes(data)

    with inject(stream_link, "_read", garble, times=1000):
        assert rmw(stream_link, 0xFFFFFFFF, 0x20) == 0x10  # executed once, its reply twice
    grown = grew(before, stream_link)
    assert state["flipped"] and grown.get("crc_errors") == 1 and "retries" not in grown
    assert dev.read("SCRATCH") == 0x30


@pytest.mark.spec("STR-4")
def test_a_half_written_request_is_discarded_after_the_inter_byte_timeout(dev, stream_link):
    """The sender stops mid-frame (a cable glitch, a crashed writer): the device discards the
    partial frame after INTER_BYTE_TIMEOUT_S of silence and reads the next frame whole."""
    dev.write("SCRATCH", 99)
    state = {"first": True}

    def stall(original: Any, data: Any, deadline: float) -> Any:
        view = memoryview(data).cast("B")
        if state["first"] and len(view) > stream.HEADER_BYTES:
            # the header whole and part of the body, then nothing: only the inter-byte timeout
            # can tell the device that the frame will not be completed
            state["first"] = False
            original(view[:stream.HEADER_BYTES + 4], deadline)
            time.sleep(stream.INTER_BYTE_TIMEOUT_S + 0.3)
        return original(data, deadline)

    stream_link.timeout = 3.0
    before = counters(stream_link)
    with inject(stream_link, "_write", stall, times=1000):
        assert dev.read("SCRATCH") == 99
    assert not state["first"], "the request was not written in the expected pieces"
    grown = grew(before, stream_link)
    # without the timeout the device would read the re-sent frame as the rest of the first
    # one: a CRC error (a NAK), or silence until the attempt runs out
    assert "retries" not in grown and "crc_errors" not in grown


@pytest.mark.spec("STR-2")
def test_line_noise_between_frames_is_skipped(dev, stream_link):
    noise = np.random.default_rng(5).integers(0, 256, 2000, dtype=np.uint8).tobytes() + b"\xaaUT"
    dev.write("SCRATCH", 5)
    before = counters(stream_link)
    state = {"first": True}

    def noisy(original: Any, data: Any, deadline: float) -> Any:
        if state["first"]:
            state["first"] = False
            original(noise, deadline)
        return original(data, deadline)

    with inject(stream_link, "_write", noisy, times=1000):
        assert dev.read("SCRATCH") == 5
    assert "retries" not in grew(before, stream_link)


# ----------------------------------------------------------------------------- raw stream frames
def _open(d: StreamDriver, deadline: float) -> None:
    if not d._open_link:
        d._open(deadline)
        d._open_link = True


def _spec_frame(frames: list[bytes], kind: int = stream.KIND_MESSAGE) -> bytes:
    """A stream frame from the byte table of the spec, written here independently."""
    body = b"" if kind == stream.KIND_NAK else \
        U32.pack(len(frames)) + b"".join(U32.pack(len(f)) + f for f in frames)
    head = stream.SYNC + bytes([kind, 0, 0, 0]) + U32.pack(len(body))
    return head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body) if body else 0)


class _RawReader:
    """Reads whole stream frames off the link, checking every field of the byte table."""

    def __init__(self, d: StreamDriver) -> None:
        self.d, self.buf = d, bytearray()

    def _exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self.buf += self.d._read(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def frame(self, timeout: float = 5.0) -> tuple[int, list[bytes], bytes]:
        deadline = time.monotonic() + timeout
        head = self._exact(12, deadline)
        assert head[:4] == stream.SYNC, f"reply does not start with SYNC: {head[:4]!r}"
        assert head[5:8] == b"\0\0\0", "reserved bytes must be zero"
        (hcrc,) = U32.unpack(self._exact(4, deadline))
        assert hcrc == zlib.crc32(head), "HCRC of the reply does not match"
        body = self._exact(U32.unpack(head[8:12])[0], deadline)
        (bcrc,) = U32.unpack(self._exact(4, deadline))
        assert bcrc == (zlib.crc32(body) if body else 0), "BCRC of the reply does not match"
        frames, pos = [], 4
        for _ in range(U32.unpack(body[:4])[0] if body else 0):
            n = U32.unpack(body[pos:pos + 4])[0]
            frames.append(body[pos + 4:pos + 4 + n])
            pos += 4 + n
        assert pos == len(body) or not body, "reply body is not length-prefixed frames"
        return head[4], frames, head + U32.pack(hcrc) + body + U32.pack(bcrc)


@contextmanager
def raw_stream(d: StreamDriver) -> Iterator[_RawReader]:
    """The link to ourselves (keep-alive held off), opened, and reset afterwards."""
    with d.link:  # type: ignore[attr-defined]
        d._reset_link()
        _open(d, time.monotonic() + 5.0)
        try:
            yield _RawReader(d)
        finally:
            d._reset_link()


def _request(d: StreamDriver, tx: list[Transaction], owner: bool = False) -> tuple[int, list[bytes]]:
    d.seq += 1
    frames = encode_request(d.seq, d.cid, d.owner if owner else 0, tx)
    return d.seq, [bytes(memoryview(f)) for f in frames]


@pytest.mark.spec("STR-1")
def test_replies_are_stream_frames_of_the_byte_table(dev, stream_link):
    tx = [Transaction(Op.READ, REGMAP.MAGIC.address, (1,))]
    seq, frames = _request(stream_link, tx)
    with raw_stream(stream_link) as link:
        stream_link._write(_spec_frame(frames), time.monotonic() + 5)
        kind, reply, _ = link.frame()
    assert kind == stream.KIND_MESSAGE
    r = decode_reply(reply, tx)
    assert r.seq == seq and int(r.data[0][0]) == REGMAP.meta["magic"]


@pytest.mark.spec("STR-5")
def test_oversize_malformed_and_unknown_frames_are_answered_or_ignored(dev, stream_link):
    head = stream.SYNC + b"\x01\0\0\0" + U32.pack(0xFFFFFFF0)  # 4 GiB: refused unread
    oversize = head + U32.pack(zlib.crc32(head))
    body = U32.pack(3) + U32.pack(1) + b"x"  # announces 3 frames, holds 1
    head = stream.SYNC + b"\x01\0\0\0" + U32.pack(len(body))
    malformed = head + U32.pack(zlib.crc32(head)) + body + U32.pack(zlib.crc32(body))
    tx = [Transaction(Op.READ, SCRATCH, (1,))]
    dev.write("SCRATCH", 0x5151)
    seq, frames = _request(stream_link, tx)
    with raw_stream(stream_link) as link:
        deadline = time.monotonic() + 5
        stream_link._write(oversize, deadline)
        r = decode_reply(link.frame()[1])
        assert r.status == Status.TOO_LARGE and r.seq is None
        stream_link._write(malformed, deadline)
        r = decode_reply(link.frame()[1])
        assert r.status == Status.MALFORMED and r.seq is None
        stream_link._write(_spec_frame(frames, kind=0x42) + _spec_frame(frames), deadline)
        kind, reply, _ = link.frame()  # the unknown KIND got no answer: this is the request's
    r = decode_reply(reply, tx)
    assert kind == stream.KIND_MESSAGE and r.seq == seq and int(r.data[0][0]) == 0x5151


@pytest.mark.spec("STR-6")
def test_a_nak_from_the_host_gets_the_last_reply_again(dev, stream_link):
    tx = [Transaction(Op.READ, REGMAP.BOOT_ID.address, (1,))]
    _, frames = _request(stream_link, tx)
    with raw_stream(stream_link) as link:
        stream_link._write(_spec_frame(frames), time.monotonic() + 5)
        first = link.frame()[2]
        stream_link._write(_spec_frame([], kind=stream.KIND_NAK), time.monotonic() + 5)
        again = link.frame()[2]
    assert again == first


@pytest.mark.spec("STR-7")
def test_requests_are_served_while_an_earlier_one_is_parked(dev, stream_link):
    """A WAIT parks on SCRATCH; the next request on the same stream writes SCRATCH; both are
    answered, the writer first."""
    dev.write("SCRATCH", 0)
    wait_tx = [Transaction(Op.WAIT, SCRATCH, (0xFFFFFFFF, 0x77, 3000)),
               Transaction(Op.READ, SCRATCH, (1,))]
    write_tx = [Transaction(Op.WRITE, SCRATCH, (1,), np.array([0x77], dtype=np.uint32))]
    wseq, wait_frames = _request(stream_link, wait_tx, owner=True)
    sseq, write_frames = _request(stream_link, write_tx, owner=True)
    with raw_stream(stream_link) as link:
        stream_link._write(_spec_frame(wait_frames), time.monotonic() + 5)
        time.sleep(0.05)
        stream_link._write(_spec_frame(write_frames), time.monotonic() + 5)
        replies = [link.frame(), link.frame()]
    seqs = [decode_reply(frames).seq for _, frames, _ in replies]
    assert seqs == [sseq, wseq]
    r = decode_reply(replies[1][1], wait_tx)
    assert r.status == Status.OK and int(r.data[1][0]) == 0x77


@pytest.mark.spec("STR-4")
def test_a_frame_written_slowly_is_not_discarded(dev, stream_link):
    """Gaps shorter than INTER_BYTE_TIMEOUT between the bytes of one frame are a slow line,
    not a dead one."""
    dev.write("SCRATCH", 0x1717)
    tx = [Transaction(Op.READ, SCRATCH, (1,))]
    seq, frames = _request(stream_link, tx)
    data = _spec_frame(frames)
    with raw_stream(stream_link) as link:
        for k in range(0, len(data), max(1, len(data) // 4)):
            stream_link._write(data[k:k + max(1, len(data) // 4)], time.monotonic() + 5)
            time.sleep(stream.INTER_BYTE_TIMEOUT_S * 0.4)
        r = decode_reply(link.frame()[1], tx)
    assert r.seq == seq and int(r.data[0][0]) == 0x1717


@pytest.mark.spec("HOST-3")
def test_a_link_slower_than_the_lease_gets_packets_that_fit_the_lease(dev, link):
    """On a declared-slow link the host splits an upload into packets that each arrive within a
    third of the lease, so the lease (renewed by every whole packet) never runs out mid-upload,
    however long the upload takes in all."""
    n, caps = dev.n_cells, dev.info()["caps"]
    if "dense" not in caps:
        pytest.skip("the check uploads a dense coupling")
    rate, lease_ms = 8000.0, 300  # 8 kB/s; the upload below alone takes 0.4 s on the wire
    A = np.eye(n) + 0.01 * np.ones((n, n))

    def slow(original: Any, frames: Any, deadline: float) -> Any:
        time.sleep(sum(memoryview(f).nbytes for f in frames) / rate)
        return original(frames, deadline)

    link.link_rate, link.timeout = rate, 2.0
    saved = int(dev.lease_s * 1000)
    dev.claim(lease_ms)
    try:
        before = dev.stats.packets
        with inject(link, "_send", slow, times=1000):
            with dev.batch():
                dev.load_coupling(A)
                dev.load_bias(np.full(n, 0.1))
                dev.load_lowrank(np.ones((min(n, dev.max_rank), n)), np.eye(min(n, dev.max_rank)),
                                 np.ones(n))
        sent = dev.stats.packets - before
        assert sent >= 3, f"{sent} packet(s): the upload was not split for the lease"
        bits = dev.info()["dac_bits"]["coupling"]  # uploads are rounded to the DAC's grid
        np.testing.assert_allclose(dev.read("COUPLING", n * n), A.reshape(-1),
                                   atol=A.max() / (2 ** (bits - 1) - 1) + 1e-6)
    finally:
        dev.claim(saved)
