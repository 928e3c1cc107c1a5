"""Fitting what the host wants to send into the packets the device at hand accepts.

A device advertises its resource limits (transactions per packet, words per packet and per
frame, reply words, words per non-incrementing register access); a small board advertises less
than the emulator. The host splits a request only where the split cannot change its meaning:

- inside the leading *staging* part: writes to shadowed registers and memories do nothing until
  COMMIT, so an upload may take several packets (the shadow bank holds the pieces);
- inside the trailing *read-back* part, for the owner only, when what it reads cannot change
  between the packets: after a WAIT for the end of a run (STATUS RUNNING = 0) the device is
  idle, nobody else can start a run while this host holds the lease (every packet carries the
  token, so a lost lease answers NOT_OWNER), and the caller holds the link for the whole plan,
  so a later packet reads the same finished run as the provenance reads of the first; reads of
  the shadow bank change only by this host's writes. Any other read-back is a snapshot
  (``state()`` of a running device): it is never split.

A large memory access is first cut into pieces of at most one frame / one packet of words.
Everything else stays in one packet; a request that does not fit is refused with ValueError
naming the limit, before anything is sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from host.drivers.base import reply_words as _reply_words_of
from protocol.codec import Transaction
from protocol.limits import MAX_HEADER_BYTES, Limits
from protocol.ops import Op
from protocol.regmap import REGMAP, Window

_WORD_OPS = (Op.READ, Op.WRITE, Op.READ_NI, Op.WRITE_NI)
#: Header bytes besides the transactions: v, seq, cid (16 bytes of bin), own, the map and keys.
HEADER_FIXED_BYTES = 64


@dataclass
class Plan:
    """Packets to send in order, and how their read data map back onto the request's."""
    packets: list[list[Transaction]]
    pieces: list[int]  # for each transaction of the request, how many it became

    def merge(self, data: list) -> list:
        """Concatenate the read data of each piece back into one array per transaction of the
        request (pieces of a READ are consecutive)."""
        out, k = [], 0
        for n in self.pieces:
            part = data[k:k + n]
            k += n
            out.append(part[0] if n == 1 else
                       None if part[0] is None else np.concatenate(part))
        return out


def _target(t: Transaction) -> tuple[str, object] | None:
    found = REGMAP.locate(t.addr)
    if found is None:
        return None
    entry, _ = found
    return ("window" if isinstance(entry, Window) else "register"), entry


def _staging(t: Transaction) -> bool:
    return t.op == Op.WRITE and _shadowed(t)


def _staged(t: Transaction) -> bool:
    """A read of the shadow bank: nothing but this host's own writes changes it."""
    return t.op == Op.READ and _shadowed(t)


def _shadowed(t: Transaction) -> bool:
    found = _target(t)
    return found is not None and bool(getattr(found[1], "shadow", False))


def _read_back(t: Transaction) -> bool:
    return t.op in (Op.READ, Op.READ_NI)


def _words(t: Transaction) -> int:
    return t.args[0] if t.op in _WORD_OPS else 0


def _reply_words(t: Transaction) -> int:
    return _reply_words_of([t])


def _cut(t: Transaction, lim: Limits, reply_limit: int) -> list[Transaction]:
    """One transaction as pieces that each fit a frame and a packet."""
    if t.op not in _WORD_OPS:
        return [t]
    found = _target(t)
    kind = found[0] if found else "register"
    fifo = kind == "window" and getattr(found[1], "fifo", False) if found else False
    if t.op in (Op.READ_NI, Op.WRITE_NI) and not fifo:
        size = lim.max_register_ni_words
    else:
        size = min(lim.max_packet_words, lim.max_frame_words)
        if t.op in (Op.READ, Op.READ_NI):
            size = min(size, reply_limit)
    n = t.args[0]
    if n <= size or (kind == "register" and t.op in (Op.READ, Op.WRITE)):
        return [t]  # register ranges are short
    step = not (t.op in (Op.READ_NI, Op.WRITE_NI))  # incrementing accesses move on
    out = []
    for k in range(0, n, size):
        m = min(size, n - k)
        piece = type(t)(t.op, t.addr + (k if step else 0), (m,))
        if t.data is not None:
            piece.data = t.data[k:k + m]
        out.append(piece)
    return out


