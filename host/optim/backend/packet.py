"""One step's device requests as one packet, with the device's registers mirrored so that only
what changed goes up, and one rule for saturation: retry the whole packet with every scale ×16.

A packet runs the ``Relax`` requests first (one phase per run time / read-out / fidelity:
coupling, bias, COMMIT, start state, RUN, WAIT, read), then the ``Oscillate`` ones (friction and
noise per cell, COMMIT if anything changed, RESET_STATE, VELOCITY ← v0, RUN, WAIT, read v).
TEMPERATURE is the largest κ/s² of the packet (at most the register's maximum) and each cell's
NOISE_GAIN its own κ/s² over that.
"""
from __future__ import annotations

import time
import weakref
from typing import Any, Generator

import numpy as np

from host.errors import DeviceSaturated
from host.optim.backend.coupling import assemble
from host.optim.backend.requests import Oscillate, Relax, Result
from host.optim.backend.scaling import (NOISE_GAIN_MAX, RETRIES, RETRY_FACTOR, TEMPERATURE_MAX,
                                        within_full_scale)
from protocol.regmap import q31_full_scale_for


class CurvatureSaturates(RuntimeError):
    """The device kept hitting its rails even at the smallest signal scale."""


class MomentaSaturate(CurvatureSaturates):
    """The momenta kept reaching the rails even at the smallest signal scale (the chain has
    diverged: lower h)."""


def check_fits(device: Any, n: int) -> None:
    if n > device.n_cells:
        raise ValueError(f"the model has {n} parameters but the device only {device.n_cells} cells "
                         "(one cell per parameter)")


def _phases(requests: list, *keys: str) -> list[list]:
    """Requests that can share one run: the same run time, fidelity (and ``keys``), in order."""
    out: dict[tuple, list] = {}
    for r in requests:
        out.setdefault((r.t, r.stability, *(getattr(r, k) for k in keys)), []).append(r)
    return list(out.values())


_BACKENDS: "weakref.WeakKeyDictionary[Any, Backend]" = weakref.WeakKeyDictionary()


def backend_for(device: Any) -> "Backend":
    """The one backend of a device (it mirrors the device's registers, so it is shared)."""
    if device not in _BACKENDS:
        _BACKENDS[device] = Backend(device)
    return _BACKENDS[device]


