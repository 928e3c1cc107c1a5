"""Typed errors of the host library. Nothing fails silently: no zeros on timeout."""
from __future__ import annotations

from protocol.status import DESCRIPTIONS, Status


class DeviceError(Exception):
    """The device refused or failed a request; ``status`` is the protocol status code."""

    def __init__(self, message: str, status: Status = Status.INTERNAL, index: int | None = None) -> None:
        super().__init__(message)
        self.status, self.index = status, index

    @classmethod
    def from_reply(cls, status: Status, message: str, index: int | None = None) -> "DeviceError":
        kind = {Status.NOT_OWNER: NotOwner}.get(status, DeviceError)
        text = f"{status.name} ({DESCRIPTIONS.get(status, '?')})" + (f": {message}" if message else "")
        return kind(text, status, index)


class NotOwner(DeviceError):
    """A write was refused because another host holds the device (or it was never claimed)."""


class LeaseLost(NotOwner):
    """This host's lease ended (it was silent for LEASE_MS, or another host took the device
    over), so the device refused to hand it state that may belong to someone else's run."""


class DeviceTimeout(DeviceError, TimeoutError):
    """No reply within the configured timeout (after the configured retries)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Status.TIMEOUT)


class DeviceDied(DeviceTimeout):
    """The device process is gone (a ``spawn://`` child exited): raised at once, not after the
    timeout, with its exit code and the end of its log."""


class DeviceUnplugged(DeviceTimeout):
    """The link to the device is not there (connection refused, the port's device node gone):
    the board is unplugged or powered off, as opposed to attached but silent (DeviceTimeout).
    Raised after the link stayed down through every attempt."""


class LinkDown(ConnectionError):
    """Raised by a transport's link methods when it can tell that the device is not attached;
    the driver base waits for it to come back until the attempt's deadline."""


class LinkCorrupt(ConnectionError):
    """Raised by a transport's link methods when a message arrived damaged (CRC) or the device
    NAKed the request: the driver base re-sends at once."""


class RunAborted(DeviceError):
    """A run ended before its RUN_TIME (stopped, its owner's lease lapsed, the emulator's
    wall-time budget ran out, or a device fault): its average covers only part of the run."""

    def __init__(self, message: str, end: str) -> None:
        super().__init__(message, Status.OK)
        self.end = end


class DeviceReset(DeviceError):
    """BOOT_ID changed: the device rebooted and lost its configuration. Sticky: every later
    call raises it again, without sending anything, until ``dev.recover()`` (or
    ``dev.acknowledge_reset()``), so a caller that catches it once cannot go on computing on
    the rebooted device's defaults."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__(f"device was reset (BOOT_ID {old:#010x} -> {new:#010x}); its configuration "
                         "is lost — call dev.recover() to re-claim and re-apply it", Status.OK)
        self.old, self.new = old, new


class DeviceSaturated(DeviceError):
    """Node voltages hit the rails during a run: the result would be garbage."""

    def __init__(self, message: str, cells: list[int]) -> None:
        super().__init__(message, Status.OK)
        self.cells = cells
