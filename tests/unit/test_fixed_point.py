"""The one-pass q31 kernels give the numpy reference conversions' results to the bit."""
from __future__ import annotations

import numpy as np
import pytest

from protocol.fixed_point import decode_q31, encode_q31, scan


def _reference_encode(values: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    """The numpy form: scale, round half to even, back to the DAC grid, saturate, cast."""
    step = 2.0 ** (32 - bits)
    v = np.rint(values * (2.0**31 / (full_scale * step))) * step
    return np.clip(v, -(2.0**31), 2.0**31 - step).astype(np.int32)


def _reference_decode(codes: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    mask = np.int32(-(1 << (32 - bits))) if bits < 32 else np.int32(-1)
    return (codes & mask).astype(np.float64) * (full_scale / 2.0**31)


@pytest.mark.parametrize("bits", [32, 16, 12, 1])
def test_encode_and_decode_match_the_numpy_forms(bits: int) -> None:
    rng = np.random.default_rng(bits)
    fs = 3.0
    lsb = fs / 2.0 ** (bits - 1)                     # one step of a bits-bit DAC
    values = np.concatenate([rng.uniform(-1.2 * fs, 1.2 * fs, 20_000),
                             # exact ties (half steps, to even), the ends, and beyond them
                             np.array([0.5, -0.5, 1.5, 2.5, -2.5]) * lsb,
                             [fs, -fs, fs - 0.5 * lsb, 1e30, -1e30, 0.0, -0.0]])
    codes = encode_q31(values, fs, bits)
    np.testing.assert_array_equal(codes, _reference_encode(values, fs, bits))
    np.testing.assert_array_equal(decode_q31(codes, fs, bits), _reference_decode(codes, fs, bits))
    out = np.empty(codes.size)
    assert decode_q31(codes, fs, bits, out=out) is out
    np.testing.assert_array_equal(out, _reference_decode(codes, fs, bits))


def test_scan_finds_the_range_and_non_finite_values() -> None:
    assert scan(np.array([1.0, -3.0, 2.0])) == (3.0, -3.0, True)
    top, low, finite = scan(np.array([[1.0, np.nan], [-2.0, 0.5]]))
    assert (top, low, finite) == (2.0, -2.0, False)
    assert scan(np.array([np.inf]))[2] is False
    assert scan(np.zeros(0)) == (0.0, 0.0, True)


def test_the_numpy_fallbacks_match_the_kernels() -> None:
    """A host without Numba (no emulator installed) converts with the numpy forms: the same."""
    from protocol import fixed_point as fp
    rng = np.random.default_rng(7)
    flat = np.concatenate([rng.uniform(-5, 5, 5000), [np.nan, np.inf, -np.inf, 2.5, -2.5]])
    assert fp._scan_numpy(flat) == fp._scan(flat)
    for bits in (32, 12):
        step = 2.0 ** (32 - bits)
        a, b = np.empty(flat.size, np.int32), np.empty(flat.size, np.int32)
        finite = np.nan_to_num(flat, posinf=1e30, neginf=-1e30)
        fp._encode_numpy(finite, 2.0**31 / (4.0 * step), step, a)
        fp._encode(finite, 2.0**31 / (4.0 * step), step, b)
        np.testing.assert_array_equal(a, b)
        x, y = np.empty(flat.size), np.empty(flat.size)
        mask = np.int32(-(1 << (32 - bits))) if bits < 32 else np.int32(-1)
        fp._decode_numpy(a, mask, 4.0 / 2**31, x)
        fp._decode(a, mask, 4.0 / 2**31, y)
        np.testing.assert_array_equal(x, y)
