"""Wire codec: one multipart message = msgpack header + raw little-endian word frames.

Request header (msgpack map):   {"v": [major, minor], "seq": int, "cid": bytes(16),
                                  "own": u32 owner token (0 = none), "tx": [[op, args...], ...]}
  followed by one frame per WRITE / WRITE_NI, in transaction order, each exactly n*4 bytes.
Reply header:                   {"v": [major, minor], "seq": int | None, "st": packet status,
                                  "tx": [status per transaction], "boot": BOOT_ID, "msg": str}
  followed by one frame per READ / READ_NI / RMW that succeeded, in transaction order.

Arrays never pass through msgpack: payloads are numpy buffers sent zero-copy, and untrusted
headers are decoded with strict limits (protocol.limits), never trusting a length they carry.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack
import numpy as np

from protocol import limits
from protocol.ops import ARITY, GIVES_FRAME, TAKES_FRAME, Op
from protocol.regmap import REGMAP
from protocol.status import Status

PROTOCOL_VERSION: tuple[int, int] = REGMAP.protocol_version
WORD = np.dtype("<u4")
_U32 = 0xFFFFFFFF


class ProtocolError(Exception):
    """A packet that cannot be executed at all; carries the status to reply with."""

    def __init__(self, status: Status, message: str, seq: int | None = None) -> None:
        super().__init__(f"{status.name}: {message}")
        self.status, self.message, self.seq = status, message, seq


@dataclass
class Transaction:
    op: int
    addr: int
    args: tuple[int, ...] = ()   # n for READ/WRITE/_NI; (and, or) RMW; (mask, value, timeout) WAIT
    data: np.ndarray | None = None  # uint32 words for WRITE / WRITE_NI

    @property
    def count(self) -> int:
        """Words moved by this transaction."""
        return self.args[0] if self.op in (Op.READ, Op.WRITE, Op.READ_NI, Op.WRITE_NI) else 1

    def wire(self) -> list[int]:
        return [int(self.op), self.addr, *self.args]


@dataclass
class Packet:
    seq: int
    cid: bytes
    owner: int
    tx: list[Transaction]
    version: tuple[int, int] = PROTOCOL_VERSION
    header_crc: int = 0  # CRC-32 of the header frame (full_crc(): of every frame)
    frames: Sequence[Any] = field(default=(), repr=False, compare=False)

    def full_crc(self) -> int:
        """CRC-32 of every frame (header and payloads): a retry repeats its packet byte for byte.
        Computed on demand (~0.6 ms per 4 MiB), so a packet refused at validation costs none."""
        crc = 0
        for f in self.frames:
            crc = zlib.crc32(_frame_bytes(f), crc)
        return crc


@dataclass
class Reply:
    seq: int | None
    status: Status
    tx_status: list[Status] = field(default_factory=list)
    data: list[np.ndarray | None] = field(default_factory=list)  # aligned with transactions
    boot_id: int = 0
    message: str = ""


# ------------------------------------------------------------------------------ helpers
def as_words(data: Any) -> np.ndarray:
    """View int32 codes / uint32 words as little-endian u32 words without copying if possible."""
    a = np.asarray(data)
    if a.dtype.kind not in "iu" or a.dtype.itemsize != 4:
        raise TypeError(f"payload must be 32-bit integer words, got {a.dtype}")
    return np.ascontiguousarray(a.reshape(-1)).view(WORD)


def _frame_bytes(frame: Any) -> memoryview:
    if hasattr(frame, "buffer"):  # zmq.Frame
        return frame.buffer
    return memoryview(frame)


class _ExtRefused(Exception):
    """A msgpack ext type in a header: refused like one over the decoder's limits."""


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _ExtRefused(f"ext type {code}")


