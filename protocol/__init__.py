"""The host–device contract: register map, wire codec, op and status codes, limits.

Depends on msgpack and numpy only, so a firmware engineer or a third-party driver can use it
without the emulator.
"""
from __future__ import annotations

from protocol.codec import (
    Packet, Reply, Transaction, ProtocolError, decode_reply, decode_request, encode_reply,
    encode_request, PROTOCOL_VERSION,
)
from protocol.ops import Op
from protocol.regmap import REGMAP, Field, Register, RegisterMap, Window
from protocol.status import RunEnd, Status

__all__ = [
    "Packet", "Reply", "Transaction", "ProtocolError", "decode_reply", "decode_request",
    "encode_reply", "encode_request", "PROTOCOL_VERSION", "Op", "REGMAP", "Field", "Register",
    "RegisterMap", "Window", "Status", "RunEnd",
]
