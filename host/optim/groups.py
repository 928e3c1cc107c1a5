"""Parameter groups: contiguous slices of θ (an MLP's layers), what partitions split over."""
from __future__ import annotations

from typing import Any, Sequence

from host.nn.mlp import ParamGroup as Group     # one layer's slice of θ: what partitions split


def normalise_groups(groups: Sequence[Any] | None, n_params: int) -> list[Group]:
    """ParamGroup-likes (``.name``, ``.slice``, ``.layer``), slices or (start, stop) pairs → groups
    that tile θ exactly; None → one group holding every parameter."""
    if groups is None:
        return [Group("all", slice(0, n_params), 0)]
    out: list[Group] = []
    for i, g in enumerate(groups):
        if hasattr(g, "slice"):
            sl, name, layer = g.slice, str(getattr(g, "name", f"group{i}")), int(getattr(g, "layer", i))
        elif isinstance(g, slice):
            sl, name, layer = g, f"group{i}", i
        elif isinstance(g, (tuple, list)) and len(g) == 2:
            sl, name, layer = slice(int(g[0]), int(g[1])), f"group{i}", i
        else:
            raise ValueError(f"parameter group {i} must be a ParamGroup, a slice or a (start, stop) pair, got {g!r}")
        if sl.step not in (None, 1):
            raise ValueError(f"parameter group {name} must be a contiguous slice, got {sl}")
        start = 0 if sl.start is None else int(sl.start)
        stop = n_params if sl.stop is None else int(sl.stop)
        out.append(Group(name, slice(start, stop), layer))
    if not out:
        raise ValueError("no parameter groups given")
    pos = 0
    for g in sorted(out, key=lambda g: g.slice.start):
        if g.slice.start != pos or g.slice.stop <= g.slice.start:
            raise ValueError(f"parameter groups must tile θ (size {n_params}) without gaps or overlaps; "
                             f"group {g.name} is [{g.slice.start}, {g.slice.stop}) where [{pos}, …) was expected")
        pos = g.slice.stop
    if pos != n_params:
        raise ValueError(f"parameter groups cover [0, {pos}) but θ has {n_params} entries")
    if len({g.layer for g in out}) != len(out):
        raise ValueError("two parameter groups share a layer index")
    return out
