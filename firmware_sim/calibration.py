"""The calibration routine, as a board's firmware would run it on its own analog core.

Two things a fabricated chip gets wrong that the firmware can measure with nothing but its own
converters, and correct with a trim per cell:

The gain passes run first (the offset cancels in their difference) and the offset passes last,
so the offsets have drifted least when the routine hands the core back.

* **Offsets.** Each cell's input carries a small offset current δ_i (V/τ0), and it drifts.
  With no coupling and no leak a cell is a pure integrator, x(T) = M_i (δ_i + trim_i) T, so
  one run of T τ0 read through the ADC measures δ_i + trim_i, and the trim is corrected by it.
  A second pass removes what the first could not (the cell's capacitance mismatch M_i scales the
  first estimate); a third pass only measures what is left (CAL_RESIDUAL).
* **The DIAG path's gain.** With only the diagonal λ_c and a bias ±β, the equilibrium is
  x± = (±β + δ)/(λ_c g_i); the difference x₊ − x₋ = 2β/(λ_c g_i) gives the gain g_i free of the
  offset, and DIAG values are multiplied by 1/g_i from then on.

The coupling elements (J, H, COUPLING) are not trimmed: there are r·N or N² of them, each needing
its own measurement; the host's iterative refinement corrects what their mismatch leaves.
Thermal noise is switched off while calibrating (TEMPERATURE 0 for the routine).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from firmware_sim.converters import adc, dac, keep_top_bits

OFFSET_WINDOW = 64.0
"""τ0 of pure integration per offset pass: a 2 mV/τ0 offset moves the cell by 0.13 V (26 LSB
of a 12-bit ADC over ±10 V), while a drift of 1e-5 V/τ0 per sqrt(τ0) moves it by only 8e-5."""
OFFSET_PASSES = 2
GAIN_DIAG = 0.125
"""λ_c of the gain passes (1/τ0)."""
GAIN_BIAS = 0.5
"""β of the gain passes (V/τ0): x± = ±4 V, far from the rails, 800 LSB of a 12-bit ADC."""
GAIN_SETTLE = 96.0
"""τ0 per gain pass: twelve time constants of 1/λ_c."""
READS = 8
"""ADC reads averaged per measurement (its input noise averages down by sqrt(8))."""
COST = (OFFSET_PASSES + 1) * OFFSET_WINDOW + 2 * GAIN_SETTLE
"""Device time of one CALIBRATE (τ0); a CAL_CHECK takes OFFSET_WINDOW."""


@dataclass
class Converters:
    """What the routine needs to know about the board's converters."""
    vmax: float
    adc_bits: int
    bias_bits: int
    trim_fs: float


def quantize_trim(trim: np.ndarray, conv: Converters) -> np.ndarray:
    """Offset trims as the trim DAC produces them (round to its grid, saturate at full scale)."""
    step = conv.trim_fs * 2.0 ** (1 - conv.bias_bits)
    codes = np.clip(np.rint(trim / step), -(2 ** (conv.bias_bits - 1)), 2 ** (conv.bias_bits - 1) - 1)
    return codes * step


class Calibrator:
    """Runs the passes on ``core`` (AnalogCoreLike) with parameter sets made by ``make``."""

    def __init__(self, core: Any, make: Callable[..., Any], conv: Converters) -> None:
        self.core, self.make, self.conv = core, make, conv
        self.n = core.n_cells

    def _read(self) -> np.ndarray:
        codes = np.mean([adc(self.core.read_adc_input(), self.conv.vmax, self.conv.adc_bits)
                         .astype(np.float64) for _ in range(READS)], axis=0)
        return codes * (self.conv.vmax / 2.0**31)

    def _relax(self, lam: np.ndarray, bias: np.ndarray, t: float) -> np.ndarray:
        n = self.n
        self.core.program(self.make(active=n, coupling="lowrank", J=np.zeros((0, n)),
                                    H=np.zeros((0, 0)), lam=lam, bias=bias, temperature=0.0))
        self.core.set_state(np.zeros(n))
        self.core.advance(t)
        return self._read()

    def residual_offset(self, trim: np.ndarray) -> np.ndarray:
        """δ + trim per cell (V/τ0), from one pure-integration pass."""
        x = self._relax(np.zeros(self.n), quantize_trim(trim, self.conv), OFFSET_WINDOW)
        return x / OFFSET_WINDOW

    def offsets(self, trim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New offset trims, and the residual measured with them."""
        trim = trim.copy()
        for _ in range(OFFSET_PASSES):
            trim = np.clip(trim - self.residual_offset(trim), -self.conv.trim_fs, self.conv.trim_fs)
        return trim, self.residual_offset(trim)

    def diag_gain(self, trim: np.ndarray, diag_dac: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Gain of each cell's DIAG path, g_i (1 = nominal); ``diag_dac`` makes λ_c physical."""
        lam = diag_dac(np.full(self.n, GAIN_DIAG))
        bias = quantize_trim(trim, self.conv)
        plus = self._relax(lam, bias + GAIN_BIAS, GAIN_SETTLE)
        minus = self._relax(lam, bias - GAIN_BIAS, GAIN_SETTLE)
        swing = plus - minus
        ok = np.abs(swing) > 0.25 * 2 * GAIN_BIAS / GAIN_DIAG  # a dead cell keeps gain 1
        return np.where(ok, 2 * GAIN_BIAS / (GAIN_DIAG * np.where(ok, swing, 1.0)), 1.0)


def apply_diag_trim(codes: np.ndarray, trim: np.ndarray, bits: int) -> np.ndarray:
    """DIAG codes times the per-cell gain trim, rounded to the DAC's grid (the firmware does the
    multiplication digitally, before the DAC, so the trim costs no extra truncation)."""
    step = 2.0 ** (32 - min(bits, 32))
    scaled = np.rint(codes.astype(np.float64) * trim / step) * step
    return keep_top_bits(np.clip(scaled, -2.0**31, 2.0**31 - step).astype(np.int64).astype(np.int32), bits)


__all__ = ["COST", "Calibrator", "Converters", "apply_diag_trim", "dac", "quantize_trim"]
