"""DAC and ADC conversion between fixed-point codes and physical values.

A DAC keeps the top ``bits`` of a 32-bit code (the rest are wired to nothing), so a host that
writes full 32-bit codes to a 12-bit DAC gets the truncation a real board would give it. An ADC
rounds to its nearest step (a mid-tread quantizer: error within ±½ step, no bias), and its codes
are left-aligned in the 32-bit word.
"""
from __future__ import annotations

import numpy as np

from protocol.fixed_point import decode_q31
from protocol.words import f32_to_word, f64_to_words, word_to_f32, words_to_f64  # noqa: F401

_SCALE = 2.0**31


def keep_top_bits(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = np.asarray(codes, dtype=np.int32)
    if bits >= 32:
        return codes
    mask = np.int32(-(1 << (32 - bits)))  # ...111000: clears the low 32-bits bits
    return codes & mask


def dac(codes: np.ndarray, full_scale: float, bits: int, out: np.ndarray | None = None
        ) -> np.ndarray:
    """Codes (int32) to physical values through a ``bits``-bit DAC (in one pass; into ``out``
    when given)."""
    return decode_q31(codes, full_scale, min(bits, 32), out)


def adc(values: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    """Physical values to int32 codes through a ``bits``-bit ADC: rounded to the nearest of its
    2^bits steps (ties to even), saturating at the end codes."""
    step = 2.0 ** (32 - min(bits, 32))
    v = np.asarray(values, dtype=np.float64) * (_SCALE / (full_scale * step))
    codes = np.clip(np.rint(v), -_SCALE / step, _SCALE / step - 1) * step
    return codes.astype(np.int32)
