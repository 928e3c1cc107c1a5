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

#: Wall time one chunk of Euler–Maruyama substeps may hold the firmware lock.
CHUNK_WALL_S = 0.004
#: Samples of an exact batch × active cells, at most (bounds its memory, 2 MiB per copy).
SAMPLE_BATCH_WORDS = 1 << 18


class RunScheduler(threading.Thread):
    def __init__(self, fw: "Firmware") -> None:
        super().__init__(name="thermohil-run", daemon=True)
        self.fw = fw
        self._quit = False
        self._sec_per_step = 1e-6  # sizes chunks to CHUNK_WALL_S: the firmware's measured cost
        # of the committed configuration, or the last one known (right after a COMMIT)

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
        # an exact stretch costs the same whatever its length: as long as the core allows and
        # the rails are out of reach; every choice here is a function of the run, not of wall
        # time, so a run is reproducible from EMU_SEED
        horizon = core.exact_horizon() if hasattr(core, "exact_horizon") else 0.0
        gap = fw.next_sample - fw.run_elapsed if fw.sample_period > 0 and fw.sampling else math.inf
        if horizon > 0 and fw.sampling and fw.sample_period > 0 and self._samples(fw, horizon):
            return
        t = min(fw.run_left, horizon, max(gap, 0.0))
        exact = horizon > 0 and t > 0 and core.exact_safe(t)
        if not exact:
            steps = max(1, int(CHUNK_WALL_S / self._sec_per_step))
            t = min(fw.run_left, steps * core.dt, max(gap, 0.0))
        t0 = time.perf_counter()
        clamps = (core.advance(t, fw.acc, exact=exact) if horizon > 0 else core.advance(t, fw.acc)) \
            if t > 0 else 0
        took = time.perf_counter() - t0
        fw.after_chunk(t, clamps, took, exact=exact)
        self._sec_per_step = fw.step_cost or self._sec_per_step

    def _samples(self, fw: "Firmware", horizon: float) -> bool:
        """Several sample periods in one exact batch (the core applies its basis once to all of
        them). False, with nothing done, where a batch does not fit: a first sample off the
        period grid, room for fewer than two samples (in the run, the FIFO, a drift hold or
        SAMPLE_BATCH_WORDS), or a stretch the rails forbid."""
        period, n = fw.sample_period, fw.active_cells
        if abs(fw.next_sample - fw.run_elapsed - period) > 1e-9 * period:
            return False
        k = fw.samples_left if fw.samples_left > 0 else 1 << 30
        # the FIFO's depth, not its level: a host draining it meanwhile must not change the draws
        k = min(k, int(fw.run_left / period * (1 + 1e-12)), SAMPLE_BATCH_WORDS // max(n, 1),
                fw.fifo.depth // max(n, 1))
        if math.isfinite(horizon):
            k = min(k, int(horizon / period * (1 + 1e-12)))
        if k < 2 or not hasattr(fw.core, "sample_run"):
            return False
        inputs = fw.core.sample_run(period, k, fw.acc)
        if inputs is None:
            return False
        fw.after_samples(inputs, period)
        return True
