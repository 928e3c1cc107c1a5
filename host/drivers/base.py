"""The driver contract: move one request packet to the device and bring its reply back.

``PacketDriver`` owns everything a transport should not have to rewrite: sequence numbers, the
client id and owner token, encoding and reply matching, BOOT_ID tracking, and the link
discipline — a deadline per attempt (the timeout plus the time the bytes take at the link's
rate), resends of the identical frames, late replies skipped, one typed error when every
attempt failed (``DeviceTimeout`` for a silent device, ``DeviceUnplugged`` for a link that is
not there), and the counters that say how the link behaved (``LinkStats``). A transport
implements four small methods: ``_send``, ``_receive``, ``_reset_link`` and ``close``. See
docs/drivers.md.
"""
from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence
from urllib.parse import parse_qs, urlparse

import msgpack

from protocol import limits
from protocol.codec import Reply, Transaction, decode_reply, encode_request
from protocol.ops import Op

from host.errors import DeviceReset, DeviceTimeout, DeviceUnplugged, LinkCorrupt, LinkDown

#: Pause before the next attempt to open a link that is down (doubles up to the maximum), so a
#: board that is being replugged or rebooting is found again within the attempt's deadline.
REOPEN_PAUSE_S = 0.05
REOPEN_PAUSE_MAX_S = 0.5
#: Bytes of reply header and framing assumed per packet when budgeting transfer time.
REPLY_OVERHEAD_BYTES = 96
#: A request this large that met only silence gets a hint to declare the link's rate.
SLOW_LINK_HINT_BYTES = 64 * 1024


@dataclass
class LinkStats:
    """How the link behaved since the driver was opened (cumulative)."""
    packets: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0          # attempts after the first, for any reason below
    timeouts: int = 0         # attempts that got no reply within their deadline
    crc_errors: int = 0       # replies that arrived damaged, and requests the device NAKed
    link_errors: int = 0      # attempts that found the link broken or unplugged

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


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


def frames_nbytes(frames: Sequence[Any]) -> int:
    """Bytes of a message's frames (zmq.Frame's len() is its size: no copy to count it)."""
    return sum(len(f) if hasattr(f, "bytes") else memoryview(f).nbytes for f in frames)


def reply_words(tx: Sequence[Transaction]) -> int:
    """Words of read data the reply to ``tx`` carries at most."""
    return sum(t.args[0] if t.op in (Op.READ, Op.READ_NI) else 1 if t.op == Op.RMW else 0
               for t in tx)


