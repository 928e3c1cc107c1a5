"""The body of one packet: the relax phases, then the oscillations, against a mirror of what
the device's registers hold (so only what changed goes up).

A relax phase: configuration, coupling and bias, COMMIT, the start state, RUN t, read STATE or
the mean. An oscillation phase: friction and noise per cell, COMMIT if anything changed,
RESET_STATE, VELOCITY ← v0/s, RUN t, read VELOCITY. TEMPERATURE is the packet's largest κ/s²
(at most the register's maximum) and each cell's NOISE_GAIN its own κ/s² over that; while a
relax phase runs, the oscillating cells' noise is off and their state reset, so they wait at 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from host.optim.backend.coupling import assemble
from host.optim.backend.requests import Oscillate, Relax
from host.optim.backend.scaling import TEMPERATURE_MAX, within_full_scale

ROOM = 0.9      # a written state stays within this fraction of the rails


class Mirror:
    """What this host last made the device hold; ``forget`` when that is no longer known."""

    def __init__(self) -> None:
        self.delay_running = False
        self.forget()

    def forget(self) -> None:
        self.values: dict[str, Any] = {}
        self.uncoupled = False              # the cells known to be uncoupled, zero bias
        self.held: dict[tuple[int, int], float] = {}   # cells still holding a request's run, at scale
        self.fresh = True

    def stage(self, dev: Any, **settings: Any) -> bool:
        """Stage the settings that differ from what the device holds; True if any did."""
        staged = {}
        for key, value in settings.items():
            if value is None:
                continue
            mark = value.tobytes() if isinstance(value, np.ndarray) else value
            if self.values.get(key) != mark:
                staged[key] = value
                self.values[key] = mark
        if "modes" in staged:
            dev.configure(mode=["underdamped" if m else "overdamped" for m in staged.pop("modes")])
        if staged:
            dev.configure(**staged)
        return bool(staged)


def phases_of(requests: list, *keys: str) -> list[list]:
    """Requests that can share one run: the same run time, fidelity (and ``keys``), in order."""
    out: dict[tuple, list] = {}
    for r in requests:
        out.setdefault((r.t, r.stability, *(getattr(r, k) for k in keys)), []).append(r)
    return list(out.values())


def write(dev: Any, mirror: Mirror, relax: list[Relax], osc: list[Oscillate], n: int, boost: float,
          attempt: int) -> dict[int, Any]:
    """Queue one packet (the caller holds ``dev.batch()``); the read-outs by request id."""
    kappa, modes = np.zeros(n), np.zeros(n, dtype=np.int64)
    for r in relax:
        kappa[r.cells] = r.kappa / (r.scale * boost) ** 2
    for r in osc:
        modes[r.cells] = 1
        kappa[r.cells] = r.kappa / (r.scale * boost) ** 2
    temperature = min(float(np.max(kappa, initial=0.0)), TEMPERATURE_MAX)
    gain = np.full(n, 0.0 if osc else 1.0)       # (uniform when nothing oscillates)
    for requests, idle in ((relax, 1.0), (osc, 0.0)):
        for r in requests:
            gain[r.cells] = kappa[r.cells] / temperature if temperature > 0 else idle
    quiet = gain.copy()
    for r in osc:
        quiet[r.cells] = 0.0
    reads: list[tuple[list, Any]] = []
    if mirror.delay_running:
        dev.wait()              # the delayed run on the previous curvature ends first
        mirror.delay_running = False
    if mirror.fresh:
        dev.stop()
        dev.configure(mobility=1.0)
        dev.clear_saturation()
        dev.reset_state()
        mirror.held.clear()
        mirror.fresh = False
    phases = phases_of(relax, "readout")
    for phase in phases:
        mirror.stage(dev, modes=modes, temperature=temperature, noise_gain=quiet, stability=phase[0].stability)
        _load(dev, mirror, phase, n, boost, uncoupled_rest=not osc)
        dev.commit()
        _start(dev, mirror, phase, n, boost, attempt, still=bool(osc))
        dev.run(phase[0].t)
        reads.append((phase, dev.mean() if phase[0].readout == "mean" else dev.state()))
        # only this phase's cells hold their run: a later phase leaves the others uncoupled
        mirror.held = {(r.cells.start, r.cells.stop): r.scale * boost for r in phase}
    for group in phases_of(osc):
        friction, v0 = np.zeros(n), np.zeros(n)
        for r in group:
            friction[r.cells] = r.friction
            v0[r.cells] = r.v0 / (r.scale * boost)
        changed = mirror.stage(dev, modes=modes, friction=friction, temperature=temperature, noise_gain=gain,
                               stability=group[0].stability)
        if not mirror.uncoupled and not phases:
            dev.load_lowrank(np.zeros((0, n)), np.zeros((0, 0)), np.zeros(n))
            dev.load_bias(np.zeros(n))
            mirror.uncoupled, mirror.values["diag"], changed = True, np.zeros(n).tobytes(), True
        if changed or phases:
            dev.commit()
        dev.reset_state()
        mirror.held.clear()
        dev.set_velocity(v0)
        dev.run(group[0].t)
        reads.append((group, dev.velocity()))
    return {id(r): deferred for group, deferred in reads for r in group}


def _load(dev: Any, mirror: Mirror, phase: list[Relax], n: int, boost: float, uncoupled_rest: bool) -> None:
    """The phase's coupling and bias (``coupling.assemble``); DIAG only if it changed."""
    c = assemble(phase, n, boost, uncoupled_rest)
    mirror.uncoupled = False
    if c.dense is not None:
        dev.load_coupling(c.dense)
    else:
        if c.J.shape[0] > dev.max_rank:
            raise ValueError(f"the curvature uploaded in one step has rank {c.J.shape[0]} (batch × "
                             f"outputs for each group that uses it), above the device's MAX_RANK "
                             f"{dev.max_rank}: use a smaller batch, fewer such groups, or form='dense'")
        mark = c.diag.tobytes()
        dev.load_lowrank(*within_full_scale(c.J, c.H), None if mirror.values.get("diag") == mark else c.diag)
        mirror.values["diag"] = mark
    dev.load_bias(c.bias)


def _start(dev: Any, mirror: Mirror, phase: list[Relax], n: int, boost: float, attempt: int,
           still: bool) -> None:
    """The cells' state before the run: reset, left as it is (a warm start the cells still
    hold at this scale), or written. ``still``: underdamped cells share the packet, and their
    loop currents must be zero too (RESET_STATE first), or x would integrate them."""
    room = ROOM * dev.vmax
    x0, write, zero = np.zeros(n), False, True
    for r in phase:
        s = r.scale * boost
        if r.start == "given" or (r.start == "warm" and r.initial is not None and attempt == 0):
            x0[r.cells] = np.clip(r.initial / s, -room, room)
            zero = False
            held = mirror.held.get((r.cells.start, r.cells.stop)) == s
            write = write or r.start == "given" or not held
        elif r.start == "zero" or mirror.held.get((r.cells.start, r.cells.stop)) is None:
            write = True            # no state of its own to continue from: zero
        else:
            zero = False            # a warm start the cells hold, without a value to write
    if write and zero:
        dev.reset_state()
    elif write:
        if still:
            dev.reset_state()
        dev.set_state(x0)
    if write:
        mirror.held.clear()
