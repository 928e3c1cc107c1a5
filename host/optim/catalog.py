"""Every transform by the name ``--algo`` and partition entries use: one line each.

device: NEVER (digital only), ALWAYS (runs on a device), OPTIONAL (digital, or on a device as
``NAME-device``); per_layer: ``--algo NAME`` runs it on every layer separately (one state per
layer, e.g. one thermostat each) rather than on the whole model as one group.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from host.optim.adam import adam
from host.optim.adaptive_langevin import adl
from host.optim.langevin import langevin
from host.optim.natural_langevin import natural_langevin
from host.optim.ngd import ngd
from host.optim.overdamped import overdamped
from host.optim.rmsprop import rmsprop
from host.optim.sgd import sgd
from host.optim.tngd import tngd
from host.optim.tngd_adam import tngd_adam

NEVER, ALWAYS, OPTIONAL = "never", "always", "optional"


class Entry(NamedTuple):
    build: Callable
    device: str
    per_layer: bool = False


natural_langevin.device_only = ("t", "init", "form")   # the digital sample is exact

TRANSFORMS: dict[str, Entry] = {
    "sgd": Entry(sgd, NEVER),
    "adam": Entry(adam, NEVER),
    "rmsprop": Entry(rmsprop, NEVER),
    "ngd": Entry(ngd, NEVER),
    "tngd": Entry(tngd, ALWAYS),
    "tngd-adam": Entry(tngd_adam, ALWAYS),
    "langevin": Entry(langevin, OPTIONAL, per_layer=True),
    "overdamped": Entry(overdamped, NEVER, per_layer=True),
    "adl": Entry(adl, OPTIONAL, per_layer=True),
    "natural": Entry(natural_langevin, OPTIONAL),
}


def lookup(name: str) -> tuple[Entry, bool]:
    """(entry, on the device) for a name, with or without '-device'."""
    name = str(name).strip().lower()
    on_device = name.endswith("-device") and name[:-7] in TRANSFORMS
    key = name[:-7] if on_device else name
    if key not in TRANSFORMS or (on_device and TRANSFORMS[key].device != OPTIONAL):
        known = [*TRANSFORMS, *(f"{k}-device" for k, e in TRANSFORMS.items() if e.device == OPTIONAL)]
        raise ValueError(f"unknown scheme {name!r} in the partition; known: {', '.join(known)}")
    return TRANSFORMS[key], on_device or TRANSFORMS[key].device == ALWAYS
