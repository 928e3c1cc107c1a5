"""URL → driver. Built-in schemes plus any registered under the entry-point group
``thermohil.drivers`` (scheme = "module:Class"), so a board vendor's package adds its own."""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from urllib.parse import urlparse

from host.drivers.base import Driver, LinkStats, PacketDriver

ENTRY_POINT_GROUP = "thermohil.drivers"
BUILTIN = {
    "tcp": "host.drivers.zmq_driver:ZmqDriver",
    "ipc": "host.drivers.zmq_driver:ZmqDriver",
    "local": "host.drivers.local:LocalDriver",
    "spawn": "host.drivers.spawn:SpawnDriver",
}


def available_schemes() -> dict[str, str]:
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def driver_class(scheme: str) -> type[Driver]:
    target = available_schemes().get(scheme)
    if target is None:
        raise ValueError(f"no driver for URL scheme {scheme!r}; known: "
                         f"{', '.join(sorted(available_schemes()))} (third-party drivers register "
                         f"under the entry-point group {ENTRY_POINT_GROUP!r})")
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


def open_driver(url: str, **options: object) -> Driver:
    scheme = urlparse(url).scheme
    if not scheme:
        raise ValueError(f"device URL {url!r} has no scheme (e.g. tcp://127.0.0.1:5555, "
                         "spawn://?cells=64)")
    return driver_class(scheme)(url, **options)


__all__ = ["Driver", "LinkStats", "PacketDriver", "open_driver", "driver_class",
           "available_schemes", "ENTRY_POINT_GROUP"]
