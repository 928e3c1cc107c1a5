"""Packing physical numbers into 32-bit register words (little-endian IEEE-754)."""
from __future__ import annotations

import numpy as np


def f32_to_word(x: float) -> int:
    return int(np.array(x, dtype="<f4").view("<u4"))


def word_to_f32(w: int) -> float:
    return float(np.array(w, dtype="<u4").view("<f4"))


def f64_to_words(x: float) -> tuple[int, int]:
    """(low word, high word)."""
    lo, hi = np.array([x], dtype="<f8").view("<u4")
    return int(lo), int(hi)


def words_to_f64(lo: int, hi: int) -> float:
    return float(np.array([lo, hi], dtype="<u4").view("<f8")[0])
