"""Which parameter group (layer) runs which scheme.

A partition is a list of entries ``layers → scheme``; ``*`` stands for every layer no other
entry names. It can be given as

- a string (what ``thermohil train --partition`` takes)::

      "0:adl, *:langevin"                     # AdLaLa
      "0:langevin; 1-2:overdamped"            # LOL on a 3-layer MLP
      "0+2:adl(tau=1e-3, eps=0.1), *:langevin(gamma=1)"

  entries separated by ``,`` or ``;``; layers are an index, a range ``a-b`` (inclusive), several
  joined by ``+``, or ``*``; a scheme may carry its own parameters in parentheses, which take
  precedence over the shared defaults;
- a mapping ``{0: AdLScheme(...), "*": "langevin", (1, 2): OverdampedScheme()}`` whose keys are
  an index, a tuple/list/range of indices, a layer string as above, or ``"*"``, and whose values
  are ``Scheme`` objects or scheme names;
- a single ``Scheme`` (or name): every layer runs it.

Layer indices are ``ParamGroup.layer`` of the model's groups (MLP.groups: one group per layer,
weights and biases together), or the positions in an explicit list of slices.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from host.optim.langevin.schemes import Scheme, make_scheme

REST = "*"
_ENTRY = re.compile(r"\s*([^:,;()]+?)\s*:\s*([A-Za-z_][\w-]*)\s*(?:\(([^()]*)\))?\s*(?:[,;]|$)")


def _layers(text: str) -> tuple[int, ...] | None:
    """'*' → None (the rest); '0', '1-3', '0+2' → indices."""
    text = text.strip()
    if text == REST:
        return None
    out: list[int] = []
    for term in text.split("+"):
        term = term.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", term)
        if not m:
            raise ValueError(f"bad layer selector {text!r} in the partition: use an index (0), a range "
                             "(1-3), several joined by + (0+2), or * for the remaining layers")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ValueError(f"empty layer range {term!r} in the partition")
        out.extend(range(a, b + 1))
    return tuple(out)


def _params(text: str | None, where: str) -> dict[str, float]:
    if not text or not text.strip():
        return {}
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad scheme parameter {item.strip()!r} in {where!r}: write name=value")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            raise ValueError(f"scheme parameter {key.strip()} in {where!r} is not a number: {val.strip()!r}") from None
    return out


def parse_partition(text: str, defaults: dict[str, Any] | None = None) -> Partition:
    """Parse the string form (module docstring); scheme names and parameters are checked now."""
    entries: list[tuple[tuple[int, ...] | None, Scheme]] = []
    pos, text = 0, str(text)
    if not text.strip():
        raise ValueError("empty partition: give entries like '0:adl, *:langevin'")
    while pos < len(text):
        m = _ENTRY.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse the partition {text!r} at {text[pos:]!r}: expected entries "
                             "LAYERS:SCHEME[(name=value, ...)] separated by ',' or ';', "
                             "e.g. '0:adl, *:langevin'")
        layers, name, params = m.groups()
        entries.append((_layers(layers), make_scheme(name, defaults, **_params(params, m.group(0).strip(" ,;")))))
        pos = m.end()
        if text[pos:].strip() == "":
            break
    return Partition(entries)


def _key_layers(key: Any) -> tuple[int, ...] | None:
    if isinstance(key, str):
        return _layers(key)
    if isinstance(key, bool):
        raise ValueError(f"bad partition key {key!r}")
    if isinstance(key, int):
        if key < 0:
            raise ValueError(f"layer indices in a partition are >= 0, got {key}")
        return (key,)
    if isinstance(key, (tuple, list, range)):
        idx = tuple(int(k) for k in key)
        if any(k < 0 for k in idx):
            raise ValueError(f"layer indices in a partition are >= 0, got {key!r}")
        return idx
    raise ValueError(f"bad partition key {key!r}: an index, a tuple/range of indices, a string like "
                     "'1-2', or '*'")


def _as_scheme(value: Any, defaults: dict[str, Any] | None) -> Scheme:
    if isinstance(value, Scheme):
        return value
    if isinstance(value, str):
        return make_scheme(value, defaults)
    raise ValueError(f"a partition maps layers to schemes (a Scheme or a scheme name), got {value!r}")


@dataclass
class Partition:
    entries: Sequence[tuple[tuple[int, ...] | None, Scheme]]

    def __post_init__(self) -> None:
        seen: dict[int, int] = {}
        rests = 0
        for i, (layers, _scheme) in enumerate(self.entries):
            if layers is None:
                rests += 1
                continue
            for layer in layers:
                if layer in seen:
                    raise ValueError(f"layer {layer} appears twice in the partition")
                seen[layer] = i
        if rests > 1:
            raise ValueError("the partition has more than one '*' (rest) entry")
        if not self.entries:
            raise ValueError("empty partition")

    @classmethod
    def of(cls, spec: Any, defaults: dict[str, Any] | None = None) -> Partition:
        if isinstance(spec, Partition):
            return spec
        if isinstance(spec, Scheme):
            return cls([(None, spec)])
        if isinstance(spec, str):
            if ":" not in spec:            # a bare scheme name: every layer runs it
                return cls([(None, make_scheme(spec, defaults))])
            return parse_partition(spec, defaults)
        if isinstance(spec, Mapping):
            return cls([(_key_layers(k), _as_scheme(v, defaults)) for k, v in spec.items()])
        raise ValueError(f"cannot read a partition from {spec!r}: give a string like '0:adl, *:langevin', "
                         "a mapping {layer: scheme}, or one scheme")

    def assign(self, layers: Iterable[int], where: str = "") -> list[Scheme]:
        """The scheme of each group, given the groups' layer indices (in group order)."""
        layers = list(layers)
        known = set(layers)
        span = f"layers {min(known)}–{max(known)}" if len(known) > 1 else f"layer {min(known)}"
        for sel, _ in self.entries:
            for layer in sel or ():
                if layer not in known:
                    raise ValueError(f"{where}the partition names layer {layer}, which does not exist: "
                                     f"the model has {len(layers)} parameter group(s), {span}")
        rest = next((s for sel, s in self.entries if sel is None), None)
        by_layer = {layer: s for sel, s in self.entries for layer in (sel or ())}
        missing = [layer for layer in layers if layer not in by_layer and rest is None]
        if missing:
            raise ValueError(f"{where}the partition gives no scheme to layer(s) "
                             f"{', '.join(map(str, missing))}: add an entry for them or '*:SCHEME'")
        return [by_layer.get(layer, rest) for layer in layers]  # type: ignore[misc]

    def describe(self) -> str:
        def sel(layers: tuple[int, ...] | None) -> str:
            return REST if layers is None else "+".join(map(str, layers))
        return ", ".join(f"{sel(layers)}:{scheme.describe()}" for layers, scheme in self.entries)
