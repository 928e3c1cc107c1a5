"""Any partition of the layers, written as text: what ``--algo partitioned --partition`` takes.

    '0:tngd(lam=0.01), *:adam(lr=0.003)'       natural gradient on the first layer, Adam on the rest
    '0:adam(lr=0.005), *:adl'                   Adam on the first layer, AdL on each other one
    '0:adl(tau=1e-3), 1-2:overdamped, *:langevin-device'

Entries ``LAYERS:NAME[(name=value, ...)]`` separated by ',' or ';': LAYERS is an index, a range
``a-b`` (inclusive), several joined by ``+``, or ``*`` for every layer no other entry names;
NAME is any transform of ``host.optim.catalog`` (``NAME-device`` for the device-assisted form
of one that has both); the parameters in parentheses are that transform's own. A bare
``NAME[(…)]`` means every layer. Each layer is its own group (its own state: a thermostat, a
TNGD block).
"""
from __future__ import annotations

import re
from typing import Any

from host.optim.catalog import lookup
from host.optim.groups import Group
from host.optim.partition import assign, check_selectors, parse_layers
from host.optim.partition import partition as partition_of
from host.optim.schedules import Schedule
from host.optim.signature import convert, hyperparameters
from host.optim.transform import Transform

_ENTRY = re.compile(r"\s*([^:,;()]+?)\s*:\s*([A-Za-z_][\w-]*)\s*(?:\(([^()]*)\))?\s*(?:[,;]|$)")


def parse(text: str) -> list[tuple[tuple[int, ...] | None, str, dict[str, str]]]:
    """[(layers or None for the rest, name, {parameter: text})] of a partition string."""
    text = str(text)
    if not text.strip():
        raise ValueError("empty partition: give entries like '0:adl, *:langevin'")
    if ":" not in text:                 # a bare name: every layer runs it
        if not re.fullmatch(r"\s*[A-Za-z_][\w-]*\s*(\([^()]*\))?\s*", text):
            lookup(text)                # (says which names there are)
        text = "*:" + text
    entries, pos = [], 0
    while pos < len(text) and text[pos:].strip():
        m = _ENTRY.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse the partition {text!r} at {text[pos:]!r}: expected entries "
                             "LAYERS:NAME[(name=value, ...)] separated by ',' or ';', e.g. '0:adl, *:langevin'")
        layers, name, params = m.groups()
        where = m.group(0).strip(" ,;")
        values: dict[str, str] = {}
        for item in (params or "").split(","):
            if not item.strip():
                continue
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"bad scheme parameter {item.strip()!r} in {where!r}: write name=value")
            if key.strip() in values:
                raise ValueError(f"{key.strip()} is given twice in {where!r}")
            values[key.strip()] = val.strip()
        entries.append((parse_layers(layers), name, values))
        pos = m.end()
    check_selectors([layers for layers, _, _ in entries])
    return entries


def partitioned(partition: str = "0:adl, *:langevin", h: float | Schedule | None = None,
                tau: float | Schedule | None = None, gamma: float | None = None, sigma_a: float | None = None,
                eps: float | None = None, xi0: float | None = None, lam: float | None = None,
                device: Any = None, stability: float | None = None, everywhere: bool = False) -> Transform:
    """Any partition of the layers into transforms, e.g. '0:tngd(lam=0.01), *:adam(lr=0.003)'

    Args:
        partition: LAYERS:NAME[(name=value,...)] entries, e.g. '0:adl(tau=1e-3), 1-2:overdamped,
            *:langevin' or '0:tngd(lam=0.01), *:adam(lr=0.003)'
        h: step size h of every entry that takes one and sets none
        tau: temperature τ, likewise
        gamma: friction γ, likewise
        sigma_a: AdL noise σ_A, likewise
        eps: AdL thermostat coupling ε, likewise
        xi0: initial thermostat ξ0, likewise
        lam: damping λ (natural gradient, natural Langevin), likewise
        stability: emulator fidelity of the device entries, likewise

    ``everywhere``: every entry that can use the device does (``--algo partitioned-device``).
    """
    shared = {k: v for k, v in dict(h=h, tau=tau, gamma=gamma, sigma_a=sigma_a, eps=eps, xi0=xi0, lam=lam,
                                     stability=stability).items() if v is not None}
    transforms, labels = {}, {}
    for i, (layers, name, text_values) in enumerate(parse(partition)):
        entry, on_device = lookup(name, everywhere)
        params = hyperparameters(entry.build, with_device=on_device)
        wrong = sorted(k for k in text_values if k not in params)
        if wrong:
            raise ValueError(f"scheme {name!r} takes no parameter(s) {', '.join(wrong)}; "
                             f"it takes: {', '.join(params)}")
        kwargs = {k: v for k, v in shared.items() if k in params}
        kwargs.update({k: convert(v, params[k][0], k, partition) for k, v in text_values.items()})
        if on_device:
            if device is None:
                raise ValueError(f"the partition entry {name!r} runs on a device: give one (device= from "
                                 "Python, --device URL from the command line)")
            kwargs["device"] = device
        try:
            transforms[i] = entry.build(**kwargs)
        except ValueError as e:
            raise ValueError(f"partition entry {name!r}: {e}") from None
        labels["*" if layers is None else layers] = i
    return partition_of(transforms, labels)


def needs_device(partition: str, everywhere: bool = False) -> bool:
    """Whether a partition string has an entry that runs on the device."""
    return any(lookup(name, everywhere)[1] for _layers, name, _values in parse(partition))


def uploading_layers(partition: str, layers: list[int], everywhere: bool = False) -> int:
    """How many of ``layers`` run an entry that uploads the batch's curvature to the device
    (TNGD, natural Langevin on the device): each adds batch × outputs to one step's rank."""
    marks = {}
    for sel, name, _values in parse(partition):
        entry, on_device = lookup(name, everywhere)
        marks["*" if sel is None else sel] = on_device and entry.uploads
    return sum(assign(marks, [Group(f"layer{k}", slice(k, k + 1), k) for k in layers]))
