"""uart:// — the thermohil register protocol over a length-prefixed byte stream.

    host.connect("uart://127.0.0.1:5600?timeout=2")

A real board hangs off a UART or a USB-serial bridge; a vendor driver would open it with
pyserial (``serial.Serial("/dev/ttyUSB0", 3_000_000, timeout=...)``) and use the very same
framing (``thermohil_uart.framing``). This example uses a TCP socket to 127.0.0.1 as the serial
line, so it needs nothing beyond the standard library, and ``python -m thermohil_uart.bridge``
plays the board.

Only the transport lives here: ``PacketDriver`` numbers the packets, encodes them with
protocol.codec, matches replies and watches BOOT_ID. Every read has a deadline; a link that
stays silent, breaks or garbles the stream is closed and reopened and the packet re-sent with
the same sequence number (the device answers a repeat from its reply cache, so a write is never
applied twice). When all attempts fail the caller gets ``host.errors.DeviceTimeout``.

Query parameters: ``timeout`` (seconds per attempt, default 5), ``retries`` (default 2).
"""
from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, urlparse

import msgpack

from host.drivers.base import PacketDriver
from host.errors import DeviceTimeout
from protocol import limits
from protocol.status import Status
from thermohil_uart.framing import FramingError, read_message, write_message

#: Pause before reconnecting after a failed attempt (a board that is rebooting needs a moment).
RECONNECT_PAUSE_S = 0.05


class UartDriver(PacketDriver):
    schemes = ("uart",)

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 2) -> None:
        parsed = urlparse(url)
        q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        unknown = set(q) - {"timeout", "retries"}
        if unknown:
            raise ValueError(f"unknown uart:// parameters {sorted(unknown)} (known: timeout, retries)")
        if not parsed.hostname or parsed.port is None:
            raise ValueError(f"uart:// URL needs HOST:PORT of the serial bridge, got {url!r}")
        super().__init__(url, timeout=float(q.get("timeout", timeout)))
        self.retries = int(q.get("retries", retries))
        if not self.timeout > 0 or self.retries < 0:
            raise ValueError(f"uart:// needs timeout > 0 and retries >= 0, got {url!r}")
        self.address = (parsed.hostname, parsed.port)
        self.sock: socket.socket | None = None

    def _open(self, deadline: float) -> socket.socket:
        if self.sock is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deadline passed before the link was open")
            sock = socket.create_connection(self.address, timeout=left)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a UART has no Nagle
            self.sock = sock
        return self.sock

    def _drop(self) -> None:
        """Close the link: after a timeout or a bad length the stream position is unknown."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _exchange(self, frames: list, seq: int, timeout: float) -> list:
        failure = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
                time.sleep(RECONNECT_PAUSE_S)
            deadline = time.monotonic() + timeout
            try:
                sock = self._open(deadline)
                write_message(sock, frames, deadline)
                while True:
                    reply = read_message(sock, deadline)
                    if reply is None:
                        raise ConnectionResetError("the device closed the link")
                    if not reply:
                        raise FramingError(Status.MALFORMED, "reply without frames")
                    got = _reply_seq(reply)
                    # One request is outstanding per link, so a reply without a seq (the device
                    # could not parse ours) is ours; one with an older seq is stale: skip it.
                    if got is None or got == seq:
                        return reply
            except TimeoutError:
                failure = f"silent for {timeout:g} s"
            except FramingError as e:
                failure = f"garbled reply stream ({e.message})"
            except OSError as e:  # refused, reset, broken pipe, host unreachable
                failure = f"{type(e).__name__}: {e.strerror or e}"
            self._drop()
        raise DeviceTimeout(f"no reply from {self.url} ({self.retries + 1} attempts; last: "
                            f"{failure}); is the board (or `python -m thermohil_uart.bridge`) up?")

    def close(self) -> None:
        self._drop()


def _reply_seq(frames: list) -> int | None:
    """The sequence number of a reply (None if the device could not read ours), without
    decoding its payload. A reply that is not a msgpack map means the stream is garbled."""
    try:
        h = msgpack.unpackb(frames[0], raw=False, max_array_len=limits.MAX_ARRAY_LEN + 8,
                            max_map_len=limits.MAX_MAP_LEN, max_str_len=limits.MAX_STR_LEN,
                            max_bin_len=limits.MAX_BIN_LEN)
    except Exception as e:
        raise FramingError(Status.MALFORMED, f"reply header is not msgpack ({type(e).__name__})") from None
    if not isinstance(h, dict):
        raise FramingError(Status.MALFORMED, "reply header is not a map")
    seq = h.get("seq")
    return seq if type(seq) is int else None
