"""Recent replies by (client, sequence number): a retried packet is answered, not re-run.

Bounded by entries per client, by clients, and by the bytes of read payloads held, so a client
reading large windows cannot make the cache hold gigabytes. A reply too large to keep is
replaced by a marker, so a retry is answered TOO_LARGE ("executed once; re-read the data") and
never executes twice. Each reply is kept with a digest of the request that produced it, so a
request that reuses a (client, seq) for different content is told so instead of being handed
another packet's reply.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from protocol import limits


def _payload_bytes(reply: Any) -> int:
    return sum(getattr(d, "nbytes", 0) for d in getattr(reply, "data", ()) if d is not None)


TOO_BIG_TO_KEEP = object()
"""Stands in for a reply whose read payload was over the byte budget."""


class ReplyCache:
    def __init__(self, per_client: int = limits.REPLY_CACHE_PER_CLIENT,
                 clients: int = limits.REPLY_CACHE_CLIENTS,
                 max_bytes: int = limits.REPLY_CACHE_BYTES) -> None:
        self.per_client, self.clients, self.max_bytes = per_client, clients, max_bytes
        self._store: OrderedDict[bytes, OrderedDict[int, tuple[Any, int, Any]]] = OrderedDict()
        self.bytes = 0

    def get(self, cid: bytes, seq: int) -> tuple[Any, Any] | None:
        """(reply, digest of the request it answered), or None."""
        entry = self._store.get(cid, {}).get(seq)
        return None if entry is None else (entry[0], entry[2])

    def put(self, cid: bytes, seq: int, reply: Any, digest: Any = None) -> None:
        size = _payload_bytes(reply)
        if size > self.max_bytes:
            reply, size = TOO_BIG_TO_KEEP, 0
        entries = self._store.setdefault(cid, OrderedDict())
        self._store.move_to_end(cid)
        old = entries.pop(seq, None)
        self.bytes -= old[1] if old else 0
        entries[seq] = (reply, size, digest)
        self.bytes += size
        while len(entries) > self.per_client:
            self.bytes -= entries.popitem(last=False)[1][1]
        while len(self._store) > self.clients or (self.bytes > self.max_bytes and self._store):
            oldest = next(iter(self._store.values()))
            if not oldest:
                self._store.popitem(last=False)
                continue
            self.bytes -= oldest.popitem(last=False)[1][1]
            if not oldest:
                self._store.popitem(last=False)
