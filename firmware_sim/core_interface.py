"""What the firmware needs from an analog core (the emulator's, or a board's real one)."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class AnalogCoreLike(Protocol):
    n_cells: int
    max_rank: int
    profile: Any          # .name, .vmax, .dac_bits_coupling, .dac_bits_bias, .adc_bits, .modes,
    #                       timing: .tau0_s, .link_bits_per_s, .link_word_bits, .dac_words_per_s,
    #                       .adc_words_per_s
    serial: int
    x: np.ndarray
    v: np.ndarray
    sat: np.ndarray

    @property
    def dt(self) -> float: ...
    def program(self, params: Any) -> None: ...
    def set_state(self, x: np.ndarray, v: np.ndarray | None = None) -> None: ...
    def reset_state(self) -> None: ...
    def set_fidelity(self, stability: float = 0.02, substep: float = 0.0) -> None: ...
    def advance(self, t: float, acc: np.ndarray | None = None) -> int: ...
    def clear_saturation(self) -> None: ...
    def read_adc_input(self) -> np.ndarray: ...
    def reseed(self, seed: int) -> None: ...
    # optional, the emulator's (a board's core has neither): exact propagation
    #   exact: bool; exact_time: float; exact_reason: str
    #   def set_integrator(self, name: str) -> None   ("em" | "exact")
    #   def exact_horizon(self) -> float              (0: the next stretch is EM's)
