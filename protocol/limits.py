"""Named protocol limits. Both ends enforce them; docs/protocol.md lists them."""
from __future__ import annotations

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
