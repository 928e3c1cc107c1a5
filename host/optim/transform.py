"""The one interface every optimizer is written in: a pair of pure functions (the optax shape).

    init(params) -> state
    update(grads, state, params, **extra) -> (updates, state)        θ' = θ + updates

All state lives in the state value (dicts and tuples of arrays and numbers), so a checkpoint
is just that value. ``extra`` carries what curvature and noise need (``objective``, ``batch``,
``rng``, ``curvature``, ``step``; inside a partition ``rounds``, the device packets its step
has) and ``info``, a dict a transform may write diagnostics into.

A device-assisted transform is the same pair plus ``device_steps``: the update written as a
generator that yields the requests it needs the device to run (``host.optim.backend.requests``)
and receives their results. Its ``update`` drives that generator, one packet per yield; a
``chain`` or ``partition`` instead gathers the yields of all its members into one packet per
round, so one step stays one packet however many groups use the device.
"""
from __future__ import annotations

from typing import Any, Callable, Generator, NamedTuple

import numpy as np

from host.optim.backend.packet import backend_for
from host.optim.checks import at, check_lr
from host.optim.schedules import Schedule

Steps = Callable[..., Generator[list, list, tuple[Any, Any]]]


class Transform(NamedTuple):
    init: Callable[..., Any]
    update: Callable[..., tuple[Any, Any]]
    device_steps: Steps | None = None   # the update as a generator of device requests
    device: Any = None                  # the device resource it was given (None: digital)
    rounds: int = 0                     # device packets it needs per step
    grouped: bool = False               # init takes ``groups=`` (the model's parameter groups)


def apply_updates(params: np.ndarray, updates: np.ndarray) -> np.ndarray:
    return params + updates


def finish(steps: Generator) -> tuple[Any, Any]:
    """Run a generator update that needs no device to its result."""
    try:
        request = next(steps)
    except StopIteration as done:
        return done.value
    steps.close()
    raise RuntimeError(f"a digital update asked for the device ({request!r}): give the transform a device")


def stepwise(update: Callable[..., tuple[Any, Any]]) -> Steps:
    """A plain update as a generator that yields nothing (so chains treat every member alike)."""
    def steps(grads: Any, state: Any, params: Any, **extra: Any) -> Generator[list, list, tuple[Any, Any]]:
        return update(grads, state, params, **extra)
        yield  # noqa: unreachable: makes this a generator
    return steps


def with_device(init: Callable[..., Any], steps: Steps, device: Any, rounds: int = 1,
                grouped: bool = False) -> Transform:
    """A transform whose update runs ``steps`` against ``device``, one packet per yield."""
    if device is None:
        return Transform(init, lambda *a, **k: finish(steps(*a, **k)), steps, None, 0, grouped)

    def update(grads: Any, state: Any, params: Any, **extra: Any) -> tuple[Any, Any]:
        return backend_for(device).drive(steps(grads, state, params, **extra), np.size(params),
                                         extra.get("info"), extra.get("step"))
    return Transform(init, update, steps, device, rounds, grouped)


def init_of(t: Transform, params: np.ndarray, groups: Any = None) -> Any:
    return t.init(params, groups=groups) if t.grouped else t.init(params)


def steps_of(t: Transform) -> Steps:
    return t.device_steps if t.device_steps is not None else stepwise(t.update)


def one_device(transforms: Any) -> Any:
    """The device the members share (at most one: a step's requests go into one packet)."""
    devices = {id(t.device): t.device for t in transforms if t.device is not None}
    if len(devices) > 1:
        raise ValueError("the members of one optimizer use different devices; one step's requests "
                         "go into one packet, so they must share one device")
    return next(iter(devices.values()), None)


def chain(*transforms: Transform) -> Transform:
    """Apply the transforms in order, each to the previous one's output (optax.chain)."""
    def init(params: np.ndarray, groups: Any = None) -> tuple:
        return tuple(init_of(t, params, groups) for t in transforms)

    def steps(grads: Any, state: tuple, params: Any, **extra: Any) -> Generator[list, list, tuple[Any, Any]]:
        new = []
        for t, s in zip(transforms, state):
            grads, s = yield from steps_of(t)(grads, s, params, **extra)
            new.append(s)
        return grads, tuple(new)

    return with_device(init, steps, one_device(transforms), max((t.rounds for t in transforms), default=0),
                       any(t.grouped for t in transforms))


def stateless(fn: Callable[..., np.ndarray]) -> Transform:
    """A transform with no state: ``fn(grads, params, **extra) -> updates``."""
    return Transform(lambda params: {}, lambda g, s, p, **extra: (fn(g, p, **extra), s))


# ---------------------------------------------------------------------- small building blocks
def scale_by_learning_rate(lr: float | Schedule) -> Transform:
    """u ← −η(n)·u: the step size (a constant or a schedule of the step n)."""
    schedule = check_lr(lr)

    def update(u: np.ndarray, state: dict, params: Any, **extra: Any) -> tuple[np.ndarray, dict]:
        return -(at("step size lr", schedule, state["count"], 0.0, True) * u), {"count": state["count"] + 1}
    return Transform(lambda params: {"count": 0}, update)


def trace(momentum: float) -> Transform:
    """Heavy ball: m ← μm + u, u ← m (μ = 0: the identity, no state)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if not momentum:
        return stateless(lambda u, params, **extra: u)

    def update(u: np.ndarray, state: dict, params: Any, **extra: Any) -> tuple[np.ndarray, dict]:
        m = momentum * state["m"] + u
        return m, {"m": m}
    return Transform(lambda params: {"m": np.zeros_like(params, dtype=float)}, update)
