"""Signal scales: the powers of two that keep the cells' voltages inside the rails.

Every volt of range left unused makes the cells' offsets and converter steps that much larger
against the signal, so a scale is as small as is safe; and since changing it costs a re-upload
(and, for TNGD, the warm start), a scale is kept while it is neither too small nor ``slack``
times too large (hysteresis).
"""
from __future__ import annotations

import math

import numpy as np

from protocol.regmap import REGMAP

SIGMAS = 6.0            # a sample's mean plus SIGMAS thermal widths must fit
RETRY_FACTOR = 16.0     # a saturated packet is retried with every scale this much larger …
RETRIES = 3             # … this many times
TEMPERATURE_MAX = REGMAP.registers["TEMPERATURE"].max            # V²/τ0
FULL_SCALE_MAX = REGMAP.registers["NOISE_GAIN_FS"].max            # every converter's limit
NOISE_GAIN_MAX = FULL_SCALE_MAX / 4          # well below NOISE_GAIN's full-scale limit
J_FULL_SCALE_MAX = FULL_SCALE_MAX / 16       # J's entries are kept below this (see within_full_scale)


def pow2_above(x: float) -> float:
    """The power of two ≥ x (tiny or zero x: 2^-30), the signal scales' grid."""
    return 2.0 ** math.ceil(math.log2(max(x, 2.0**-30)))


def hysteresis(need: float, old: float | None, slack: float) -> float:
    """Keep ``old`` unless ``need`` exceeds it or is below old/slack."""
    if old is None or old <= 0 or need > old or need < old / slack:
        return need
    return old


def sample_scale(grad: np.ndarray, kappa: float, lam: float, room: float) -> float:
    """Scale s that keeps a sample of N(F⁻¹∇ℓ, κF⁻¹), F ⪰ λI, within ±room·s:
    |x| ≤ ‖F⁻¹∇ℓ‖ + SIGMAS·sqrt(κ (F⁻¹)_ii) ≤ ‖∇ℓ‖/λ + SIGMAS·sqrt(κ/λ)."""
    return pow2_above((float(np.linalg.norm(grad)) / lam + SIGMAS * math.sqrt(kappa / lam)) / room)


def within_full_scale(J: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JᵀHJ = (J/c)ᵀ(c²H)(J/c): move a power of two c from J into H when J's entries grow
    toward the converters' full-scale limit, as they do late in training."""
    m = max(float(J.max(initial=0.0)), -float(J.min(initial=0.0)))   # no |J| temporary the size of J
    if m <= J_FULL_SCALE_MAX:
        return J, H
    c = 2.0 ** math.ceil(math.log2(m / J_FULL_SCALE_MAX))
    return J / c, H * (c * c)


def momentum_scale(p: np.ndarray, thermal: float, t_run: float, room: float, old: float | None) -> float:
    """Power of two s with |p/s| + SIGMAS·thermal/s ≤ room/max(1, t_run) (x, which integrates v
    over the run, then stays within room too); kept unless too small or 64× too large."""
    need = pow2_above((float(np.max(np.abs(p), initial=0.0)) + SIGMAS * thermal) / (room / max(1.0, t_run)))
    return hysteresis(need, old, 64)


STABILITY = (REGMAP.registers["EMU_STABILITY"].min, REGMAP.registers["EMU_STABILITY"].max)


def check_stability(stability: float | None) -> None:
    """The emulator's fidelity, within EMU_STABILITY's range (None: leave it as it is)."""
    lo, hi = STABILITY
    if stability is not None and not (isinstance(stability, (int, float)) and lo <= stability <= hi):
        raise ValueError(f"stability must be in [{lo:g}, {hi:g}] (substep × stiffness bound), got {stability!r}")


def check_device_settings(stability: float | None, headroom: float) -> None:
    if not 0 < headroom <= 0.9:
        raise ValueError(f"headroom must be in (0, 0.9], got {headroom}")
    check_stability(stability)


def resolution(full_scale: float, bits: int) -> float:
    """One step of a DAC of ``bits`` bits at ``full_scale``."""
    return full_scale * 2.0 ** (1 - min(int(bits), 32))
