"""One-pass conversions between physical values and q31 codes, for the large payloads.

An upload of a coupling is the protocol's biggest cost next to the socket: the numpy forms of
these conversions make four to six passes over the data with a temporary each (scale, round,
clip, cast; checks before), which for a 10⁵ × 320 low-rank factor is most of a second. These
Numba kernels make one pass each. protocol.regmap.float_to_q31 and firmware_sim.converters.dac
call them; a host installed without Numba (a board's, without the emulator) gets the numpy forms
below instead, with the same results to the bit (tests/unit/test_fixed_point.py checks the
kernels against independent numpy references and against these fallbacks).
"""
from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # pragma: no cover - exercised by the example driver's test (no emulator)
    def njit(**_kw):  # type: ignore[no-redef]
        return lambda f: _NUMPY[f.__name__]

_JIT = dict(cache=True, nogil=True)


def _scan_numpy(flat):
    finite = flat[np.isfinite(flat)]
    ok = finite.size == flat.size
    if not finite.size:
        return 0.0, np.inf, ok
    return float(max(finite.max(), -finite.min())), float(finite.min()), ok


def _encode_numpy(flat, factor, step, out):
    v = np.rint(flat * factor) * step
    np.clip(v, -(2.0**31), 2.0**31 - step, out=v)
    out[:] = v.astype(np.int32)


def _decode_numpy(codes, mask, scale, out):
    np.multiply(codes & mask, scale, out=out)


_NUMPY = {"_scan": _scan_numpy, "_encode": _encode_numpy, "_decode": _decode_numpy}


@njit(**_JIT)
def _scan(flat):  # pragma: no cover - compiled
    top, low, finite = 0.0, np.inf, True
    for i in range(flat.size):
        v = flat[i]
        if not np.isfinite(v):
            finite = False
            continue
        a = abs(v)
        if a > top:
            top = a
        if v < low:
            low = v
    return top, low, finite


def scan(values: np.ndarray) -> tuple[float, float, bool]:
    """(max |v| over the finite values, min v, whether all are finite) in one pass."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    top, low, finite = _scan(flat)
    return float(top), float(low) if flat.size else 0.0, bool(finite)


@njit(**_JIT)
def _encode(flat, factor, step, out):  # pragma: no cover - compiled
    hi = 2.0**31 - step
    lo = -(2.0**31)
    for i in range(flat.size):
        v = np.rint(flat[i] * factor) * step
        if v > hi:
            v = hi
        elif v < lo:
            v = lo
        out[i] = np.int32(v)


def encode_q31(values: np.ndarray, full_scale: float, bits: int = 32) -> np.ndarray:
    """Round-to-nearest codes of a ``bits``-bit DAC, saturating: protocol.regmap.float_to_q31
    without ``rng``, in one pass."""
    flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    step = 2.0 ** (32 - min(max(int(bits), 1), 32))
    out = np.empty(flat.size, dtype=np.int32)
    _encode(flat, 2.0**31 / (full_scale * step), step, out)
    return out.reshape(np.shape(values))


@njit(**_JIT)
def _decode(codes, mask, scale, out):  # pragma: no cover - compiled
    for i in range(codes.size):
        out[i] = (codes[i] & mask) * scale


def decode_q31(codes: np.ndarray, full_scale: float, bits: int = 32,
               out: np.ndarray | None = None) -> np.ndarray:
    """Codes through a ``bits``-bit DAC (the low 32 − bits bits dropped) to physical values:
    firmware_sim.converters.dac in one pass, optionally into ``out`` (float64, same size)."""
    flat = np.ascontiguousarray(codes, dtype=np.int32).reshape(-1)
    bits = min(max(int(bits), 1), 32)
    mask = np.int32(-(1 << (32 - bits))) if bits < 32 else np.int32(-1)
    if out is not None:
        if not (out.flags.c_contiguous and out.dtype == np.float64 and out.size == flat.size):
            raise ValueError("out must be a contiguous float64 array of the codes' size")
        _decode(flat, mask, full_scale / 2.0**31, out.reshape(-1))
        return out
    result = np.empty(flat.size)
    _decode(flat, mask, full_scale / 2.0**31, result)
    return result.reshape(np.shape(codes))