class Backend:
    def __init__(self, device: Any) -> None:
        self.dev = device
        self.delay_running = False
        self.forget()
        self._extra = [0.0, 0, 0, 0.0]     # calibration: device time, bytes up, bytes down, wall s

    def forget(self) -> None:
        """The registers are no longer known (first use, a saturated run): send everything."""
        self.mirror: dict[str, Any] = {}
        self.coupling: str | None = None    # 'zero' once the cells are known to be uncoupled
        self.held: dict[tuple[int, int], float] = {}   # cells still holding a request's run, at scale
        self.fresh = True

    # ------------------------------------------------------------------ driving an update
    def drive(self, steps: Generator, n: int, info: dict | None, step: int | None = None) -> Any:
        """Run a generator update: each yielded list of requests is one packet; the step's
        device time, traffic and time in device calls go into ``info``."""
        stats = self.dev.stats
        sent0, recv0 = stats.bytes_sent, stats.bytes_received
        self._extra = [0.0, 0, 0, 0.0]
        device_time, call_s = 0.0, 0.0
        try:
            requests = next(steps)
            while True:
                t0 = time.perf_counter()
                results, spent = self.run(requests, n, step)
                call_s += time.perf_counter() - t0
                device_time += spent
                requests = steps.send(results)
        except StopIteration as done:
            value = done.value
        if info is not None:
            cal_t, cal_up, cal_down, cal_s = self._extra
            info.update(device_time=device_time + cal_t, calibration_time=cal_t,
                        bytes_sent=stats.bytes_sent - sent0 - cal_up,
                        bytes_received=stats.bytes_received - recv0 - cal_down,
                        device_call_s=call_s + cal_s)
        return value

    def calibration(self, check_only: bool) -> Any:
        """The device's drift check (or a calibration): its own packets, counted apart from the
        step's traffic; it resets the cells, so no run's state is held any more."""
        stats, t0 = self.dev.stats, time.perf_counter()
        sent0, recv0 = stats.bytes_sent, stats.bytes_received
        if self.delay_running:       # a delayed run ends first (a check needs the core to itself)
            self.dev.wait()
            self.delay_running = False
        report = self.dev.check_calibration() if check_only else self.dev.calibrate()
        self.held.clear()
        self._extra[0] += report.device_time
        self._extra[1] += stats.bytes_sent - sent0
        self._extra[2] += stats.bytes_received - recv0
        self._extra[3] += time.perf_counter() - t0
        return report

    # ------------------------------------------------------------------ one packet, with retries
    def run(self, requests: list, n: int, step: int | None = None) -> tuple[list[Result], float]:
        relax = [r for r in requests if isinstance(r, Relax)]
        osc = [r for r in requests if isinstance(r, Oscillate)]
        refused = self._refused(osc)
        go = [r for r in osc if id(r) not in refused]
        if not relax and not go:
            return [Result(None, 0.0) for _ in requests], 0.0
        limit = self.dev.vmax * (1 - 2.0**-20)   # the ADC's top code: a clipped read-out
        for attempt in range(RETRIES + 1):
            factor = RETRY_FACTOR ** attempt
            try:
                values = self._packet(relax, go, n, factor, attempt)
                for r in [*relax, *go]:
                    hit = np.flatnonzero(np.abs(values[id(r)]) >= limit)
                    if hit.size:
                        raise DeviceSaturated("a read-out reached the converters' full scale",
                                              (hit + r.cells.start).tolist())
                break
            except DeviceSaturated:
                self.forget()
        else:
            at = f" at step {step}" if step is not None else ""
            if go:
                raise MomentaSaturate(
                    f"the momenta (or a sample) reached the device's rails{at} even scaled down by "
                    f"16^{RETRIES} = {int(RETRY_FACTOR ** RETRIES)} beyond the chosen scales: the "
                    "chain has diverged (lower the step size h)")
            raise CurvatureSaturates(
                f"the device saturated{at} even with the bias scaled down by "
                f"{max(r.scale for r in relax) * factor:g}: the uploaded curvature is not positive "
                "definite or too stiff")
        out = [Result(None, 0.0) if id(r) in refused else
               Result(values[id(r)] * (r.scale * factor), r.scale * factor, attempt) for r in requests]
        spent = sum(p[0].t for p in _phases(relax, "readout")) + sum(p[0].t for p in _phases(go)) + \
            max((r.t_delay for r in relax), default=0.0)
        return out, spent

    def _refused(self, osc: list[Oscillate]) -> set[int]:
        """Optional oscillations whose friction is below four steps of the friction DAC (at the
        packet's full scale) or whose noise needs more than TEMPERATURE × NOISE_GAIN can give."""
        if not any(r.optional for r in osc):
            return set()
        fs = q31_full_scale_for(max(abs(r.friction) for r in osc))
        resolution = fs * 2.0 ** (1 - min(int(self.dev.dac_bits["coupling"]), 32))
        out = set()
        for r in osc:
            kappa = r.noise / (2.0 * r.friction) if r.friction > 0 else 0.0
            if r.optional and (r.friction < 4 * resolution or kappa / r.scale**2 > TEMPERATURE_MAX * NOISE_GAIN_MAX):
                out.add(id(r))
        return out

    def _packet(self, relax: list[Relax], osc: list[Oscillate], n: int, factor: float,
                attempt: int) -> dict[int, np.ndarray]:
        dev = self.dev
        kappa = np.zeros(n)
        modes = np.zeros(n, dtype=np.int64)
        for r in relax:
            kappa[r.cells] = r.kappa / (r.scale * factor) ** 2
        for r in osc:
            modes[r.cells] = 1
            kappa[r.cells] = (r.noise / (2.0 * r.friction) if r.friction > 0 else 0.0) / (r.scale * factor) ** 2
        temperature = min(float(np.max(kappa, initial=0.0)), TEMPERATURE_MAX)
        gain = np.full(n, 0.0 if osc else 1.0)
        if temperature > 0:
            gain[:] = 0.0
            for r in [*relax, *osc]:
                gain[r.cells] = kappa[r.cells] / temperature
        else:
            for r in relax:
                gain[r.cells] = 1.0
        phases = _phases(relax, "readout")
        reads: list[tuple[list, Any]] = []
        with dev.batch():
            if self.delay_running:
                dev.wait()            # the delayed run on the previous curvature ends first
                self.delay_running = False
            if self.fresh:
                dev.stop()
                dev.configure(mobility=1.0)
                dev.clear_saturation()
                dev.reset_state()
                self.held.clear()
                self.fresh = False
            quiet = gain.copy()                 # the momentum cells' noise is off while a
            for r in osc:                       # relax phase runs (they wait at 0 for their run)
                quiet[r.cells] = 0.0
            for phase in phases:
                self._configure(modes=modes, temperature=temperature, noise_gain=quiet,
                                stability=phase[0].stability)
                self._load(phase, n, factor, uncoupled_rest=not osc)
                dev.commit()
                self._start(phase, n, factor, attempt, still=bool(osc))
                dev.run(phase[0].t)
                reads.append((phase, dev.mean() if phase[0].readout == "mean" else dev.state()))
                for r in phase:
                    self.held[(r.cells.start, r.cells.stop)] = r.scale * factor
            for group in _phases(osc):
                friction, v0 = np.zeros(n), np.zeros(n)
                for r in group:
                    friction[r.cells] = r.friction
                    v0[r.cells] = r.v0 / (r.scale * factor)
                changed = self._configure(modes=modes, friction=friction, temperature=temperature,
                                          noise_gain=gain, stability=group[0].stability)
                if self.coupling != "zero" and not phases:
                    dev.load_lowrank(np.zeros((0, n)), np.zeros((0, 0)), np.zeros(n))
                    dev.load_bias(np.zeros(n))
                    self.coupling, self.mirror["diag"], changed = "zero", np.zeros(n).tobytes(), True
                if changed or phases:
                    dev.commit()
                dev.reset_state()
                self.held.clear()
                dev.set_velocity(v0)
                dev.run(group[0].t)
                reads.append((group, dev.velocity()))
        delay = max((r.t_delay for r in relax), default=0.0)
        if delay > 0:
            dev.run(delay, wait=False)
            self.delay_running = True
        out: dict[int, np.ndarray] = {}
        for group, deferred in reads:
            value = deferred.value
            for r in group:
                out[id(r)] = value[r.cells]
        return out

    def _configure(self, **settings: Any) -> bool:
        """Stage the settings that differ from what the device holds; True if any did."""
        staged = {}
        for key, value in settings.items():
            if value is None:
                continue
            mark = value.tobytes() if isinstance(value, np.ndarray) else value
            if self.mirror.get(key) != mark:
                staged[key] = value
                self.mirror[key] = mark
        if "modes" in staged:
            self.dev.configure(mode=["underdamped" if m else "overdamped" for m in staged.pop("modes")])
        if staged:
            self.dev.configure(**staged)
        return bool(staged)

    def _load(self, phase: list[Relax], n: int, factor: float, uncoupled_rest: bool) -> None:
        """The phase's coupling and bias (see ``coupling.assemble``); DIAG only if it changed."""
        dev = self.dev
        dense, J, H, diag, bias = assemble(phase, n, factor, uncoupled_rest)
        self.coupling = "loaded"
        if dense is not None:
            dev.load_coupling(dense)
        else:
            if J.shape[0] > dev.max_rank:
                raise ValueError(f"the curvature uploaded in one step has rank {J.shape[0]} (batch × "
                                 f"outputs for each group that uses it), above the device's MAX_RANK "
                                 f"{dev.max_rank}: use a smaller batch, fewer such groups, or form='dense'")
            mark = diag.tobytes()
            dev.load_lowrank(*within_full_scale(J, H), None if self.mirror.get("diag") == mark else diag)
            self.mirror["diag"] = mark
        dev.load_bias(bias)

    def _start(self, phase: list[Relax], n: int, factor: float, attempt: int, still: bool) -> None:
        """The cells' state before the run: reset, left as it is (a warm start the cells still
        hold at this scale), or written. ``still``: underdamped cells share the packet, and
        their loop currents must be zero too (RESET_STATE first), or x would integrate them."""
        dev, room = self.dev, 0.9 * self.dev.vmax
        if all(r.start == "zero" for r in phase):
            dev.reset_state()
            self.held.clear()
            return
        x0, write = np.zeros(n), False
        for r in phase:
            s = r.scale * factor
            if r.start == "zero":
                write = True          # (zero where the vector is not written)
            elif r.initial is not None and (r.start == "given" or attempt == 0):
                x0[r.cells] = np.clip(r.initial / s, -room, room)
                held = self.held.get((r.cells.start, r.cells.stop)) == s
                write = write or r.start == "given" or not held
        if write:
            if still:
                dev.reset_state()
            dev.set_state(x0)
            self.held.clear()
