"""Status codes of a reply. The numbers are part of the wire contract (docs/protocol.md)."""
from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    OK = 0
    BAD_VERSION = 1   # header protocol major version differs from the device's
    MALFORMED = 2     # header or frames do not follow the framing rules
    BAD_OP = 3        # unknown op code
    BAD_ADDRESS = 4   # nothing mapped there, or past the window's depth on this device
    ACCESS = 5        # write to RO, read of a write-only, NI op on a non-port, ...
    RANGE = 6         # value outside the register's range; invalid configuration at COMMIT
    NOT_OWNER = 7     # write without the live owner token
    BUSY = 8          # not allowed while the dynamics run (e.g. writing STATE)
    TIMEOUT = 9       # a WAIT condition did not become true in time
    TOO_LARGE = 10    # too many transactions, words or bytes
    INTERNAL = 11     # device fault; the device stays up
    ABORTED = 12      # not executed because an earlier transaction in the packet failed
    SEQ_REUSED = 13   # this (client, seq) was used before for a different packet; nothing ran


DESCRIPTIONS = {
    Status.OK: "success",
    Status.BAD_VERSION: "protocol major version mismatch",
    Status.MALFORMED: "malformed packet",
    Status.BAD_OP: "unknown operation",
    Status.BAD_ADDRESS: "no register or memory at this address",
    Status.ACCESS: "access mode not allowed for this register",
    Status.RANGE: "value out of range",
    Status.NOT_OWNER: "device is owned by another host (or not claimed)",
    Status.BUSY: "not allowed while running",
    Status.TIMEOUT: "wait condition timed out",
    Status.TOO_LARGE: "packet exceeds a protocol limit",
    Status.INTERNAL: "internal device error",
    Status.ABORTED: "not executed: an earlier transaction failed",
    Status.SEQ_REUSED: "sequence number reused for a different packet: nothing was executed",
}


class RunEnd(IntEnum):
    """STATUS.RUN_END: how the last run ended. Only DONE means state and average cover it whole."""
    NONE = 0        # no run since boot, or one is in progress
    DONE = 1        # RUN_TIME elapsed
    STOPPED = 2     # CTRL.STOP
    OWNER_LOST = 3  # the lease of the host that started it expired, or that host released
    BUDGET = 4      # the emulator's wall-time budget (EMU_RUN_BUDGET) ran out
    FAULT = 5       # the run thread failed


RUN_END_WHY = {
    RunEnd.STOPPED: "it was stopped (CTRL.STOP) before RUN_TIME elapsed",
    RunEnd.OWNER_LOST: "the lease of the host that started it ended (expired or released)",
    RunEnd.BUDGET: "the emulator stopped it at its wall-time budget (EMU_RUN_BUDGET)",
    RunEnd.FAULT: "the device's run thread failed (see STATUS.LAST_ERROR and the daemon log)",
}
