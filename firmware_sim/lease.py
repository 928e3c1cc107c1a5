"""Ownership lease: one host at a time may write; a silent host loses the device."""
from __future__ import annotations

import time


class Lease:
    def __init__(self, length_ms: int = 10_000, clock=time.monotonic) -> None:
        self.length_ms = length_ms
        self.owner = 0
        self._expires = 0.0
        self._clock = clock
        self.expired = False  # set when a lease ran out; the firmware reports and clears it

    def live_owner(self) -> int:
        """Current owner token, or 0; expires a stale lease as a side effect."""
        if self.owner and self._clock() >= self._expires:
            self.owner = 0
            self.expired = True
        return self.owner

    def left_ms(self) -> int:
        if not self.live_owner():
            return 0
        return max(0, int((self._expires - self._clock()) * 1000))

    def renew(self, token: int) -> None:
        if token and token == self.live_owner():
            self._expires = self._clock() + self.length_ms / 1000

    def can_claim(self, token: int) -> bool:
        return token != 0 and self.live_owner() in (0, token)

    def claim(self, token: int) -> None:
        self.owner = token
        self._expires = self._clock() + self.length_ms / 1000

    def release(self) -> None:
        self.owner = 0
