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


def exponential_decay(init: float, rate: float, every: int = 1) -> Schedule:
    return lambda step: init * rate ** (step / every)


def cosine_decay(init: float, total: int, final: float = 0.0) -> Schedule:
    return lambda step: final + 0.5 * (init - final) * (1 + math.cos(math.pi * min(step, total) / total))
