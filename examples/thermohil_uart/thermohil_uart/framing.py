"""Length-prefixed framing: a multipart protocol message on a plain byte stream.

A ZeroMQ message keeps its frame boundaries; a serial line does not, so each message is sent as

    u32 LE  frame count F            (0 <= F <= MAX_TRANSACTIONS + 1: header + one frame per tx)
    F times:
        u32 LE  byte length L        (L <= MAX_FRAME_BYTES; the header frame <= MAX_HEADER_BYTES)
        L bytes                      (the frame exactly as protocol.codec produced it)

and the whole message is capped at MAX_HEADER_BYTES + 4 * MAX_WORDS_PER_PACKET bytes, the most
a valid request or reply can carry. The limits come from protocol.limits, so a corrupt or
hostile length is rejected before any memory is allocated for it. A stream cannot be resynced
after a bad length, so whoever sees one drops the link (the driver reconnects).

The stream is assumed reliable (TCP here; USB CDC-ACM in practice). A raw UART that can drop
bytes would add a sync word and a CRC32 per message — see the README.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Any, Sequence

from protocol import limits
from protocol.codec import ProtocolError
from protocol.status import Status

U32 = struct.Struct("<I")
MAX_FRAMES = limits.MAX_TRANSACTIONS + 1
MAX_MESSAGE_BYTES = limits.MAX_HEADER_BYTES + 4 * limits.MAX_WORDS_PER_PACKET
#: Frames at least this large are written straight from their buffer instead of being copied.
_DIRECT_WRITE_BYTES = 64 * 1024


class FramingError(ProtocolError):
    """The byte stream does not follow the framing; the link must be dropped."""


def _as_bytes(frame: Any) -> memoryview:
    """A flat byte view of a frame (bytes, or the numpy word arrays codec emits)."""
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def write_message(sock: socket.socket, frames: Sequence[Any], deadline: float | None = None) -> None:
    """Send one framed message; small pieces are coalesced, large payloads are not copied."""
    views = [_as_bytes(f) for f in frames]
    pending = bytearray(U32.pack(len(views)))
    for v in views:
        pending += U32.pack(v.nbytes)
        if v.nbytes >= _DIRECT_WRITE_BYTES:
            _send_all(sock, pending, deadline)
            _send_all(sock, v, deadline)
            pending = bytearray()
        else:
            pending += v
    if pending:
        _send_all(sock, pending, deadline)


def read_message(sock: socket.socket, deadline: float | None = None) -> list[bytearray] | None:
    """Read one framed message. None if the peer closed the link cleanly between messages.

    Raises TimeoutError when the deadline passes, ConnectionError when the peer vanishes
    mid-message, FramingError on a length outside the protocol limits.
    """
    first = _recv_exact(sock, U32.size, deadline, eof_ok=True)
    if first is None:
        return None
    (count,) = U32.unpack(first)
    if count > MAX_FRAMES:
        raise FramingError(Status.TOO_LARGE, f"message announces {count} frames (limit {MAX_FRAMES})")
    frames: list[bytearray] = []
    total = 0
    for i in range(count):
        length = _recv_exact(sock, U32.size, deadline)
        assert length is not None
        (n,) = U32.unpack(length)
        cap = limits.MAX_HEADER_BYTES if i == 0 else limits.MAX_FRAME_BYTES
        total += n
        if n > cap or total > MAX_MESSAGE_BYTES:
            raise FramingError(Status.TOO_LARGE, f"frame {i} announces {n} bytes (limit {cap}, "
                               f"{MAX_MESSAGE_BYTES} per message)")
        frame = _recv_exact(sock, n, deadline)
        assert frame is not None
        frames.append(frame)
    return frames


def _timeout_left(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    sock.settimeout(left)


def _send_all(sock: socket.socket, data: Any, deadline: float | None) -> None:
    view = memoryview(data)
    while view.nbytes:
        _timeout_left(sock, deadline)
        sent = sock.send(view)
        view = view[sent:]


def _recv_exact(sock: socket.socket, n: int, deadline: float | None,
                eof_ok: bool = False) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        _timeout_left(sock, deadline)
        k = sock.recv_into(view[got:])
        if k == 0:
            if eof_ok and got == 0:
                return None
            raise ConnectionResetError(f"link closed after {got} of {n} bytes")
        got += k
    return buf
