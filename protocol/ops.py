"""Transaction op codes (IPbus-style). The numbers are part of the wire contract."""
from __future__ import annotations

from enum import IntEnum


class Op(IntEnum):
    READ = 0      # [op, addr, n]                     -> reply frame: n words
    WRITE = 1     # [op, addr, n]   + one frame of n words
    READ_NI = 2   # [op, addr, n]   non-incrementing: n reads of the same port (FIFO pop)
    WRITE_NI = 3  # [op, addr, n]   + one frame; n writes to the same address
    RMW = 4       # [op, addr, and_mask, or_mask]    -> reply frame: 1 word (value before)
    WAIT = 5      # [op, addr, mask, value, timeout_ms]: deferred until (word & mask) == value


#: Number of integers after the address in each transaction.
ARITY = {Op.READ: 1, Op.WRITE: 1, Op.READ_NI: 1, Op.WRITE_NI: 1, Op.RMW: 2, Op.WAIT: 3}
#: Ops that carry a payload frame in the request / in the reply.
TAKES_FRAME = frozenset({Op.WRITE, Op.WRITE_NI})
GIVES_FRAME = frozenset({Op.READ, Op.READ_NI, Op.RMW})
#: Ops that change device state (need ownership).
MUTATING = frozenset({Op.WRITE, Op.WRITE_NI, Op.RMW})
