"""thermohil-uart: an example third-party thermohil driver.

It carries the protocol over the byte-stream transport (SYNC, CRCs, NAK, resync), as a UART or
USB-serial bridge to a real board would. ``driver.UartDriver`` is the host side (URL scheme
``uart``, registered through the ``thermohil.drivers`` entry point); ``bridge`` is a board
stand-in that serves the line from the emulated firmware.
"""
from __future__ import annotations

__version__ = "0.1.0"
