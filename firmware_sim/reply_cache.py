"""Recent replies by (client, sequence number): a retried packet is answered, not re-run."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from protocol import limits


class ReplyCache:
    def __init__(self, per_client: int = limits.REPLY_CACHE_PER_CLIENT,
                 clients: int = limits.REPLY_CACHE_CLIENTS) -> None:
        self.per_client, self.clients = per_client, clients
        self._store: OrderedDict[bytes, OrderedDict[int, Any]] = OrderedDict()

    def get(self, cid: bytes, seq: int) -> Any | None:
        entries = self._store.get(cid)
        return None if entries is None else entries.get(seq)

    def put(self, cid: bytes, seq: int, reply: Any) -> None:
        entries = self._store.setdefault(cid, OrderedDict())
        self._store.move_to_end(cid)
        entries[seq] = reply
        while len(entries) > self.per_client:
            entries.popitem(last=False)
        while len(self._store) > self.clients:
            self._store.popitem(last=False)
