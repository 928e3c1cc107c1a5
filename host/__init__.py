"""thermohil host library: connect to a thermodynamic device (emulated or real) and use it.

    import host
    with host.connect("spawn://?cells=64") as dev:
        dev.load_coupling(A); dev.load_bias(b); dev.commit()
        dev.run(t=50.0); m = dev.mean()
"""
from __future__ import annotations

from host.device import Deferred, ThermoDevice, connect
from host.errors import DeviceError, DeviceReset, DeviceSaturated, DeviceTimeout, NotOwner

__all__ = ["connect", "ThermoDevice", "Deferred", "DeviceError", "DeviceTimeout", "DeviceReset",
           "DeviceSaturated", "NotOwner"]
