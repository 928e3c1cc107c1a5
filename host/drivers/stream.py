"""The host side of the byte-stream transport (protocol.stream): for UART, USB-serial or any
link that carries bytes.

A vendor's driver subclasses ``StreamDriver`` and moves bytes, nothing else:

    _open(deadline)              make the link usable (raise LinkDown if the board is absent)
    _write(data, deadline)       write all of ``data`` (bytes-like)
    _read(deadline) -> bytes     some bytes (at least one), TimeoutError at the deadline,
                                 LinkDown / OSError if the link went away
    _close()                     close the link (the next _open reopens it)

Framing, CRCs, NAKs, resynchronisation, deadlines (including the transfer time at the link's
rate, the URL's ``baud``), resends and statistics come from here and from ``PacketDriver``.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar

from protocol import stream

from host.drivers.base import PacketDriver
from host.errors import LinkCorrupt

#: Bits on the line per byte of payload for an asynchronous serial link (8N1: start + 8 + stop).
BITS_PER_BYTE = 10
#: Frames up to this size are joined into one write.
JOIN_BYTES = 64 * 1024
#: Damaged frames repaired in place (NAK answered, damaged reply NAKed) per attempt.
MAX_REPAIRS = 8


class StreamDriver(PacketDriver):
    """A subclass that adds URL parameters extends ``QUERY``, keeping these three."""
    QUERY: ClassVar[tuple[str, ...]] = ("timeout", "retries", "baud")

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None,
                 baud: float | None = None) -> None:
        super().__init__(url, timeout=timeout, retries=retries)
        try:
            rate = float(self.query.get("baud", baud or 0))
        except ValueError:
            raise ValueError(f"device URL {url!r}: baud must be a number of bit/s") from None
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"device URL {url!r}: baud must be a finite number of bit/s "
                             "(omit it for a fast link)")
        self.baud = rate or None
        self.link_rate = rate / BITS_PER_BYTE if rate else None
        self.decoder = stream.StreamDecoder()
        self._events: list[Any] = []
        self._open_link = False
        self._request: list[Any] = []
        self._repairs = 0

    # ---------------------------------------------------------------- PacketDriver's link methods
    def _send(self, frames: list, deadline: float) -> None:
        if not self._open_link:
            self._open(deadline)
            self._open_link = True
        self._request = stream.encode(frames)
        self._repairs = 0
        self._write_all(self._request, deadline)

    def _write_all(self, pieces: list[Any], deadline: float) -> None:
        """A small frame goes out in one write (one syscall, one USB transfer); a large one
        piece by piece, its payload uncopied."""
        if sum(memoryview(p).nbytes for p in pieces) <= JOIN_BYTES:
            self._write(b"".join(pieces), deadline)
            return
        for piece in pieces:
            self._write(piece, deadline)

    def _receive(self, deadline: float) -> list:
        """The next reply. Damage is repaired on the spot while the attempt has time: a NAK
        (our request arrived damaged) re-sends the request; a damaged reply is NAKed, and the
        device sends it again — cheaper than re-sending a large request. Each repair counts as
        a CRC error; after MAX_REPAIRS the attempt fails and the base starts a new one."""
        while True:
            while self._events:
                event = self._events.pop(0)
                if isinstance(event, stream.Message):
                    return event.frames
                if isinstance(event, stream.Nak):
                    self._repair("the device NAKed the request (it arrived damaged)")
                    self._write_all(self._request, deadline)
                elif event.reason == "crc":
                    self._repair(f"reply {event.detail}")
                    self._write(stream.encode_nak(), deadline)
                # anything else from the device is not ours to answer: keep reading
            # a reply cut off mid-way runs into the deadline; the reset clears the decoder
            self._events += self.decoder.feed(self._read(deadline))

    def _repair(self, what: str) -> None:
        self._repairs += 1
        if self._repairs > MAX_REPAIRS:
            raise LinkCorrupt(f"{what}; {MAX_REPAIRS} repairs in this attempt already")
        self.stats.crc_errors += 1

    def _reset_link(self) -> None:
        """Resynchronise after a failed attempt: the decoder drops any partial frame (stale
        bytes that follow are skipped on the way to the next SYNC; a late reply is skipped by
        its seq). The port is closed only when it broke or went away: reopening a serial port
        toggles DTR, which resets many USB boards."""
        self.decoder.expire()
        self._events.clear()
        if self.link_failure in ("broken", "down"):
            self._drop()

    def _drop(self) -> None:
        if self._open_link:
            self._open_link = False
            self._close()

    def close(self) -> None:
        self.decoder.expire()
        self._events.clear()
        self._drop()

    # ---------------------------------------------------------------- what a vendor implements
    @abstractmethod
    def _open(self, deadline: float) -> None:
        """Make the link usable (open the port, connect the socket). Raise ``LinkDown`` when
        the board is not there (no device node, connection refused): the base retries until
        the deadline, so a board being replugged is found again. Flush bytes left over from
        an earlier session, if the link keeps any."""

    @abstractmethod
    def _write(self, data: Any, deadline: float) -> None:
        """Write all of ``data`` (bytes-like; ``memoryview(data).cast("B")`` gives its bytes).
        Raise ``TimeoutError`` at the deadline, ``OSError`` if the link broke."""

    @abstractmethod
    def _read(self, deadline: float) -> bytes:
        """Return the bytes available (at least one), waiting until the deadline: then raise
        ``TimeoutError``. Raise ``LinkDown`` or ``OSError`` when the link went away."""

    @abstractmethod
    def _close(self) -> None:
        """Close the link; the next ``_open`` reopens it. Must not raise."""
