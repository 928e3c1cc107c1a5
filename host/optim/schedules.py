"""Step-size and temperature schedules: a constant or a callable ``step -> value``."""
from __future__ import annotations

import math
from typing import Callable

Schedule = Callable[[int], float]


def as_schedule(value: float | Schedule) -> Schedule:
    """A constant or a callable ``step -> value``."""
    if callable(value):
        return value
    v = float(value)
    return lambda _step: v


class _Named:
    """A schedule that prints as the call that made it, so a run's record says which one ran."""

    def __init__(self, fn: Schedule, text: str) -> None:
        self._fn, self._text = fn, text

    def __call__(self, step: int) -> float:
        return self._fn(step)

    def __repr__(self) -> str:
        return self._text


def exponential_decay(init: float, rate: float, every: int = 1) -> Schedule:
    """init · rate^(step/every)."""
    if not (rate > 0 and every > 0):
        raise ValueError(f"exponential_decay needs rate > 0 and every > 0, got {rate}, {every}")
    return _Named(lambda step: init * rate ** (step / every), f"exponential_decay({init!r}, {rate!r}, {every!r})")


def cosine_decay(init: float, total: int, final: float = 0.0) -> Schedule:
    """From init to final over ``total`` steps along half a cosine, then final."""
    if not total > 0:
        raise ValueError(f"cosine_decay needs total > 0 steps, got {total}")
    return _Named(lambda step: final + 0.5 * (init - final) * (1 + math.cos(math.pi * min(step, total) / total)),
                  f"cosine_decay({init!r}, {total!r}, {final!r})")
