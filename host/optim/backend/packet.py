"""One step's device requests as one packet per round, with one rule for saturation: retry
the whole packet with every scale ×16. The packet's body is ``phases.write``; this module
drives an update's generator, decides what the converters cannot do (refusals), checks every
read-out and names what failed.
"""
from __future__ import annotations

import time
import weakref
from typing import Any, Generator

import numpy as np

from host.errors import DeviceSaturated
from host.optim.backend.phases import Mirror, phases_of, write
from host.optim.backend.requests import Oscillate, Relax, Result
from host.optim.backend.scaling import (NOISE_GAIN_MAX, RETRIES, RETRY_FACTOR, TEMPERATURE_MAX,
                                        resolution)
from protocol.regmap import q31_full_scale_for


class CurvatureSaturates(RuntimeError):
    """The device kept hitting its rails even at the smallest signal scale."""


class MomentaSaturate(CurvatureSaturates):
    """The momenta kept reaching the rails even at the smallest signal scale (the chain has
    diverged: lower h)."""


_BACKENDS: "weakref.WeakKeyDictionary[Any, Backend]" = weakref.WeakKeyDictionary()


def backend_for(device: Any) -> "Backend":
    """The one backend of a device (it mirrors the device's registers, so it is shared; a new
    optimizer's ``init`` makes it forget them)."""
    if device not in _BACKENDS:
        _BACKENDS[device] = Backend(device)
    return _BACKENDS[device]


def check_fits(device: Any, n: int) -> None:
    if n > device.n_cells:
        raise ValueError(f"the model has {n} parameters but the device only {device.n_cells} cells "
                         "(one cell per parameter)")


class Backend:
    def __init__(self, device: Any) -> None:
        self.dev = device
        self.mirror = Mirror()
        self._extra = [0.0, 0, 0, 0.0]     # calibration: device time, bytes up, bytes down, wall s
        self.retries = 0                   # packets re-sent larger after a saturation, this update

    def forget(self) -> None:
        self.mirror.forget()

    # ------------------------------------------------------------------ driving an update
    def drive(self, steps: Generator, n: int, info: dict | None, step: int | None = None) -> Any:
        """Run a generator update: each yielded list of requests is one packet; the step's
        device time, traffic and time in device calls go into ``info``."""
        stats = self.dev.stats
        sent0, recv0 = stats.bytes_sent, stats.bytes_received
        self._extra, self.retries = [0.0, 0, 0, 0.0], 0
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
            if self.retries:            # (a row says so only when it happened)
                info["saturation_retries"] = self.retries
        return value

    def calibration(self, check_only: bool) -> Any:
        """The device's drift check (or a calibration): its own packets, counted apart from the
        step's traffic; it resets the cells, so no run's state is held any more."""
        stats, t0 = self.dev.stats, time.perf_counter()
        sent0, recv0 = stats.bytes_sent, stats.bytes_received
        if self.mirror.delay_running:   # a delayed run ends first (a check needs the core to itself)
            self.dev.wait()
            self.mirror.delay_running = False
        report = self.dev.check_calibration() if check_only else self.dev.calibrate()
        self.mirror.held.clear()
        self._extra[0] += report.device_time
        self._extra[1] += stats.bytes_sent - sent0
        self._extra[2] += stats.bytes_received - recv0
        self._extra[3] += time.perf_counter() - t0
        return report

    # ------------------------------------------------------------------ one packet, with retries
    def run(self, requests: list, n: int, step: int | None = None) -> tuple[list[Result], float]:
        check_fits(self.dev, n)
        relax = [r for r in requests if isinstance(r, Relax)]
        osc = [r for r in requests if isinstance(r, Oscillate)]
        delay = max((r.t_delay for r in relax), default=0.0)
        if delay > 0 and osc:
            raise ValueError("t_delay cannot share a packet with momentum runs (they reset the cells "
                             "the delayed run would continue)")
        refused = self._refused(relax, osc)
        go = [r for r in osc if id(r) not in refused]
        if not relax and not go:
            return [Result(None, 0.0) for _ in requests], 0.0
        top = 1.0 - 2.0 ** (1 - min(self.dev.adc_bits, 21))   # the ADC's top code: a clipped read-out
        hit: list[int] = []
        for attempt in range(RETRIES + 1):
            boost = RETRY_FACTOR ** attempt
            try:
                with self.dev.batch():
                    reads = write(self.dev, self.mirror, relax, go, n, boost, attempt)
                values = {}
                for r in [*relax, *go]:
                    values[id(r)] = reads[id(r)].value[r.cells]
                    clipped = np.flatnonzero(np.abs(values[id(r)]) >= top * self.dev.vmax)
                    if clipped.size:
                        raise DeviceSaturated("a read-out reached the converters' full scale",
                                              (clipped + r.cells.start).tolist())
                break
            except DeviceSaturated as e:
                self.forget()
                hit = list(e.cells)
            except BaseException:
                self.forget()           # what the device holds is no longer known
                raise
        else:
            raise self._saturated(relax, hit, step)
        if delay > 0:   # its own packet, once the read-out is back: the host computes meanwhile
            self.dev.run(delay, wait=False)
            self.mirror.delay_running = True
        out = [Result(None, 0.0) if id(r) in refused else
               Result(values[id(r)] * (r.scale * boost), r.scale * boost, r.scale) for r in requests]
        self.retries += attempt
        spent = sum(p[0].t for p in phases_of(relax, "readout")) + sum(p[0].t for p in phases_of(go)) + delay
        return out, spent

    @staticmethod
    def _saturated(relax: list[Relax], cells: list[int], step: int | None) -> CurvatureSaturates:
        at = f" at step {step}" if step is not None else ""
        beyond = f"{RETRY_FACTOR:g}^{RETRIES} = {RETRY_FACTOR ** RETRIES:g}× the chosen scales"
        if any(r.cells.start <= c < r.cells.stop for r in relax for c in cells) or not cells and relax:
            return CurvatureSaturates(f"the device saturated{at} even with every signal scaled down to "
                                      f"{beyond}: the uploaded curvature is not positive definite or too stiff")
        return MomentaSaturate(f"the momenta reached the device's rails{at} even scaled down to {beyond}: "
                               "the chain has diverged (lower the step size h)")

    def _refused(self, relax: list[Relax], osc: list[Oscillate]) -> set[int]:
        """Oscillations the converters cannot do beside the packet's other requests: a friction
        below four steps of the friction DAC (at the packet's full scale), or a noise gain below
        four steps of the gain DAC or above TEMPERATURE × NOISE_GAIN's reach. The requester
        then takes the same exact step on the host."""
        if not osc:
            return set()
        bits = int(self.dev.dac_bits["coupling"])
        step_f = resolution(q31_full_scale_for(max(abs(r.friction) for r in osc)), bits)
        kappas = [r.kappa / r.scale**2 for r in [*relax, *osc]]
        temperature = min(max(kappas), TEMPERATURE_MAX)
        top_gain = max(kappas) / temperature if temperature > 0 else 1.0
        step_g = resolution(q31_full_scale_for(min(top_gain, NOISE_GAIN_MAX)), bits)
        out = set()
        for r in osc:
            gain = r.kappa / r.scale**2 / temperature if temperature > 0 else 0.0
            if r.friction < 4 * step_f or 0 < gain < 4 * step_g or gain > NOISE_GAIN_MAX:
                out.add(id(r))
        return out
