"""uart:// — the thermohil byte-stream transport to a board on a serial line.

    host.connect("uart://127.0.0.1:5600?timeout=2&baud=115200")

A real board hangs off a UART or a USB-serial bridge; a vendor's driver opens it with pyserial
(``serial.Serial("/dev/ttyUSB0", 3_000_000, timeout=...)``). This example uses a TCP socket to
127.0.0.1 as the serial line, so it needs nothing beyond the standard library, and
``python -m thermohil_uart.bridge`` plays the board.

Only bytes move here. ``host.drivers.stream.StreamDriver`` frames each message (SYNC, length,
CRCs: protocol.stream), re-sends after a NAK, a damaged reply, silence or a broken link, waits
for a board that is being replugged, budgets each attempt's deadline for the transfer time at
``baud``, and raises ``DeviceUnplugged`` (nothing listening: the board is not there) or
``DeviceTimeout`` (attached but silent) when every attempt failed.

Query parameters: ``timeout`` (seconds per attempt, default 5), ``retries`` (default 2),
``baud`` (the line rate in bit/s; omit for a fast link).
"""
from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlparse

from host.drivers.stream import StreamDriver
from host.errors import LinkDown

#: Bytes asked of the line per read.
READ_CHUNK = 1 << 16


class UartDriver(StreamDriver):
    schemes = ("uart",)

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> None:
        super().__init__(url, timeout=timeout, retries=retries)
        parsed = urlparse(url)
        if not parsed.hostname or parsed.port is None:
            raise ValueError(f"uart:// URL needs HOST:PORT of the serial bridge, got {url!r}")
        self.address = (parsed.hostname, parsed.port)
        self.sock: socket.socket | None = None

    def _open(self, deadline: float) -> None:
        try:
            sock = socket.create_connection(self.address, timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionRefusedError as e:  # nothing at the other end of the line
            raise LinkDown(f"connection to {self.address[0]}:{self.address[1]} refused") from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a UART has no Nagle
        self.sock = sock

    def _write(self, data: Any, deadline: float) -> None:
        assert self.sock is not None
        view = memoryview(data).cast("B")
        while view.nbytes:
            self.sock.settimeout(_left(deadline))
            view = view[self.sock.send(view):]

    def _read(self, deadline: float) -> bytes:
        assert self.sock is not None
        self.sock.settimeout(_left(deadline))
        data = self.sock.recv(READ_CHUNK)
        if not data:
            raise ConnectionResetError("the board closed the line")
        return data

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left
