"""Lease keep-alive: the device stays this host's while the host computes between calls.

The lease exists to free a device whose host died or froze; a host that is merely busy (a slow
digital step, an evaluation on a large test set) must not lose it. A thread sends one cheap read
carrying the token whenever nothing was sent for a third of the lease. A process that dies or is
frozen takes the thread with it, so the lease still frees the device then.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

from host.errors import DeviceError, NotOwner

if TYPE_CHECKING:
    from host.thermo_device import ThermoDevice


class KeepAlive(threading.Thread):
    def __init__(self, dev: "ThermoDevice") -> None:
        super().__init__(name="thermohil-keepalive", daemon=True)
        # weak: a device object nobody holds any more is not kept alive (and owned) by its pings
        self.dev = weakref.ref(dev)
        self.period = dev.lease_s / 6
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.period):
            dev = self.dev()
            if dev is None:
                return  # dropped without close(): its lease frees the device
            self.period = dev.lease_s / 6
            go_on = self._tick(dev)
            del dev  # no strong reference while waiting
            if not go_on:
                return

    @staticmethod
    def _tick(dev: "ThermoDevice") -> bool:
        """Renew the lease if the host has been quiet for a third of it; False once it is gone."""
        if not dev.token or time.monotonic() - dev.last_sent < dev.lease_s / 3:
            return True
        if not getattr(dev.driver, "responsive", True) or getattr(dev.driver, "reset", None):
            return True  # the host's next call deals with a silent or rebooted device
        if not dev.link.acquire(blocking=False):
            return True  # the host is in a call: its own packets renew the lease
        try:
            if dev.token:
                dev.renew_lease()
        except NotOwner:
            return False  # the lease is gone: the host's next call says so (LeaseLost)
        except DeviceError:
            pass  # timeout, reset: recorded by the driver, raised by the host's next call
        finally:
            dev.link.release()
        return True

    def stop(self) -> None:
        self.halt.set()
        if self is not threading.current_thread():
            self.join(timeout=5)