def _unpack_header(raw: Any, limit: int = limits.MAX_HEADER_BYTES) -> Any:
    buf = _frame_bytes(raw)
    if buf.nbytes > limit:
        raise ProtocolError(Status.TOO_LARGE, f"header is {buf.nbytes} bytes (limit {limit}: "
                            "MAX_HEADER_BYTES or MAX_FRAME_BYTES, the smaller)")
    try:
        return msgpack.unpackb(
            buf, raw=False, strict_map_key=True, use_list=True,
            max_array_len=limits.MAX_ARRAY_LEN,
            max_map_len=limits.MAX_MAP_LEN, max_bin_len=limits.MAX_BIN_LEN,
            max_str_len=limits.MAX_STR_LEN, max_ext_len=0, ext_hook=_refuse_ext,
        )
    except _ExtRefused as e:  # max_ext_len = 0 still lets an ext of no data through
        raise ProtocolError(Status.TOO_LARGE, f"header holds a msgpack ext type ({e})") from None
    except Exception as e:  # any decoder failure: ValueError, ExtraData, FormatError, ...
        if isinstance(e, ValueError) and ("exceeds max" in str(e) or "timestamp" in str(e)):
            raise ProtocolError(Status.TOO_LARGE, f"header exceeds a decoder limit: {e}") from None
        raise ProtocolError(Status.MALFORMED, f"header is not valid msgpack: {type(e).__name__}") from None


def _is_uint(x: Any, bits: int = 32) -> bool:
    return type(x) is int and 0 <= x < (1 << bits)


# ------------------------------------------------------------------------------ requests
def encode_request(seq: int, cid: bytes, owner: int, tx: Sequence[Transaction]) -> list:
    header = {"v": list(PROTOCOL_VERSION), "seq": seq, "cid": cid, "own": owner,
              "tx": [t.wire() for t in tx]}
    frames: list = [msgpack.packb(header, use_bin_type=True)]
    for t in tx:
        if t.op in TAKES_FRAME:
            words = as_words(t.data)
            if words.size != t.args[0]:
                raise ValueError(f"transaction says {t.args[0]} words but carries {words.size}")
            frames.append(words)
    return frames


