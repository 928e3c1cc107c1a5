"""Every transform by the name ``--algo`` and partition entries use: one line each.

device: NEVER (digital only), ALWAYS (runs on a device), OPTIONAL (digital, or on a device as
``NAME-device``); per_layer: ``--algo NAME`` runs it on every layer separately (one state per
layer, e.g. one thermostat each) rather than on the whole model as one group; uploads: on the
device it uploads the batch's curvature (so the device needs MAX_RANK ≥ batch × outputs).
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
    uploads: bool = False       # on the device it uploads the curvature (batch × outputs rows)


TRANSFORMS: dict[str, Entry] = {
    "sgd": Entry(sgd, NEVER),
    "adam": Entry(adam, NEVER),
    "rmsprop": Entry(rmsprop, NEVER),
    "ngd": Entry(ngd, NEVER),
    "tngd": Entry(tngd, ALWAYS, uploads=True),
    "tngd-adam": Entry(tngd_adam, ALWAYS, uploads=True),
    "langevin": Entry(langevin, OPTIONAL, per_layer=True),
    "overdamped": Entry(overdamped, NEVER, per_layer=True),
    "adl": Entry(adl, OPTIONAL, per_layer=True),
    "natural": Entry(natural_langevin, OPTIONAL, uploads=True),
}


def lookup(name: str, everywhere: bool = False) -> tuple[Entry, bool]:
    """(entry, whether it runs on the device) for a name, with or without '-device';
    ``everywhere``: every entry that can use the device does."""
    name = str(name).strip().lower()
    suffixed = name.endswith("-device")
    key = name[:-7] if suffixed else name
    if key not in TRANSFORMS:
        known = [*TRANSFORMS, *(f"{k}-device" for k, e in TRANSFORMS.items() if e.device == OPTIONAL)]
        raise ValueError(f"unknown scheme {name!r} in the partition; known: {', '.join(known)}")
    entry = TRANSFORMS[key]
    if suffixed and entry.device != OPTIONAL:
        raise ValueError(f"{key!r} has no device form: write {key!r}" if entry.device == NEVER else
                         f"{key!r} always runs on the device: write {key!r}")
    return entry, entry.device == ALWAYS or (entry.device == OPTIONAL and (suffixed or everywhere))
