"""The device side of the byte-stream transport (protocol.stream), over any byte link.

A board's serial main loop, in software: read bytes, decode stream frames, hand each request to
the firmware (``PacketHost``), write the framed replies. The link is anything with

    read(timeout) -> bytes     the bytes available within ``timeout`` (b"" if none);
                               raise EOFError or OSError when the link is gone
    write(data) -> None        write all of ``data`` (bytes-like)

What the device does on each kind of bad input is the normative part of docs/protocol.md
("Byte-stream transport"): a damaged request (body CRC) is answered with a NAK, so the host
re-sends at once instead of waiting out its timeout; a frame cut off mid-way is discarded
after INTER_BYTE_TIMEOUT_S of silence; noise between frames is skipped while looking for SYNC;
a body that is not length-prefixed frames is answered MALFORMED, and a frame longer than the
limit TOO_LARGE (both with seq nil: the header could not be read). A NAK from the host is
answered by re-sending the last reply.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Protocol

from firmware_sim.firmware import Firmware
from firmware_sim.hosting import PacketHost
from protocol import stream
from protocol.codec import Reply, encode_reply
from protocol.status import Status

log = logging.getLogger("thermohil.stream")

#: How often the link is polled while a packet is parked at a WAIT: the reply goes out within
#: this time of the condition coming true (the link's read cannot also wait on the firmware).
PARKED_POLL_S = 0.005


class ByteLink(Protocol):
    def read(self, timeout: float) -> bytes:
        """The bytes available within ``timeout`` (b"" if none); EOFError or OSError when the
        link is gone."""

    def write(self, data: Any) -> None:
        """Write all of ``data``. Must not block forever: a host that stops reading (gone, or a
        pty nobody holds) must end in OSError or TimeoutError within a bounded time (the
        example bridge: 30 s), or the server cannot stop."""


class StreamServer:
    def __init__(self, firmware: Firmware, *,
                 inter_byte_timeout: float = stream.INTER_BYTE_TIMEOUT_S) -> None:
        self.fw = firmware
        self.host = PacketHost(firmware)  # its own: every reply it returns goes down this link
        self.inter_byte_timeout = inter_byte_timeout
        self.decoder = stream.StreamDecoder(max_body=stream.max_body_bytes(firmware.limits))
        self._last_reply: list[Any] | None = None

    @property
    def stats(self) -> stream.StreamStats:
        return self.decoder.stats

    def serve(self, link: ByteLink, stop: Callable[[], bool] = lambda: False) -> None:
        """Serve one link until ``stop()`` or the link goes away (EOFError / OSError from it
        end the call; the caller may wait for the next link). State that belongs to the link
        (a partial frame, the last reply) is forgotten; parked packets stay with the firmware."""
        self.decoder.expire()
        self._last_reply = None
        last_byte = time.monotonic()
        try:
            while not stop():
                data = link.read(PARKED_POLL_S if self.host.parked else
                                 min(self.host.next_wakeup(), self.inter_byte_timeout / 2))
                now = time.monotonic()
                if data:
                    last_byte = now
                    for event in self.decoder.feed(data):
                        self._on_event(event, link)
                elif self.decoder.mid_frame and now - last_byte > self.inter_byte_timeout:
                    self.decoder.expire()
                    log.info("discarded a frame cut off mid-way (silent for %.2g s)", now - last_byte)
                for _, reply in self.host.poll():
                    self._send(link, reply)
        finally:
            self.decoder.expire()

    def _on_event(self, event: Any, link: ByteLink) -> None:
        if isinstance(event, stream.Message):
            for _, reply in self.host.submit(event.frames):
                self._send(link, reply)
        elif isinstance(event, stream.Nak):
            if self._last_reply is not None:
                for piece in self._last_reply:
                    link.write(piece)
        elif event.reason == "crc":
            log.info("damaged request (%s): NAK", event.detail)
            link.write(stream.encode_nak())
        elif event.reason in ("body", "too_large"):
            status = Status.MALFORMED if event.reason == "body" else Status.TOO_LARGE
            self._send(link, Reply(None, status, [], [], self.fw.boot_id,
                                   f"stream frame refused: {event.detail}"))
        # unknown KIND: skipped, as the spec says

    def _send(self, link: ByteLink, reply: Reply) -> None:
        pieces = stream.encode(encode_reply(reply))
        self._last_reply = pieces
        for piece in pieces:
            link.write(piece)