def plan(tx: Sequence[Transaction], lim: Limits, owner: bool) -> Plan:
    reply_limit = lim.max_reply_words if owner else lim.max_open_reply_words
    if _fits_as_is(tx, lim, reply_limit):  # the usual case, on every packet: no classifying
        return Plan([list(tx)], [1] * len(tx))
    pieces = [_cut(t, lim, reply_limit) for t in tx]
    flat = [p for ps in pieces for p in ps]
    n_stage = 0
    while n_stage < len(flat) and _staging(flat[n_stage]):
        n_stage += 1
    n_read = 0
    while n_read < len(flat) - n_stage and _read_back(flat[len(flat) - 1 - n_read]):
        n_read += 1
    stage, middle, tail = flat[:n_stage], flat[n_stage:len(flat) - n_read], flat[len(flat) - n_read:]
    if not (owner and (any(map(_waits_for_idle, middle)) or all(map(_staged, tail)))):
        middle, tail = middle + tail, []  # a snapshot: its reads stay together
    packets = _pack(stage, lim, reply_limit, [])
    if middle:
        _check_fits(middle, lim, reply_limit)
        if packets and _fits_all(packets[-1], middle, lim, reply_limit):
            packets[-1] += middle  # the usual case: everything in one packet
        else:
            packets.append(list(middle))
    packets = _pack(tail, lim, reply_limit, packets, extend_last=True)
    return Plan([p for p in packets if p], [len(ps) for ps in pieces])


def _fits_as_is(tx: Sequence[Transaction], lim: Limits, reply_limit: int) -> bool:
    """The whole request fits one packet and no transaction needs cutting."""
    for t in tx:
        if t.op in _WORD_OPS and (t.args[0] > lim.max_frame_words or t.op in (
                Op.READ_NI, Op.WRITE_NI) and t.args[0] > lim.max_register_ni_words):
            return False
    return _fits_all([], list(tx), lim, reply_limit)


def _waits_for_idle(t: Transaction) -> bool:
    """A WAIT for STATUS.RUNNING = 0: after it (if it succeeds) the device holds a finished run."""
    running = REGMAP.STATUS.bit("RUNNING")
    return (t.op == Op.WAIT and t.addr == REGMAP.STATUS.address
            and t.args[0] & running and not t.args[1] & running)


def _header_bytes(packet: Sequence[Transaction]) -> int:
    """An upper bound on the msgpack header of a packet: the fixed keys, then each transaction
    as an array of at most five u32 (1 + 5·5 bytes)."""
    return HEADER_FIXED_BYTES + 26 * len(packet)


def _fits_all(packet: list[Transaction], more: list[Transaction], lim: Limits,
              reply_limit: int) -> bool:
    both = packet + more
    return (len(both) <= lim.max_transactions
            and sum(map(_words, both)) <= lim.max_packet_words
            and sum(map(_reply_words, both)) <= reply_limit
            and _header_bytes(both) <= _header_limit(lim))


def _fits(packet: list[Transaction], t: Transaction, lim: Limits, reply_limit: int) -> bool:
    return _fits_all(packet, [t], lim, reply_limit)


def _header_limit(lim: Limits) -> int:
    return min(MAX_HEADER_BYTES, lim.max_frame_bytes)


def _pack(tx: list[Transaction], lim: Limits, reply_limit: int, packets: list[list[Transaction]],
          extend_last: bool = False) -> list[list[Transaction]]:
    current = packets[-1] if extend_last and packets else None
    for t in tx:
        if current is None or not _fits(current, t, lim, reply_limit):
            current = []
            packets.append(current)
        current.append(t)
    return packets


def _check_fits(packet: list[Transaction], lim: Limits, reply_limit: int) -> None:
    checks = [("transactions", len(packet), lim.max_transactions, "MAX_TRANSACTIONS"),
              ("words", sum(map(_words, packet)), lim.max_packet_words, "MAX_PACKET_WORDS"),
              ("reply words", sum(map(_reply_words, packet)), reply_limit,
               "MAX_REPLY_WORDS" if reply_limit == lim.max_reply_words else "MAX_OPEN_REPLY_WORDS"),
              ("header bytes", _header_bytes(packet), _header_limit(lim),
               "MAX_FRAME_BYTES or MAX_HEADER_BYTES")]
    for what, need, limit, register in checks:
        if need > limit:
            raise ValueError(f"this call needs one packet of {need} {what} that cannot be split "
                             f"(effects, or a snapshot's reads, stay together), and the device "
                             f"accepts {limit} ({register}); use fewer cells or a smaller rank on "
                             "this device")
