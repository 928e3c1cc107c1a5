"""Assemble an emulated device: analog core + firmware, as the daemon and local:// use it."""
from __future__ import annotations

from dataclasses import replace

from device.analog.core import AnalogCore, CoreParams
from device.analog.profiles import get_profile
from firmware_sim import Firmware
from protocol.regmap import REGMAP

DEFAULT_SERIAL = 0x7E000001
MAX_CELLS = 262144
"""The per-cell windows span 2^18 words."""
MAX_EMULATED_RANK = REGMAP.meta["emu_max_rank"]
MAX_DENSE_CELLS = 16384
"""The COUPLING window spans 2^28 words: a dense N × N matrix fits for N ≤ 16384. A larger
emulator implements the low-rank mode only (memory O(rN): the MAX_RANK × N_CELLS J window)."""
PROFILE_IDS = {name: i for i, name in enumerate(REGMAP.meta["emu_profiles"])}
PROFILE_FILE_ID = 255
"""EMU_PROFILE of an emulator started from a user's profile file."""


def warm_up_kernels() -> None:
    """Compile (or load from the on-disk cache) every kernel before the device answers, so the
    first RUN of a fresh install is not stalled behind Numba's compiler (a run thread stuck in a
    compile for seconds lets leases lapse): the EM kernels under "em" (exact propagation would
    skip them), then exact propagation's."""
    import numpy as np
    core = AnalogCore(2, 1, get_profile("ideal"), serial=0, seed=0)
    core.set_integrator("em")
    core.program(CoreParams(active=2, coupling="dense", A=np.eye(2), temperature=1e-3))
    core.advance(core.dt)
    core.program(CoreParams(active=2, coupling="lowrank", J=np.ones((1, 2)), H=np.eye(1),
                            lam=np.ones(2), temperature=1e-3))
    core.advance(core.dt)
    core.program(CoreParams(active=2, coupling="capacitive", A=np.eye(2), lam=np.ones(2),
                            temperature=1e-3))
    core.advance(core.dt)
    core.set_integrator("exact")
    core.program(CoreParams(active=2, coupling="dense", A=np.eye(2), temperature=1e-3))
    core.sample_run(1.0, 2)  # exact propagation's mode kernel


DEFAULT_CELLS = 64


def build_firmware(cells: int | None = None, *, profile: str = "ideal", seed: int = 0,
                   serial: int = DEFAULT_SERIAL, max_rank: int | None = None) -> Firmware:
    """A booted emulated device with ``cells`` unit cells (default: the profile's size, if it
    has one, else 64)."""
    prof = get_profile(profile)
    if cells is None:
        cells = prof.cells or DEFAULT_CELLS
    if not 1 <= cells <= MAX_CELLS:
        raise ValueError(f"cells must be in 1..{MAX_CELLS}, got {cells}")
    if prof.cells and cells != prof.cells:
        raise ValueError(f"profile {prof.name!r} is a chip of {prof.cells} cells, not {cells}")
    rank = min(cells, 256) if max_rank is None else max_rank
    if not 0 <= rank <= MAX_EMULATED_RANK:
        raise ValueError(f"max_rank must be in 0..{MAX_EMULATED_RANK}, got {rank}")
    if rank * cells > REGMAP.LOWRANK_J.span:
        raise ValueError(f"max_rank x cells = {rank * cells} exceeds the LOWRANK_J window "
                         f"({REGMAP.LOWRANK_J.span} words): lower max_rank to at most "
                         f"{REGMAP.LOWRANK_J.span // cells}")
    if cells > MAX_DENSE_CELLS:
        if "lowrank" not in prof.modes:
            raise ValueError(f"an emulator of more than {MAX_DENSE_CELLS} cells implements the "
                             f"low-rank mode only, which profile {prof.name!r} does not have")
        prof = replace(prof, modes=("lowrank",))
    warm_up_kernels()
    core = AnalogCore(cells, rank, prof, serial=serial, seed=seed)
    return Firmware(core, serial=serial, seed=seed, profile_id=PROFILE_IDS.get(prof.name, PROFILE_FILE_ID) if prof.builtin
                    else PROFILE_FILE_ID,
                    limits=prof.device_limits, params_type=CoreParams,
                    calibrated=prof.offset_sigma == prof.gain_sigma == prof.drift_rate == 0)
