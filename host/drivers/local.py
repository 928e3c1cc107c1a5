"""local:// — the emulated firmware in this process, no socket (fast tests, notebooks).

Packets still go through the wire codec, so local:// behaves exactly like the daemon. There is
no link, so nothing is retried: a packet that does not complete within the timeout (a WAIT that
never comes true) is abandoned and answered with DeviceTimeout.
Query parameters: cells, profile, seed, serial, max_rank, timeout (others are a ValueError).
"""
from __future__ import annotations

import time

from host.drivers.base import PacketDriver
from host.errors import DeviceTimeout
from protocol.codec import encode_reply


class LocalDriver(PacketDriver):
    schemes = ("local",)
    QUERY = ("cells", "profile", "seed", "serial", "max_rank", "timeout")
    DEFAULT_TIMEOUT = 30.0
    DEFAULT_RETRIES = 0  # no link: a retry could only re-run the transactions before a WAIT

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> None:
        # ``retries`` is accepted (host.connect passes it to every driver) but there is no link
        # to retry on: a resend could only re-run the transactions before a WAIT
        super().__init__(url, timeout=timeout, retries=0)
        q = self.query
        from device.emulator import DEFAULT_SERIAL, build_firmware  # lazy: host works without it
        from firmware_sim import Pending
        self.fw = build_firmware(int(q["cells"]) if "cells" in q else None, profile=q.get("profile", "ideal"),
                                 seed=int(q.get("seed", 0)),
                                 serial=int(q["serial"], 0) if "serial" in q else DEFAULT_SERIAL,
                                 max_rank=int(q["max_rank"]) if "max_rank" in q else None)
        self._pending_type = Pending
        self._request: list[bytes] | None = None

    def _send(self, frames: list, deadline: float) -> None:
        self._request = [bytes(memoryview(f)) for f in frames]

    def _receive(self, deadline: float) -> list:
        assert self._request is not None
        reply = self.fw.execute(self._request, timeout=max(0.0, deadline - time.monotonic()))
        self._request = None
        if isinstance(reply, self._pending_type):
            self.fw.abandon(reply)  # the transactions before its WAIT stay applied
            raise TimeoutError("the packet did not complete before the deadline")
        return [bytes(memoryview(f)) for f in encode_reply(reply)]

    def _failure(self, failures: list[tuple[str, str]], per_attempt: float, elapsed: float,
                 request_bytes: int) -> DeviceTimeout:
        return DeviceTimeout(f"the local device did not complete the packet within "
                             f"{per_attempt:g} s (a WAIT that never came true, or a run longer "
                             "than the timeout)")

    def close(self) -> None:
        self.fw.shutdown()
