"""Analog core of the emulated device: coupled noisy RC / RLC cells integrated by Euler–Maruyama.

The firmware drives :class:`AnalogCore` through ``program`` / ``advance`` / ``read_adc_input``;
everything digital (DAC/ADC codes, FIFOs, registers) lives in ``firmware_sim``.
"""

from __future__ import annotations

from device.analog.core import AnalogCore, CoreParams
from device.analog.profiles import PROFILES, Profile, get_profile

__all__ = ["PROFILES", "AnalogCore", "CoreParams", "Profile", "get_profile"]
