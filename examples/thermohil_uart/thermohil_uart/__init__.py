"""thermohil-uart: an example third-party thermohil driver.

It carries the unchanged register protocol (protocol.codec packets) over a length-prefixed
byte stream, as a UART or USB-serial bridge to a real board would. ``driver.UartDriver`` is
the host side (URL scheme ``uart``, registered through the ``thermohil.drivers`` entry point);
``bridge`` is a board stand-in that answers from the emulated firmware.
"""
from __future__ import annotations

__version__ = "0.1.0"
