"""thermohil host library: connect to a thermodynamic device (emulated or real) and use it.

    import host
    with host.connect("spawn://?cells=64") as dev:
        dev.load_coupling(A); dev.load_bias(b); dev.commit()
        dev.run(t=50.0); m = dev.mean()
"""
from __future__ import annotations

from host.thermo_device import Deferred, ThermoDevice, connect
from host.errors import (DeviceDied, DeviceError, DeviceReset, DeviceSaturated, DeviceTimeout,
                         DeviceUnplugged, LeaseLost, NotOwner, RunAborted)

_SUBPACKAGES = ("linalg", "nn", "optim", "data", "training")


def __getattr__(name: str):
    """``host.linalg``, ``host.optim``, ``host.train`` ... imported on first use, so that
    ``import host`` stays light (and works on a machine with only a real board)."""
    import importlib
    if name in _SUBPACKAGES:
        return importlib.import_module(f"host.{name}")
    if name in ("train", "TrainConfig"):
        return getattr(importlib.import_module("host.training"), name)
    if name == "Objective":
        return importlib.import_module("host.objective").Objective
    if name == "load_run":
        return importlib.import_module("host.run_record").load_run
    raise AttributeError(f"module 'host' has no attribute {name!r}")


__all__ = ["linalg", "nn", "optim", "data", "train", "TrainConfig", "Objective", "load_run", "connect", "ThermoDevice",
           "Deferred", "DeviceError", "DeviceTimeout", "DeviceDied", "DeviceUnplugged", "DeviceReset",
           "DeviceSaturated", "NotOwner", "LeaseLost", "RunAborted"]
