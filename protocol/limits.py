"""Named protocol limits. Both ends enforce them; docs/protocol.md lists them."""
from __future__ import annotations

from dataclasses import dataclass, fields

#: zmq MAXMSGSIZE on the device's ROUTER socket: any single frame above this is dropped by zmq.
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: Messages a daemon queues per peer, each way (zmq RCVHWM / SNDHWM of its ROUTER): requests read
#: ahead of execution, and replies the peer has not taken yet. A client may have this many
#: requests in flight; replies beyond it to a peer that does not read them are dropped.
MAX_QUEUED_PER_PEER = 64
#: Header frame (msgpack) size limit.
MAX_HEADER_BYTES = 64 * 1024
#: Transactions per packet.
MAX_TRANSACTIONS = 512
#: Words one READ/WRITE may move; the words of a whole packet are capped the same way.
MAX_WORDS_PER_TX = 64 * 1024 * 1024
MAX_WORDS_PER_PACKET = 64 * 1024 * 1024
#: msgpack Unpacker limits for untrusted headers.
MAX_ARRAY_LEN = MAX_HEADER_BYTES  # the header's byte limit bounds arrays already; a list
# longer than MAX_TRANSACTIONS is then refused by the explicit check, which can answer its seq
MAX_MAP_LEN = 32
MAX_BIN_LEN = 256
MAX_STR_LEN = 1024
#: Words the reply to one packet may carry (READ, READ_NI, RMW data) when the packet carries
#: the live owner token; packets from anyone else (reads are open) get the smaller open limit,
#: so a monitoring client cannot make the device serialise hundreds of MB between the owner's
#: packets, nor park more than MAX_QUEUED_PER_PEER × 1 MiB of replies it never reads. Over either limit: TOO_LARGE, nothing executed.
MAX_REPLY_WORDS = MAX_WORDS_PER_PACKET
MAX_OPEN_REPLY_WORDS = 256 * 1024
#: Words one READ_NI / WRITE_NI on a register (not a FIFO port) may move: polling a register
#: a thousand times in one packet is plenty, and each word costs a register access.
MAX_REGISTER_NI_WORDS = 1024
#: Packets that may be parked at a WAIT at once, in all and per client. Only packets carrying
#: the live owner token may park; anyone else's WAIT is checked once (TIMEOUT if false).
MAX_PARKED = 16
MAX_PARKED_PER_CLIENT = 4
#: Longest WAIT a packet may request.
MAX_WAIT_MS = 600_000
#: Replies remembered per client (for retries with the same sequence number).
REPLY_CACHE_PER_CLIENT = 16
#: Distinct clients remembered by the reply cache (least recently seen forgotten first).
REPLY_CACHE_CLIENTS = 256
#: Read-payload bytes the reply cache may hold in all.
REPLY_CACHE_BYTES = 64 * 1024 * 1024
#: Bytes of the client id in the header.
CLIENT_ID_BYTES = 16
#: Words of the sample FIFO of the reference firmware.
FIFO_DEPTH = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The resource limits one device advertises in its limit registers (0x0050 … 0x0059) and
    FIFO_DEPTH (each field by the register of its name in capitals). The constants above are
    the most a device may advertise (the reference firmware's defaults); a small board
    advertises less, down to ``MINIMUM_VALUES``, and a host keeps inside what the device at
    hand advertises."""
    max_transactions: int = MAX_TRANSACTIONS
    max_packet_words: int = MAX_WORDS_PER_PACKET
    max_reply_words: int = MAX_REPLY_WORDS
    max_open_reply_words: int = MAX_OPEN_REPLY_WORDS
    max_parked: int = MAX_PARKED
    max_parked_per_client: int = MAX_PARKED_PER_CLIENT
    max_wait_ms: int = MAX_WAIT_MS
    reply_cache_depth: int = REPLY_CACHE_PER_CLIENT
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_register_ni_words: int = MAX_REGISTER_NI_WORDS
    fifo_depth: int = FIFO_DEPTH

    def __post_init__(self) -> None:
        for f in fields(self):
            value, low, high = getattr(self, f.name), getattr(MINIMUM_VALUES, f.name), \
                getattr(MAXIMUM_VALUES, f.name)
            if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
                raise ValueError(f"limit {f.name} must be an integer in {low}..{high}, got {value!r}")
        if self.max_open_reply_words > self.max_reply_words:
            raise ValueError("limit max_open_reply_words must not exceed max_reply_words")
        if self.max_parked_per_client > self.max_parked:
            raise ValueError("limit max_parked_per_client must not exceed max_parked")

    @property
    def max_frame_words(self) -> int:
        """Words one payload frame may carry."""
        return self.max_frame_bytes // 4

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


class _Bounds:
    def __init__(self, **values: int) -> None:
        self.__dict__.update(values)


#: The most a device may advertise: the constants of this module (the defaults of ``Limits``).
MAXIMUM_VALUES = _Bounds(**{f.name: f.default for f in fields(Limits)})
#: The least a device must support, so that a host can still run one iteration of any algorithm:
#: the reference host's largest packet (a TNGD step: uploads, COMMIT and RUN, WAIT, read-backs)
#: has 22 transactions; 256 words carry the identity block and a few registers per packet.
MINIMUM_VALUES = _Bounds(max_transactions=32, max_packet_words=256, max_reply_words=256,
                         max_open_reply_words=256, max_parked=1, max_parked_per_client=1,
                         max_wait_ms=1000, reply_cache_depth=1, max_frame_bytes=1024,
                         max_register_ni_words=16, fifo_depth=1)
DEFAULT = Limits()
