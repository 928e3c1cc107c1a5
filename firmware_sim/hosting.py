"""Hosting the firmware behind any transport: the packet handler a board's main loop calls.

A transport (the ZeroMQ daemon, a serial bridge, a board's own I/O loop) does three things:

    host = PacketHost(firmware)
    for route, reply in host.submit(frames, route): send(route, encode_reply(reply))
    ... and, whenever it is idle or every few ms while packets are parked:
    for route, reply in host.poll(): send(route, encode_reply(reply))

``frames`` are the request's frames as received (untrusted bytes: the firmware decodes and
checks them, and answers anything malformed with a structured error reply). ``route`` is
whatever the transport needs to send the reply back (a ZeroMQ peer identity, a link; None for a
link with one peer). A packet whose WAIT is false is *parked*: ``submit`` returns nothing for it,
and a later ``poll`` returns its reply once the condition holds, its timeout passes or its
token loses the lease. A retry of a parked packet re-routes the eventual reply to the retry's
route. ``poll`` also runs the firmware's housekeeping (lease expiry); ``wait`` sleeps until the
firmware signals a change or the next parked deadline, whichever comes first.
"""
from __future__ import annotations

from typing import Any, Hashable

from firmware_sim.firmware import Firmware, Pending
from protocol.codec import Reply

#: How often parked WAITs are re-checked when nothing signalled a change (a WAIT may watch a
#: register that changes by itself, such as UPTIME_MS or LEASE_LEFT_MS).
PARKED_TICK_S = 0.05
#: How often housekeeping runs when nothing is parked.
HOUSEKEEPING_S = 0.2


class PacketHost:
    def __init__(self, firmware: Firmware) -> None:
        self.fw = firmware
        self.parked: dict[tuple[bytes, int], tuple[Pending, Any]] = {}

    def submit(self, frames: list, route: Hashable = None) -> list[tuple[Any, Reply]]:
        """Execute one request; its reply now, or nothing while it is parked at a WAIT."""
        out = self.fw.handle(frames)
        if isinstance(out, Pending):
            self.parked[out.key] = (out, route)  # a retry re-routes the reply to itself
            return []
        return [(route, out)]

    def poll(self) -> list[tuple[Any, Reply]]:
        """Re-check parked packets (returning those that completed) and run housekeeping."""
        done = []
        for key, (p, route) in list(self.parked.items()):
            out = self.fw.resume(p)
            if not isinstance(out, Pending):
                del self.parked[key]
                done.append((route, out))
        self.fw.tick()
        return done

    def next_wakeup(self) -> float:
        """Seconds until ``poll`` has something to do even if nothing signals a change."""
        if not self.parked:
            return HOUSEKEEPING_S
        deadlines = [p.deadline for p, _ in self.parked.values() if p.deadline is not None]
        left = min(deadlines) - self.fw.clock() if deadlines else PARKED_TICK_S
        return max(0.001, min(PARKED_TICK_S, left))

    def wait(self, timeout: float | None = None) -> None:
        """Sleep until the firmware signals a change (a run ended, a sample, an IRQ) or
        ``timeout`` (default: ``next_wakeup()``) passes."""
        with self.fw.cond:
            self.fw.cond.wait(self.next_wakeup() if timeout is None else timeout)
