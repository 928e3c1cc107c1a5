"""Run scheduler: advances the analog core in short chunks on its own thread.

Runs proceed asynchronously, so a host can read registers, stage a new configuration or COMMIT
while the device runs (the overlap TNGD relies on). Each chunk holds the firmware lock for a few
milliseconds of wall time at most; between chunks the firmware serves packets.
"""
from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware_sim.firmware import Firmware

#: Wall time one chunk may hold the firmware lock.
CHUNK_WALL_S = 0.004


class RunScheduler(threading.Thread):
    def __init__(self, fw: "Firmware") -> None:
        super().__init__(name="thermohil-run", daemon=True)
        self.fw = fw
        self._quit = False
        self._sec_per_step = 1e-6  # sizes chunks to CHUNK_WALL_S: the firmware's measured cost
        # of the committed configuration, or the last one known (right after a COMMIT)
        self._sec_per_sample = 1e-5  # the same for exact sample batches

    def shutdown(self) -> None:
        with self.fw.cond:
            self._quit = True
            self.fw.cond.notify_all()
        self.join(timeout=5)

    def run(self) -> None:
        fw = self.fw
        while True:
            with fw.cond:
                while not fw.running and not self._quit:
                    fw.cond.wait()
                if self._quit:
                    return
                try:
                    self._chunk(fw)
                except Exception as e:  # never let the run thread die silently
                    fw.fault(f"run thread: {type(e).__name__}: {e}")
                fw.cond.notify_all()
            # let the packet thread in between chunks (the lock is fair enough with a yield)
            time.sleep(0)

    def _chunk(self, fw: "Firmware") -> None:
        core = fw.core
        # an exact stretch costs the same whatever its length: as long as the core allows
        horizon = core.exact_horizon() if hasattr(core, "exact_horizon") else 0.0
        if horizon > 0 and fw.sampling and fw.sample_period > 0 and self._samples(fw, horizon):
            return
        if horizon > 0:
            t = min(fw.run_left, horizon)
        else:
            steps = max(1, int(CHUNK_WALL_S / self._sec_per_step))
            t = min(fw.run_left, steps * core.dt)
        if fw.sample_period > 0 and fw.sampling:
            t = min(t, max(fw.next_sample - fw.run_elapsed, 0.0))
        before = getattr(core, "exact_time", 0.0)
        t0 = time.perf_counter()
        clamps = core.advance(t, fw.acc) if t > 0 else 0
        took = time.perf_counter() - t0
        fw.after_chunk(t, clamps, took, exact=getattr(core, "exact_time", 0.0) > before)
        self._sec_per_step = fw.step_cost or self._sec_per_step

    def _samples(self, fw: "Firmware", horizon: float) -> bool:
        """Several sample periods in one exact batch (the core applies its basis once to all of
        them). False, with nothing done, where a batch does not fit: a first sample off the
        period grid, fewer than two samples, or a core that cannot propagate it exactly."""
        period = fw.sample_period
        if abs(fw.next_sample - fw.run_elapsed - period) > 1e-9 * period:
            return False
        k = fw.samples_left if fw.samples_left > 0 else 1 << 30
        k = min(k, int(fw.run_left / period * (1 + 1e-12)),
                max(2, int(CHUNK_WALL_S / self._sec_per_sample)))
        if math.isfinite(horizon):
            k = min(k, int(horizon / period * (1 + 1e-12)))
        if k < 2 or not hasattr(fw.core, "sample_run"):
            return False
        t0 = time.perf_counter()
        inputs = fw.core.sample_run(period, k, fw.acc)
        if inputs is None:
            return False
        self._sec_per_sample = max((time.perf_counter() - t0) / k, 1e-7)
        fw.after_samples(inputs, period)
        return True
