"""The driver contract: move one request packet to the device and bring its reply back.

Drivers differ only in transport. ``PacketDriver`` does the shared work — sequence numbers,
client id, owner token, encoding, reply matching, BOOT_ID tracking, traffic counters — and
subclasses implement ``_exchange(frames, seq, timeout)``. See docs/drivers.md.
"""
from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence
from urllib.parse import parse_qs, urlparse

from protocol import limits
from protocol.codec import Reply, Transaction, decode_reply, encode_request

from host.errors import DeviceReset


@dataclass
class LinkStats:
    packets: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0


def url_query(url: str, valid: Sequence[str]) -> dict[str, str]:
    """The URL's query parameters (last value wins). An unknown key is a ValueError naming the
    valid ones: a misspelt ``?timout=`` must not be silently ignored."""
    parsed = urlparse(url)
    q = {k: v[-1] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
    unknown = sorted(set(q) - set(valid))
    if unknown:
        raise ValueError(f"unknown query parameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} in device URL {url!r}; "
                         f"{parsed.scheme}:// takes: {', '.join(valid)}")
    return q


def _nbytes(frames: Sequence[Any]) -> int:
    return sum(memoryview(f).nbytes if not hasattr(f, "bytes") else len(f.bytes) for f in frames)


class Driver(ABC):
    """What ThermoDevice needs from a transport."""
    schemes: ClassVar[tuple[str, ...]] = ()
    url: str
    owner: int
    stats: LinkStats

    @abstractmethod
    def transact(self, tx: Sequence[Transaction], timeout: float | None = None) -> Reply: ...

    def close(self) -> None:  # noqa: B027 (optional)
        pass


class PacketDriver(Driver):
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout
        self.cid = secrets.token_bytes(limits.CLIENT_ID_BYTES)
        self.owner = 0
        self.seq = 0
        self.boot_id: int | None = None
        self.reset: DeviceReset | None = None  # sticky until acknowledge_reset()
        self.responsive = True  # False after a DeviceTimeout, until the device answers again
        self.stats = LinkStats()

    def transact(self, tx: Sequence[Transaction], timeout: float | None = None) -> Reply:
        if self.reset is not None:
            raise self.reset  # nothing is sent to a device whose reboot nobody acknowledged
        self.seq += 1
        frames = encode_request(self.seq, self.cid, self.owner, tx)
        self.stats.packets += 1
        self.stats.bytes_sent += _nbytes(frames)
        try:
            raw = self._exchange(frames, self.seq, self.timeout if timeout is None else timeout)
        except TimeoutError:
            self.responsive = False
            raise
        self.responsive = True
        self.stats.bytes_received += _nbytes(raw)
        reply = decode_reply(raw, tx)
        if self.boot_id is None:
            self.boot_id = reply.boot_id
        elif reply.boot_id != self.boot_id:
            self.reset = DeviceReset(self.boot_id, reply.boot_id)
            raise self.reset
        return reply

    def acknowledge_reset(self) -> None:
        """Accept the rebooted device as the one to talk to from now on."""
        if self.reset is not None:
            self.boot_id, self.reset = self.reset.new, None

    @abstractmethod
    def _exchange(self, frames: list, seq: int, timeout: float) -> list:
        """Send one request, return the frames of the reply with the same seq."""
