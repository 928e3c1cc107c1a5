"""Give each parameter group (layer) its own transform: ``partition(transforms_by_label, labels)``.

Every group gets its own state from its label's transform (so ``adl`` on three layers has three
thermostats, ``tngd`` on two layers two block-diagonal solves), one gradient per step for the
whole network, and a group's diagnostics appear in ``info`` as ``<group>.<key>``. Groups that use
the device contribute their requests to one packet per round (see host.optim.transform).

``labels`` says which group gets which label:

- a mapping from layer selectors to labels: an index, a tuple/range of indices, a string —
  ``'0'``, ``'1-3'`` (inclusive), ``'0+2'`` — or ``'*'`` for every layer no other entry names;
- a sequence of labels, one per group, in group order.

Layers are ``ParamGroup.layer`` of the groups given to ``init`` (an MLP: one per layer, weights
and biases together), or positions in a list of slices.
"""
from __future__ import annotations

import functools
import re
from typing import Any, Generator, Mapping

import numpy as np

from host.optim.backend.requests import moved
from host.optim.groups import Group, normalise_groups
from host.optim.transform import Transform, init_of, one_device, steps_of, with_device

REST = "*"


def parse_layers(text: str) -> tuple[int, ...] | None:
    """'*' → None (the rest); '0', '1-3', '0+2' → indices."""
    text = str(text).strip()
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


def selector(key: Any) -> tuple[int, ...] | None:
    """A mapping key of ``labels`` as layer indices (None: the rest)."""
    if isinstance(key, str):
        return parse_layers(key)
    if isinstance(key, bool):
        raise ValueError(f"bad partition key {key!r}")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"layer indices in a partition are >= 0, got {key}")
        return (int(key),)
    if isinstance(key, (tuple, list, range)):
        idx = tuple(int(k) for k in key)
        if any(k < 0 for k in idx):
            raise ValueError(f"layer indices in a partition are >= 0, got {key!r}")
        return idx
    raise ValueError(f"bad partition key {key!r}: an index, a tuple/range of indices, a string like "
                     "'1-2', or '*'")


def check_selectors(selectors: list[tuple[int, ...] | None]) -> None:
    seen: set[int] = set()
    for layers in selectors:
        for layer in layers or ():
            if layer in seen:
                raise ValueError(f"layer {layer} appears twice in the partition")
            seen.add(layer)
    if sum(s is None for s in selectors) > 1:
        raise ValueError("the partition has more than one '*' (rest) entry")
    if not selectors:
        raise ValueError("empty partition")


def assign(labels: Any, groups: list[Group]) -> list[Any]:
    """The label of each group."""
    if not isinstance(labels, Mapping):
        labels = list(labels)
        if len(labels) != len(groups):
            raise ValueError(f"{len(labels)} labels for {len(groups)} parameter groups")
        return labels
    entries = [(selector(k), v) for k, v in labels.items()]
    check_selectors([sel for sel, _ in entries])
    layers = [g.layer for g in groups]
    known = set(layers)
    span = f"layers {min(known)}–{max(known)}" if len(known) > 1 else f"layer {min(known)}"
    for sel, _ in entries:
        for layer in sel or ():
            if layer not in known:
                hint = " (give the optimizer the model's groups: init(..., groups=model.groups))" \
                    if len(groups) == 1 and groups[0].name == "all" else ""
                raise ValueError(f"the partition names layer {layer}, which does not exist: "
                                 f"the model has {len(layers)} parameter group(s), {span}{hint}")
    rest = next((lab for sel, lab in entries if sel is None), None)
    by_layer = {layer: lab for sel, lab in entries for layer in (sel or ())}
    missing = [layer for layer in layers if layer not in by_layer and rest is None]
    if missing:
        raise ValueError(f"the partition gives no scheme to layer(s) "
                         f"{', '.join(map(str, missing))}: add an entry for them or '*:NAME'")
    return [by_layer.get(layer, rest) for layer in layers]