def reply_seq(frames: Sequence[Any]) -> int | None:
    """The seq of a reply without decoding its payload: None when the device could not read
    ours; -1 when the first frame is not a reply header at all (never matches)."""
    try:
        first = frames[0]
        h = msgpack.unpackb(first.bytes if hasattr(first, "bytes") else bytes(memoryview(first)),
                            raw=False, max_array_len=limits.MAX_ARRAY_LEN + 8,
                            max_map_len=limits.MAX_MAP_LEN, max_str_len=limits.MAX_STR_LEN,
                            max_bin_len=limits.MAX_BIN_LEN)
    except Exception:
        return -1
    if not isinstance(h, dict):
        return -1
    seq = h.get("seq", -1)
    return seq if seq is None or type(seq) is int else -1


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
    """A transport that moves the protocol's frames. Subclasses set ``QUERY`` (the URL query
    parameters they take, ``timeout`` and ``retries`` included), call
    ``super().__init__(url, timeout=..., retries=...)`` and implement the link methods."""
    QUERY: ClassVar[tuple[str, ...]] = ("timeout", "retries")
    DEFAULT_TIMEOUT: ClassVar[float] = 5.0
    DEFAULT_RETRIES: ClassVar[int] = 2

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None,
                 link_rate: float | None = None) -> None:
        self.url = url
        self.query = url_query(url, self.QUERY)
        q = self.query
        try:
            self.timeout = float(q.get("timeout", self.DEFAULT_TIMEOUT if timeout is None else timeout))
            self.retries = int(q.get("retries", self.DEFAULT_RETRIES if retries is None else retries))
        except ValueError as e:
            raise ValueError(f"device URL {url!r}: timeout must be a number of seconds and "
                             f"retries an integer ({e})") from None
        if not self.timeout > 0 or self.retries < 0:
            raise ValueError(f"device URL {url!r}: needs timeout > 0 and retries >= 0, got "
                             f"timeout={self.timeout:g}, retries={self.retries}")
        #: Bytes per second the link moves (None: fast enough not to matter). Each attempt's
        #: deadline is the timeout plus the time the request and its reply take at this rate.
        self.link_rate = link_rate
        self.cid = secrets.token_bytes(limits.CLIENT_ID_BYTES)
        self.owner = 0
        self.seq = 0
        self.boot_id: int | None = None
        self.reset: DeviceReset | None = None  # sticky until acknowledge_reset()
        self.responsive = True  # False after a DeviceTimeout, until the device answers again
        self.stats = LinkStats()
        #: What the last failed attempt ran into ("silent", "damaged", "broken", "down"), for
        #: ``_reset_link``: a stream keeps a port open after silence, reopens it when broken.
        self.link_failure: str | None = None

    # ---------------------------------------------------------------- what ThermoDevice calls
    def transact(self, tx: Sequence[Transaction], timeout: float | None = None) -> Reply:
        if self.reset is not None:
            raise self.reset  # nothing is sent to a device whose reboot nobody acknowledged
        self.seq += 1
        frames = encode_request(self.seq, self.cid, self.owner, tx)
        self.stats.packets += 1
        out = frames_nbytes(frames)
        back = 4 * reply_words(tx) + REPLY_OVERHEAD_BYTES + 8 * len(tx)
        try:
            raw = self._exchange(frames, self.seq, self.timeout if timeout is None else timeout,
                                 self.transfer_time(out, back))
        except TimeoutError:
            self.responsive = False
            raise
        self.responsive = True
        self.stats.bytes_received += frames_nbytes(raw)
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

    def transfer_time(self, request_bytes: int, reply_bytes: int) -> float:
        """Seconds the link needs to carry a request and its reply (0 for a fast link)."""
        if not self.link_rate:
            return 0.0
        return (request_bytes + reply_bytes) / self.link_rate

    # ---------------------------------------------------------------- the link discipline
    def _exchange(self, frames: list, seq: int, timeout: float, transfer: float = 0.0) -> list:
        """Send the request and return the frames of the reply with its seq: each attempt has
        ``timeout + transfer`` seconds; the identical frames are re-sent after silence, a damaged
        reply, a NAK or a broken link (the device answers a repeat from its reply cache)."""
        attempts = self.retries + 1
        failures: list[tuple[str, str]] = []  # (kind, what happened) per attempt
        started = time.monotonic()
        for attempt in range(attempts):
            if attempt:
                self.stats.retries += 1
            deadline = time.monotonic() + timeout + transfer
            try:
                self._send_until(frames, deadline)
                self.stats.bytes_sent += frames_nbytes(frames)
                while True:
                    reply = self._receive(deadline)
                    got = reply_seq(reply)
                    if got == seq or got is None:
                        # seq None: the device could not read our header far enough to find
                        # seq; one request is outstanding at a time, so the error is ours
                        return reply
                    # a late reply to an earlier attempt, or not a reply: keep waiting
            except DeviceTimeout:
                raise  # the transport knows the device is gone (DeviceDied): no retry helps
            except LinkDown as e:
                self.stats.link_errors += 1
                failures.append(("down", f"link down ({e})"))
            except LinkCorrupt as e:
                self.stats.crc_errors += 1
                failures.append(("damaged", f"damaged ({e})"))
            except TimeoutError:
                self.stats.timeouts += 1
                failures.append(("silent", f"silent for {timeout + transfer:.3g} s"))
            except OSError as e:  # reset, broken pipe: the link broke mid-exchange
                self.stats.link_errors += 1
                failures.append(("broken", f"link broken ({type(e).__name__}: {e.strerror or e})"))
            self.link_failure = failures[-1][0]  # what _reset_link is recovering from
            self._reset_link()
        raise self._failure(failures, timeout + transfer, time.monotonic() - started,
                            frames_nbytes(frames))

    def _failure(self, failures: list[tuple[str, str]], per_attempt: float, elapsed: float,
                 request_bytes: int) -> DeviceTimeout:
        """The typed error after the last attempt, saying what the attempts ran into."""
        n = len(failures)
        waited = f"{n} attempt{'s' if n > 1 else ''} × {per_attempt:.3g} s"
        kinds = [k for k, _ in failures]
        last = failures[-1][1]
        if all(k == "down" for k in kinds):
            return DeviceUnplugged(f"{self.url} is not there: the link stayed down through "
                                   f"{waited} ({elapsed:.2g} s); last attempt: {last}; is the "
                                   "board plugged in and powered?")
        if all(k == "silent" for k in kinds):
            hint = ""
            if self.link_rate is None and request_bytes > SLOW_LINK_HINT_BYTES:
                hint = (f" If the link is slow, declare its rate (e.g. ?baud= on a serial link): "
                        f"this request is {request_bytes / 1e6:.2g} MB and each attempt gets "
                        "its transfer time on top of the timeout.")
            return DeviceTimeout(f"no reply from {self.url} after {n * per_attempt:.3g} s "
                                 f"({waited}); last attempt: {last}; is the device (its daemon "
                                 f"or board) running?{hint}")
        counts = ", ".join(f"{kinds.count(k)} {k}" for k in ("damaged", "silent", "broken", "down")
                           if k in kinds)
        advice = [text for kind, text in (
            ("damaged", "the link garbles what it carries (the cable, the baud rate, noise)"),
            ("broken", "the link broke during an attempt"),
            ("down", "the device went away"),
            ("silent", "the device stopped answering")) if kind in kinds]
        return DeviceTimeout(f"no usable reply from {self.url}: {n} attempts failed in "
                             f"{elapsed:.2g} s ({counts}); last attempt: {last}; "
                             + "; ".join(advice))

    def _send_until(self, frames: list, deadline: float) -> None:
        """``_send``, waiting out a link that is down (replugged, rebooting) until the deadline."""
        pause = REOPEN_PAUSE_S
        while True:
            try:
                self._send(frames, deadline)
                return
            except LinkDown:
                self._reset_link()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(pause, left))  # and a last look at the deadline itself
                pause = min(2 * pause, REOPEN_PAUSE_MAX_S)

    # ---------------------------------------------------------------- what a transport implements
    @abstractmethod
    def _send(self, frames: list, deadline: float) -> None:
        """Put one request on the link (opening it first if needed). ``frames``: the msgpack
        header (bytes) and one little-endian uint32 array per WRITE / WRITE_NI; carry each frame
        and its boundaries unchanged. Raise ``LinkDown`` when the device is not attached (the
        base waits for it until the deadline), ``TimeoutError`` at the deadline, ``OSError``
        when the link breaks."""

    @abstractmethod
    def _receive(self, deadline: float) -> list:
        """The next message from the device, as a list of bytes-like frames. Raise
        ``TimeoutError`` at the deadline, ``LinkCorrupt`` for a damaged message or a NAK,
        ``LinkDown`` / ``OSError`` when the link is gone. The base skips replies to earlier
        attempts by their seq."""

    def _reset_link(self) -> None:  # noqa: B027 (a link with no state has nothing to reset)
        """Forget the link's state after a failed attempt (``link_failure`` says what it ran
        into): a socket with a lost reply in flight, or a byte stream's position, cannot be
        trusted. Close what must be reopened; ``_send`` reopens it."""
