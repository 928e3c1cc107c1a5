"""The device firmware, in software: what a real board's soft core would run.

It owns register semantics, the shadow bank and COMMIT, the run scheduler, DAC/ADC conversion,
the sample FIFO, the accumulator, the ownership lease and the reply cache, and it talks to the
analog core only through the small interface in ``core_interface``.
"""
from __future__ import annotations

from firmware_sim.firmware import Firmware, Pending

__all__ = ["Firmware", "Pending"]
