"""Fitting what the host wants to send into the packets the device at hand accepts.

A device advertises its resource limits (transactions per packet, words per packet and per
frame, reply words, words per non-incrementing register access); a small board advertises less
than the emulator. The host splits a request where the split cannot change its meaning:

- inside the leading *staging* part: writes to shadowed registers and memories do nothing until
  COMMIT, so an upload may take several packets (the shadow bank holds the pieces);
- inside the trailing *read-back* part: plain reads after the last effect (a run's WAIT, its
  COMMIT) read a device that nobody else can change while this host's token holds the lease,
  and every packet carries the token, so a later packet of reads reads the same run.

A large memory access is first cut into pieces of at most one frame / one packet of words.
Everything between the two parts (COMMIT, RUN, WAIT, provenance reads) stays in one packet; a
request whose middle does not fit is refused with ValueError naming the limit, before anything
is sent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from protocol.codec import Transaction
from protocol.limits import Limits
from protocol.ops import Op
from protocol.regmap import REGMAP, Window

_WORD_OPS = (Op.READ, Op.WRITE, Op.READ_NI, Op.WRITE_NI)


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
    if t.op != Op.WRITE:
        return False
    found = _target(t)
    return found is not None and bool(getattr(found[1], "shadow", False))


def _read_back(t: Transaction) -> bool:
    return t.op in (Op.READ, Op.READ_NI)


def _words(t: Transaction) -> int:
    return t.args[0] if t.op in _WORD_OPS else 0


def _reply_words(t: Transaction) -> int:
    return t.args[0] if t.op in (Op.READ, Op.READ_NI) else 1 if t.op == Op.RMW else 0


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
        return [t]  # register ranges are short; a refusal names the limit below
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
    pieces = [_cut(t, lim, reply_limit) for t in tx]
    flat = [p for ps in pieces for p in ps]
    n_stage = 0
    while n_stage < len(flat) and _staging(flat[n_stage]):
        n_stage += 1
    n_read = 0
    while n_read < len(flat) - n_stage and _read_back(flat[len(flat) - 1 - n_read]):
        n_read += 1
    stage, middle, tail = flat[:n_stage], flat[n_stage:len(flat) - n_read], flat[len(flat) - n_read:]
    packets = _pack(stage, lim, reply_limit, [])
    if middle:
        _check_fits(middle, lim, reply_limit)
        if packets and _fits_all(packets[-1], middle, lim, reply_limit):
            packets[-1] += middle  # the usual case: everything in one packet
        else:
            packets.append(list(middle))
    packets = _pack(tail, lim, reply_limit, packets, extend_last=True)
    return Plan([p for p in packets if p], [len(ps) for ps in pieces])


def _fits(packet: list[Transaction], t: Transaction, lim: Limits, reply_limit: int) -> bool:
    return (len(packet) + 1 <= lim.max_transactions
            and sum(map(_words, packet)) + _words(t) <= lim.max_packet_words
            and sum(map(_reply_words, packet)) + _reply_words(t) <= reply_limit)


def _fits_all(packet: list[Transaction], more: list[Transaction], lim: Limits,
              reply_limit: int) -> bool:
    return (len(packet) + len(more) <= lim.max_transactions
            and sum(map(_words, packet + more)) <= lim.max_packet_words
            and sum(map(_reply_words, packet + more)) <= reply_limit)


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
               "MAX_REPLY_WORDS" if reply_limit == lim.max_reply_words else "MAX_OPEN_REPLY_WORDS")]
    for what, need, limit, register in checks:
        if need > limit:
            raise ValueError(f"this call needs one packet of {need} {what} that cannot be split "
                             f"(between its first effect and its last), and the device accepts "
                             f"{limit} ({register}); use fewer cells or a smaller rank on this device")