def decode_request(frames: Sequence[Any], lim: limits.Limits = limits.DEFAULT) -> Packet:
    """Parse and check the framing of an untrusted request against the device's limits.
    Raises ProtocolError."""
    if not frames:
        raise ProtocolError(Status.MALFORMED, "empty message")
    h = _unpack_header(frames[0], min(limits.MAX_HEADER_BYTES, lim.max_frame_bytes))
    if not isinstance(h, dict):
        raise ProtocolError(Status.MALFORMED, "header must be a map")
    seq = h.get("seq")
    seq = seq if _is_uint(seq, 63) else None
    unknown = set(h) - {"v", "seq", "cid", "own", "tx"}
    if unknown:
        raise ProtocolError(Status.MALFORMED, f"unknown header keys {sorted(unknown)}", seq)
    v = h.get("v")
    if not (isinstance(v, list) and len(v) == 2 and all(_is_uint(x, 16) for x in v)):
        raise ProtocolError(Status.MALFORMED, "header 'v' must be [major, minor]", seq)
    if v[0] != PROTOCOL_VERSION[0]:
        raise ProtocolError(Status.BAD_VERSION, f"host speaks protocol {v[0]}.{v[1]}, device "
                            f"{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}", seq)
    if seq is None:
        raise ProtocolError(Status.MALFORMED, "header 'seq' must be an unsigned integer")
    cid, own, raw_tx = h.get("cid"), h.get("own", 0), h.get("tx")
    if not (isinstance(cid, bytes) and len(cid) == limits.CLIENT_ID_BYTES):
        raise ProtocolError(Status.MALFORMED, f"header 'cid' must be {limits.CLIENT_ID_BYTES} bytes", seq)
    if not _is_uint(own):
        raise ProtocolError(Status.MALFORMED, "header 'own' must be a u32 token", seq)
    if not isinstance(raw_tx, list):
        raise ProtocolError(Status.MALFORMED, "header 'tx' must be a list", seq)
    if len(raw_tx) > lim.max_transactions:
        raise ProtocolError(Status.TOO_LARGE, f"{len(raw_tx)} transactions "
                            f"(limit {lim.max_transactions})", seq)
    txs: list[Transaction] = []
    payload = list(frames[1:])
    total_words = 0
    for i, t in enumerate(raw_tx):
        if not (isinstance(t, list) and len(t) >= 2 and all(_is_uint(x) for x in t)):
            raise ProtocolError(Status.MALFORMED, f"transaction {i} must be a list of u32 [op, addr, ...]", seq)
        op, addr, args = t[0], t[1], tuple(t[2:])
        if op not in ARITY.keys():
            txs.append(Transaction(op, addr, args))  # the executor answers BAD_OP
            continue
        op = Op(op)
        if len(args) != ARITY[op]:
            raise ProtocolError(Status.MALFORMED, f"transaction {i} ({op.name}) needs {ARITY[op]} "
                                f"arguments after the address, got {len(args)}", seq)
        tx = Transaction(op, addr, args)
        if op in (Op.READ, Op.WRITE, Op.READ_NI, Op.WRITE_NI):
            n = args[0]
            if n == 0:
                raise ProtocolError(Status.MALFORMED, f"transaction {i}: word count 0", seq)
            if n > min(lim.max_packet_words, lim.max_frame_words):
                raise ProtocolError(Status.TOO_LARGE, f"transaction {i}: {n} words (limit "
                                    f"{min(lim.max_packet_words, lim.max_frame_words)}: "
                                    "MAX_PACKET_WORDS, and MAX_FRAME_BYTES / 4)", seq)
            total_words += n
        if op == Op.WAIT and args[2] > lim.max_wait_ms:
            raise ProtocolError(Status.TOO_LARGE, f"transaction {i}: WAIT of {args[2]} ms "
                                f"(limit {lim.max_wait_ms})", seq)
        if op in TAKES_FRAME:
            if not payload:
                raise ProtocolError(Status.MALFORMED, f"transaction {i} ({op.name}) has no payload frame", seq)
            buf = _frame_bytes(payload.pop(0))
            if buf.nbytes != args[0] * WORD.itemsize:
                raise ProtocolError(Status.MALFORMED, f"transaction {i}: frame of {buf.nbytes} bytes "
                                    f"for {args[0]} words", seq)
            tx.data = np.frombuffer(buf, dtype=WORD)
        txs.append(tx)
    if total_words > lim.max_packet_words:
        raise ProtocolError(Status.TOO_LARGE, f"{total_words} words in one packet "
                            f"(limit {lim.max_packet_words})", seq)
    if payload:
        raise ProtocolError(Status.MALFORMED, f"{len(payload)} payload frames left over", seq)
    return Packet(seq=seq, cid=cid, owner=own, tx=txs, version=(v[0], v[1]),
                  header_crc=zlib.crc32(_frame_bytes(frames[0])), frames=frames)


# ------------------------------------------------------------------------------ replies
def encode_reply(reply: Reply) -> list:
    header = {"v": list(PROTOCOL_VERSION), "seq": reply.seq, "st": int(reply.status),
              "tx": [int(s) for s in reply.tx_status], "boot": reply.boot_id, "msg": reply.message}
    frames: list = [msgpack.packb(header, use_bin_type=True)]
    frames += [as_words(d) for d in reply.data if d is not None]
    return frames


def decode_reply(frames: Sequence[Any], tx: Sequence[Transaction] | None = None) -> Reply:
    """Parse a device reply; with the request's transactions, align read frames to them."""
    h = _unpack_header(frames[0])
    if not isinstance(h, dict) or not {"seq", "st", "tx"} <= set(h):
        raise ProtocolError(Status.MALFORMED, "reply header is not a reply")
    try:
        status = Status(h["st"])
        tx_status = [Status(s) for s in h["tx"]]
    except (ValueError, TypeError):
        raise ProtocolError(Status.MALFORMED, "reply carries an unknown status code") from None
    payload = [np.frombuffer(_frame_bytes(f), dtype=WORD) for f in frames[1:]]
    data: list[np.ndarray | None] = []
    if tx is not None:
        it = iter(payload)
        for t, s in zip(tx, tx_status + [Status.ABORTED] * (len(tx) - len(tx_status))):
            data.append(next(it, None) if (t.op in GIVES_FRAME and s == Status.OK) else None)
    else:
        data = list(payload)
    return Reply(seq=h["seq"], status=status, tx_status=tx_status, data=data,
                 boot_id=h.get("boot", 0), message=h.get("msg", ""))
