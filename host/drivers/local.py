"""local:// — the emulated firmware in this process, no socket (fast tests, notebooks).

Packets still go through the wire codec, so local:// behaves exactly like the daemon.
Query parameters: cells, profile, seed, serial, max_rank, timeout (others are a ValueError).
"""
from __future__ import annotations

from host.drivers.base import PacketDriver, url_query
from host.errors import DeviceTimeout
from protocol.codec import encode_reply


class LocalDriver(PacketDriver):
    schemes = ("local",)
    QUERY = ("cells", "profile", "seed", "serial", "max_rank", "timeout")

    def __init__(self, url: str, *, timeout: float = 30.0, **_: object) -> None:
        q = url_query(url, self.QUERY)
        super().__init__(url, timeout=float(q.get("timeout", timeout)))
        from device.emulator import DEFAULT_SERIAL, build_firmware  # lazy: host works without it
        from firmware_sim import Pending
        self.fw = build_firmware(int(q["cells"]) if "cells" in q else None, profile=q.get("profile", "ideal"),
                                 seed=int(q.get("seed", 0)),
                                 serial=int(q["serial"], 0) if "serial" in q else DEFAULT_SERIAL,
                                 max_rank=int(q["max_rank"]) if "max_rank" in q else None)
        self._pending_type = Pending

    def _exchange(self, frames: list, seq: int, timeout: float) -> list:
        reply = self.fw.execute([bytes(memoryview(f)) for f in frames], timeout=timeout)
        if isinstance(reply, self._pending_type):
            self.fw.abandon(reply)  # the transactions before its WAIT stay applied
            raise DeviceTimeout(f"local device did not complete the packet within {timeout:g} s")
        return [bytes(memoryview(f)) for f in encode_reply(reply)]

    def close(self) -> None:
        self.fw.shutdown()
