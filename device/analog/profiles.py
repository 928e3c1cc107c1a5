"""Non-ideality profiles of the analog core (cf. aihwkit presets).

A profile says how far the emulated chip is from the ideal physics. The core applies the analog
non-idealities (mismatch, offsets, drift, rail saturation, ADC input noise); the firmware applies
the digital ones (DAC/ADC resolution and full scale) using ``dac_bits_*``, ``adc_bits`` and
``vmax``.
Units: volts, device time unit τ0 (= R0·C0), couplings in 1/τ0.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Static description of one chip family's non-idealities (all zero/ideal by default)."""

    name: str
    vmax: float = 10.0
    """Rail voltage: node voltages are clamped to [-vmax, vmax] (SATURATED flag)."""
    dac_bits_coupling: int = 32
    dac_bits_bias: int = 32
    adc_bits: int = 32
    adc_noise: float = 0.0
    """ADC input-referred noise, V rms per read."""
    gain_sigma: float = 0.0
    """Relative mismatch of each coupling element (fixed per serial; symmetric per pair)."""
    offset_sigma: float = 0.0
    """Per-cell bias offset, same units as b (V/τ0)."""
    cap_sigma: float = 0.0
    """Relative cell capacitance mismatch; scales mobility (time constants, not equilibrium)."""
    drift_rate: float = 0.0
    """Random-walk rate of the offsets, in b units per sqrt(τ0) of device time."""

    def __post_init__(self) -> None:
        if not self.vmax > 0:
            raise ValueError(f"profile {self.name!r}: vmax must be > 0, got {self.vmax}")
        for field in ("dac_bits_coupling", "dac_bits_bias", "adc_bits"):
            bits = getattr(self, field)
            if not 1 <= bits <= 32:
                raise ValueError(f"profile {self.name!r}: {field} must be in 1..32, got {bits}")
        for field in ("adc_noise", "gain_sigma", "offset_sigma", "cap_sigma", "drift_rate"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"profile {self.name!r}: {field} must be >= 0")


PROFILES: dict[str, Profile] = {
    "ideal": Profile(name="ideal"),
    "realistic": Profile(
        name="realistic",
        dac_bits_coupling=12,
        dac_bits_bias=14,
        adc_bits=12,
        adc_noise=1e-3,
        gain_sigma=0.01,
        offset_sigma=2e-3,
        cap_sigma=0.02,
        drift_rate=1e-5,
    ),
}


def get_profile(name: str) -> Profile:
    """Look up a profile by name; an unknown name is an error, never a silent fallback."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; available: {', '.join(sorted(PROFILES))}"
        ) from None
