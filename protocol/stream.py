"""Byte-stream transport: the protocol's packets on a link without message boundaries.

A UART, a USB CDC-ACM port or a plain TCP stream carries bytes, may drop or garble them (a raw
UART), and has no notion of a message. Each protocol message (the multipart request or reply of
the message transport: msgpack header frame, then raw word frames) travels as one *stream
frame*:

    offset  size  field
    0       4     SYNC    0xAA 0x55 0x54 0x48 ("\\xaaUTH")
    4       1     KIND    0x01 MESSAGE, 0x15 NAK
    5       3     zero    reserved, must be 0
    8       4     LENGTH  u32 LE, bytes of BODY
    12      4     HCRC    CRC-32 (zlib / IEEE 802.3) of bytes 0..11
    16      L     BODY    u32 LE frame count F, then F × (u32 LE byte length, the bytes)
    16+L    4     BCRC    CRC-32 of BODY

A NAK has LENGTH 0 (its BCRC is CRC-32 of nothing, 0). The receiver scans for SYNC, trusts
LENGTH only after HCRC matches (a corrupted length can neither make it wait for bytes that will
never come nor swallow the next frame), and checks BCRC before the body is used. What each side
does on a bad frame is specified in docs/protocol.md ("Byte-stream transport").

This module is sans-IO: ``encode`` returns the buffers to write and ``StreamDecoder`` turns
received bytes into events, so the host's driver base, the firmware's stream server and tests
share one implementation whatever moves the bytes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

from protocol import limits

SYNC = b"\xaaUTH"
KIND_MESSAGE = 0x01
KIND_NAK = 0x15
HEADER = struct.Struct("<4sB3xII")  # SYNC, KIND, reserved, LENGTH, then HCRC separately
HEADER_BYTES = HEADER.size
TRAILER_BYTES = 4
U32 = struct.Struct("<I")
#: Most frames one message may hold: the header frame and one per transaction.
MAX_FRAMES = limits.MAX_TRANSACTIONS + 1
def max_body_bytes(lim: limits.Limits = limits.DEFAULT) -> int:
    """Largest BODY of a valid request to a device with these limits: the header frame, every
    word of a packet, and the count and length words. A longer LENGTH (with a valid HCRC) is
    refused unread. (A reply's bound has MAX_REPLY_WORDS in place of MAX_PACKET_WORDS.)"""
    return limits.MAX_HEADER_BYTES + 4 * lim.max_packet_words + 4 * (2 + lim.max_transactions)


MAX_BODY_BYTES = max_body_bytes()
#: A receiver discards a partly received frame when no byte of it arrived for this long: a
#: sender that stopped mid-frame (unplugged, reset) must not make it eat the next frame's bytes.
#: A sender keeps writing a frame without pauses longer than this.
INTER_BYTE_TIMEOUT_S = 0.5
#: Buffers at least this large are handed to the link as they are instead of being copied.
_DIRECT_BYTES = 64 * 1024


def _view(frame: Any) -> memoryview:
    v = memoryview(frame.bytes if hasattr(frame, "bytes") else frame)
    return v if v.format == "B" and v.ndim == 1 else v.cast("B")


def _header(kind: int, length: int) -> bytes:
    head = HEADER.pack(SYNC, kind, length, 0)[:12]
    return head + U32.pack(zlib.crc32(head))


def encode(frames: Sequence[Any]) -> list[Any]:
    """The buffers of one MESSAGE stream frame, in order; large payloads are not copied."""
    views = [_view(f) for f in frames]
    pieces: list[Any] = []
    small = bytearray(U32.pack(len(views)))
    crc = 0
    length = 0
    for v in views:
        small += U32.pack(v.nbytes)
        if v.nbytes >= _DIRECT_BYTES:
            crc = zlib.crc32(small, crc)
            crc = zlib.crc32(v, crc)
            length += len(small) + v.nbytes
            pieces += [bytes(small), v]
            small = bytearray()
        else:
            small += v
    crc = zlib.crc32(small, crc)
    length += len(small)
    pieces.append(bytes(small))
    return [_header(KIND_MESSAGE, length), *pieces, U32.pack(crc)]


def encode_nak() -> bytes:
    return _header(KIND_NAK, 0) + U32.pack(0)


def encoded_size(frames: Sequence[Any]) -> int:
    """Bytes ``encode(frames)`` puts on the link."""
    return HEADER_BYTES + 4 + sum(4 + _view(f).nbytes for f in frames) + TRAILER_BYTES


# ----------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class Message:
    frames: list[bytes]


@dataclass(frozen=True)
class Nak:
    pass


@dataclass(frozen=True)
class Dropped:
    """A frame that was received but cannot be used. ``reason``: "crc" (BCRC mismatch: the
    receiver of a request answers NAK), "body" (valid CRC, but the body is not F length-prefixed
    frames: the device answers MALFORMED), "too_large" (LENGTH above the limit: not read, the
    device answers TOO_LARGE), "kind" (unknown KIND, ignored). After either, the receiver looks
    for the next SYNC."""
    reason: str
    detail: str = ""


@dataclass
class StreamStats:
    frames: int = 0
    naks: int = 0
    crc_errors: int = 0          # BCRC mismatches
    header_errors: int = 0       # a SYNC whose HCRC did not match (noise, or a false SYNC)
    resync_bytes: int = 0        # bytes skipped while looking for SYNC
    expired: int = 0             # partial frames discarded after INTER_BYTE_TIMEOUT_S
    oversize: int = 0
    malformed: int = 0


@dataclass
class StreamDecoder:
    """Incremental receiver: ``feed(bytes) -> events``; ``expire()`` after a silent gap."""
    max_body: int = MAX_BODY_BYTES
    stats: StreamStats = field(default_factory=StreamStats)

    def __post_init__(self) -> None:
        self._buf = bytearray()          # bytes not yet consumed (header search / small frames)
        self._body: bytearray | None = None
        self._want = 0                   # bytes of BODY + BCRC still to come
        self._kind = 0

    @property
    def mid_frame(self) -> bool:
        """True while part of a frame (past a valid header) has been received."""
        return self._body is not None or self._buf.startswith(SYNC)

    def expire(self) -> bool:
        """Discard a partly received frame (the sender went silent mid-frame). True if there
        was one."""
        had = self.mid_frame
        if had:
            self.stats.expired += 1
        self._body, self._want = None, 0
        self.stats.resync_bytes += len(self._buf)
        self._buf.clear()
        return had

    def feed(self, data: Any) -> list[Message | Nak | Dropped]:
        events: list[Message | Nak | Dropped] = []
        view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
        pos = 0
        n = len(view)
        while pos < n or (self._body is None and len(self._buf) >= HEADER_BYTES):
            if self._body is not None:
                k = min(self._want, n - pos)
                self._body += view[pos:pos + k]
                self._want -= k
                pos += k
                if self._want == 0:
                    events.append(self._finish())
                continue
            self._buf += view[pos:n]
            pos = n
            if not self._header(events):
                break
        return events

    def _header(self, events: list) -> bool:
        """Find and check a header in _buf; True if progress was made."""
        buf = self._buf
        i = buf.find(SYNC)
        if i < 0:
            keep = len(SYNC) - 1  # a SYNC may straddle two reads
            drop = max(0, len(buf) - keep)
            self.stats.resync_bytes += drop
            del buf[:drop]
            return False
        if i:
            self.stats.resync_bytes += i
            del buf[:i]
        if len(buf) < HEADER_BYTES:
            return False
        sync, kind, length = HEADER.unpack_from(buf, 0)[:3]
        (hcrc,) = U32.unpack_from(buf, 12)
        if zlib.crc32(bytes(buf[:12])) != hcrc or buf[5:8] != b"\0\0\0":
            self.stats.header_errors += 1
            self.stats.resync_bytes += 1
            del buf[:1]  # not a frame start after all: look for the next SYNC
            return True
        del buf[:HEADER_BYTES]
        # A frame that cannot be taken is not skipped by its LENGTH (a hostile length could
        # make the receiver discard gigabytes): the receiver looks for the next SYNC instead.
        if kind not in (KIND_MESSAGE, KIND_NAK):
            events.append(Dropped("kind", f"unknown KIND {kind:#04x}"))
            return True
        if length > self.max_body:
            self.stats.oversize += 1
            events.append(Dropped("too_large", f"a frame of {length} bytes (limit {self.max_body})"))
            return True
        self._kind = kind
        self._body = bytearray()
        self._want = length + TRAILER_BYTES
        take = min(self._want, len(buf))
        self._body += buf[:take]
        del buf[:take]
        self._want -= take
        if self._want == 0:
            events.append(self._finish())
        return True

    def _finish(self) -> Message | Nak | Dropped:
        assert self._body is not None
        body, self._body = self._body, None
        (crc,) = U32.unpack_from(body, len(body) - TRAILER_BYTES)
        payload = memoryview(body)[:len(body) - TRAILER_BYTES]
        if zlib.crc32(payload) != crc:
            self.stats.crc_errors += 1
            return Dropped("crc", f"body CRC mismatch ({len(payload)} bytes)")
        self.stats.frames += 1
        if self._kind == KIND_NAK:
            self.stats.naks += 1
            return Nak()
        try:
            return Message(_split(payload))
        except ValueError as e:
            self.stats.malformed += 1
            return Dropped("body", str(e))


def _split(body: memoryview) -> list[bytes]:
    if len(body) < 4:
        raise ValueError("body shorter than its frame count")
    (count,) = U32.unpack_from(body, 0)
    if count > MAX_FRAMES:
        raise ValueError(f"body announces {count} frames (limit {MAX_FRAMES})")
    frames, pos = [], 4
    for i in range(count):
        if pos + 4 > len(body):
            raise ValueError(f"body ends inside the length of frame {i}")
        (n,) = U32.unpack_from(body, pos)
        pos += 4
        if pos + n > len(body):
            raise ValueError(f"frame {i} announces {n} bytes, {len(body) - pos} left in the body")
        frames.append(bytes(body[pos:pos + n]))
        pos += n
    if pos != len(body):
        raise ValueError(f"{len(body) - pos} bytes after the last frame")
    return frames
