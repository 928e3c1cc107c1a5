"""Register file: storage, reset values and static range checks, generated from the map.

Plain storage lives here; registers with side effects (CTRL, STATUS, OWNER, ...) are handled by
the firmware, which consults this file for everything else. Shadowed registers and memories are
stored once — as the shadow bank; the active bank is what the analog core was last programmed
with (see Firmware.commit), so reads return what the host staged.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from firmware_sim.converters import f32_to_word, f64_to_words, word_to_f32
from protocol.regmap import Register, RegisterMap, Window, resolve
from protocol.status import Status

_SCALE = 2.0**31


class RegisterFile:
    def __init__(self, regmap: RegisterMap, consts: Mapping[str, int | float]) -> None:
        self.map = regmap
        self.consts = dict(consts)
        self.words: dict[int, int] = {}
        self.mem: dict[str, np.ndarray] = {}
        self.depth = {w.name: w.depth_for(self.consts) for w in regmap.windows.values()}
        self.reset()

    def reset(self) -> None:
        for r in self.map.registers.values():
            value = resolve(r.reset, self.consts)
            if r.format == "f32":
                self.words[r.address] = f32_to_word(float(value))
            elif r.format == "f64":
                self.words[r.address], self.words[r.address + 1] = f64_to_words(float(value))
            else:
                self.words[r.address] = int(value) & 0xFFFFFFFF
        for w in self.map.windows.values():
            if w.fifo or w.access == "RO" or w.name in ("STATE", "VELOCITY"):
                continue  # computed from the analog core on read
            depth = self.depth[w.name]
            if w.format.startswith("q31"):
                code = int(np.clip(round(float(w.reset) * _SCALE / self.f32(w.scale)), -_SCALE, _SCALE - 1))
            else:
                code = int(w.reset)
            # np.zeros maps lazily: a large COUPLING window costs nothing until it is written
            self.mem[w.name] = (np.zeros(depth, dtype=np.int32) if code == 0
                                else np.full(depth, code, dtype=np.int32))

    # -- typed access ----------------------------------------------------------------------
    def u32(self, name: str) -> int:
        return self.words[self.map.registers[name].address]

    def f32(self, name: str) -> float:
        return word_to_f32(self.words[self.map.registers[name].address])

    def set_u32(self, name: str, value: int) -> None:
        self.words[self.map.registers[name].address] = int(value) & 0xFFFFFFFF

    def set_f32(self, name: str, value: float) -> None:
        self.words[self.map.registers[name].address] = f32_to_word(value)

    def set_f64(self, name: str, value: float) -> None:
        a = self.map.registers[name].address
        self.words[a], self.words[a + 1] = f64_to_words(value)

    def physical(self, window: str, count: int | None = None) -> np.ndarray:
        """Shadow codes of a fixed-point memory as physical values (before the DAC)."""
        w = self.map.windows[window]
        codes = self.mem[window][: count if count is not None else self.depth[window]]
        return codes.astype(np.float64) * (self.f32(w.scale) / _SCALE)

    # -- static checks -----------------------------------------------------------------------
    def check_register_word(self, reg: Register, word_index: int, word: int) -> Status:
        """Is ``word`` an allowed value for (one word of) ``reg``?"""
        if reg.format == "f32":
            x = word_to_f32(word)
            if not math.isfinite(x):
                return Status.RANGE
            value: float = x
        elif reg.format == "u32":
            value = word
        else:
            return Status.OK
        lo = resolve(reg.min, self.consts) if reg.min is not None else None
        hi = resolve(reg.max, self.consts) if reg.max is not None else None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return Status.RANGE
        return Status.OK

    def check_memory_words(self, win: Window, words: np.ndarray) -> Status:
        if win.format == "q31u" and np.any(words.view(np.int32) < 0):
            return Status.RANGE
        if win.format == "u32" and win.max is not None and np.any(words > int(win.max)):
            return Status.RANGE
        return Status.OK
