"""Refusing bad settings and non-finite numbers, with messages that say which and why."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from host.optim.schedules import Schedule, as_schedule


class NonFiniteError(FloatingPointError):
    """A gradient or update is NaN/inf: training stops rather than corrupting the parameters."""


def check_finite(name: str, value: np.ndarray, step: int) -> None:
    if not np.all(np.isfinite(value)):
        raise NonFiniteError(f"non-finite {name} at step {step}: training stopped; the last good "
                             "checkpoint is kept (lower the step size?)")


def check_value(name: str, value: float, minimum: float, strict: bool, where: str = "") -> float:
    """``value`` as a float, or ValueError if it is not finite and ≥ (or > if strict) minimum."""
    v = float(value)
    ok = math.isfinite(v) and (v > minimum if strict else v >= minimum)
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be finite and {rel} {minimum:g}{where}, got {value!r}")
    return v


def checked_schedule(name: str, value: float | Schedule, minimum: float, strict: bool) -> Schedule:
    """A schedule; a constant is checked now, a callable at every step it is used (see ``at``)."""
    if not callable(value):
        check_value(name, value, minimum, strict)
    return as_schedule(value)


def at(name: str, schedule: Schedule, step: int, minimum: float, strict: bool) -> float:
    """The schedule's value at ``step``, checked (a callable may go out of range late)."""
    return check_value(name, schedule(step), minimum, strict, f" (step {step})")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_lr(lr: float | Schedule) -> Schedule:
    if not callable(lr) and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"step size lr must be a finite number > 0, got {lr}")
    return as_schedule(lr)


def check_count(name: str, value: Any) -> int:
    """A step count ≥ 0 (0 = never)."""
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be an int >= 0 (steps; 0 = never), got {value!r}")
    return int(value)