class _Prefixed:
    """A group's view of ``info`` (written, not read): its keys land in the step's info as
    '<group>.<key>'."""

    def __init__(self, parent: dict | None, prefix: str) -> None:
        self.parent, self.prefix = parent, prefix

    def __setitem__(self, key: str, value: Any) -> None:
        if self.parent is not None:
            self.parent[self.prefix + key] = value

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def partition(transforms_by_label: Mapping[Any, Transform], labels: Any, source: str = "") -> Transform:
    """One transform per label; ``labels`` maps layers (or groups, in order) to labels.
    ``source`` says, in error messages, what built the partition (a preset's option)."""
    transforms = dict(transforms_by_label)
    if isinstance(labels, Mapping):
        check_selectors([selector(k) for k in labels])
    named = list(labels.values()) if isinstance(labels, Mapping) else list(labels)
    wrong = [lab for lab in named if lab not in transforms]
    if wrong:
        raise ValueError(f"the partition's label(s) {', '.join(map(repr, wrong))} have no transform; "
                         f"the transforms are labelled {', '.join(map(repr, transforms))}")

    @functools.lru_cache(maxsize=8)
    def plan_of(key: tuple) -> tuple[tuple[Group, Transform], ...]:
        gs = [Group(name, slice(a, b), layer) for name, a, b, layer in key]
        try:
            chosen = assign(labels, gs)
        except ValueError as e:
            if not source:
                raise
            raise ValueError(f"{e} (from {source})") from None
        return tuple(zip(gs, (transforms[lab] for lab in chosen)))

    def layout(groups: Any, n: int) -> tuple[tuple[Group, Transform], ...]:
        gs = normalise_groups(groups, n)
        return plan_of(tuple((g.name, g.slice.start, g.slice.stop, g.layer) for g in gs))

    def init(params: np.ndarray, groups: Any = None) -> tuple:
        plan = layout(groups, np.size(params))
        return tuple(init_of(t, params[g.slice]) for g, t in plan)

    def steps(grads: np.ndarray, state: tuple, params: np.ndarray, **extra: Any) -> Generator:
        plan = layout(extra.get("groups"), np.size(params))
        if len(state) != len(plan):
            raise ValueError(f"the optimizer state holds {len(state)} groups, the model {len(plan)}")
        info = extra.get("info")
        curvature = extra.get("curvature")
        running: dict[int, Generator] = {}
        updates, new = np.zeros_like(params), list(state)
        pending: dict[int, list] = {}
        for i, ((g, t), s) in enumerate(zip(plan, state)):
            sub = {**extra, "groups": None, "info": _Prefixed(info, f"{g.name}."), "rounds": rounds,
                   "curvature": curvature.block(g.slice) if curvature is not None else None}
            running[i] = steps_of(t)(grads[g.slice], s, params[g.slice], **sub)
            _advance(running, pending, i, None, updates, new, plan)
        while pending:                      # one packet per round for every group still running
            order = list(pending)
            batch = [moved(r, plan[i][0].slice.start) for i in order for r in pending[i]]
            results = yield batch
            pos = 0
            for i in order:
                k = len(pending.pop(i))
                _advance(running, pending, i, results[pos:pos + k], updates, new, plan)
                pos += k
        scales = [v for k, v in (info or {}).items() if k.endswith(".scale")]
        if scales and info is not None:
            info["scale"] = max(scales)
        return updates, tuple(new)

    members = list(transforms.values())
    rounds = max((t.rounds for t in members), default=0)
    return with_device(init, steps, one_device(members), rounds, grouped=True)


def _advance(running: dict, pending: dict, i: int, results: Any, updates: np.ndarray, new: list,
             plan: tuple) -> None:
    """Resume group i's update with ``results``; file its next requests or its result."""
    try:
        requests = running[i].send(results)
    except StopIteration as done:
        u, new[i] = done.value
        updates[plan[i][0].slice] = u
        del running[i]
        return
    if not requests:
        raise RuntimeError("a device update yielded no requests")
    pending[i] = list(requests)
