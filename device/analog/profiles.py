"""Hardware profiles: how far an emulated chip is from the ideal physics, and how fast it is.

A profile is data, one TOML file per chip (``device/profiles/NAME.toml`` for the built-in ones;
any path for a user's own), like the register map: each number says where it comes from in the
file's ``[sources]`` table, or that it is assumed. The core applies the analog non-idealities
(mismatch, offsets, drift, rail saturation, ADC input noise); the firmware applies the digital
ones (DAC/ADC resolution and full scale) and publishes the timing in the timing registers, from
which the host projects the time a run would take on the chip.
Units: volts, device time unit τ0 (= R0·C0), couplings in 1/τ0; timing in SI units.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from protocol.limits import Limits

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"

#: TOML section of every field (the file's layout); ``name`` and ``description`` are top level.
SECTIONS: dict[str, tuple[str, ...]] = {
    "device": ("cells", "modes"),
    "analog": ("vmax", "gain_sigma", "offset_sigma", "cap_sigma", "drift_rate"),
    "converters": ("dac_bits_coupling", "dac_bits_bias", "adc_bits", "adc_noise"),
    "timing": ("tau0_s", "link_bits_per_s", "link_word_bits", "dac_words_per_s", "adc_words_per_s"),
}


@dataclass(frozen=True)
class Profile:
    """Static description of one chip family (all ideal by default)."""

    name: str
    description: str = ""
    cells: int = 0
    """The chip's size when it has one (0: any; the emulator's --cells then decides)."""
    modes: tuple[str, ...] = ("dense", "lowrank", "capacitive")
    """Coupling modes the chip implements (COUPLING_MODE values it accepts)."""
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
    tau0_s: float = 1e-6
    """One device time unit in seconds (R0·C0)."""
    link_bits_per_s: float = 50e9
    link_word_bits: int = 16
    """Bits one 32-bit protocol word occupies on the chip's own link (the converter width)."""
    dac_words_per_s: float = 1e9
    adc_words_per_s: float = 1e9
    limits: tuple[tuple[str, int], ...] = ()
    """Protocol resource limits the chip's firmware lowers (``[limits]``, names as in
    protocol.limits.Limits); the rest are the protocol's maxima."""
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    """Where the numbers come from, by field or section name."""
    path: str = ""
    """The file it was read from."""

    def __post_init__(self) -> None:
        modes = tuple(self.modes)
        object.__setattr__(self, "modes", modes)
        if not modes or len(set(modes)) != len(modes) or \
                not set(modes) <= {"dense", "lowrank", "capacitive"}:
            raise ValueError(f"profile {self.name!r}: modes must be a non-empty subset of dense, "
                             f"lowrank, capacitive; got {list(modes)}")
        if not (isinstance(self.cells, int) and 0 <= self.cells <= 262144):
            raise ValueError(f"profile {self.name!r}: cells must be an integer in 0..262144")
        if not self.vmax > 0:
            raise ValueError(f"profile {self.name!r}: vmax must be > 0, got {self.vmax}")
        for name in ("dac_bits_coupling", "dac_bits_bias", "adc_bits", "link_word_bits"):
            bits = getattr(self, name)
            if not (isinstance(bits, int) and 1 <= bits <= 32):
                raise ValueError(f"profile {self.name!r}: {name} must be an integer in 1..32, "
                                 f"got {bits!r}")
        for name in ("adc_noise", "gain_sigma", "offset_sigma", "cap_sigma", "drift_rate"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"profile {self.name!r}: {name} must be finite and >= 0")
        for name in ("vmax", "tau0_s", "link_bits_per_s", "dac_words_per_s", "adc_words_per_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"profile {self.name!r}: {name} must be finite and > 0")

    @property
    def device_limits(self) -> Limits:
        return Limits(**dict(self.limits))

    @property
    def builtin(self) -> bool:
        return Path(self.path).parent == BUILTIN_DIR


def load_profile(path: str | Path) -> Profile:
    """Read a profile file; unknown sections or keys are errors (a typo must not go unnoticed)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ValueError(f"cannot read profile file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"profile file {path} is not valid TOML: {e}") from None
    where = f"profile file {path}"
    values: dict = {"path": str(path.resolve())}
    for key, value in data.items():
        if key in ("name", "description"):
            if not isinstance(value, str):
                raise ValueError(f"{where}: {key} must be a string")
            values[key] = value
        elif key == "sources":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(f"{where}: [sources] must map names to strings")
            values["sources"] = dict(value)
        elif key == "limits":
            if not isinstance(value, dict):
                raise ValueError(f"{where}: [limits] must be a table")
            unknown = sorted(set(value) - set(Limits.names()))
            if unknown:
                raise ValueError(f"{where}: unknown key {unknown[0]!r} in [limits]; known: "
                                 f"{', '.join(Limits.names())}")
            try:
                Limits(**value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: [limits]: {e}") from None
            values["limits"] = tuple(sorted(value.items()))
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: [{key}] must be a table")
            for k, v in value.items():
                if k not in SECTIONS[key]:
                    raise ValueError(f"{where}: unknown key {k!r} in [{key}]; known: "
                                     f"{', '.join(SECTIONS[key])}")
                values[k] = v
        else:
            raise ValueError(f"{where}: unknown section or key {key!r}; known: name, description, "
                             f"{', '.join(SECTIONS)}, limits, sources")
    if "name" not in values:
        raise ValueError(f"{where}: needs a name")
    types = {f.name: f.type for f in fields(Profile)}
    for k, v in values.items():
        if k == "limits":
            continue
        if k == "modes":
            if not (isinstance(v, list) and all(isinstance(m, str) for m in v)):
                raise ValueError(f"{where}: modes must be a list of strings")
            continue
        if types[k] == "float" and isinstance(v, int) and not isinstance(v, bool):
            values[k] = float(v)
        elif types[k] in ("float", "int") and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{where}: {k} must be a number, got {v!r}")
    return Profile(**values)


def _builtins() -> dict[str, Profile]:
    out = {}
    for path in sorted(BUILTIN_DIR.glob("*.toml")):
        prof = load_profile(path)
        if prof.name != path.stem:
            raise ValueError(f"built-in profile {path} is named {prof.name!r}, not {path.stem!r}")
        out[prof.name] = prof
    return out


PROFILES: dict[str, Profile] = _builtins()


def get_profile(name: str) -> Profile:
    """A built-in profile by name, or a user's profile file by path (``*.toml``).

    An unknown name is an error, never a silent fallback."""
    if name.endswith(".toml") or "/" in name:
        return load_profile(name)
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; available: {', '.join(sorted(PROFILES))}, "
            "or the path of a profile file (*.toml)"
        ) from None
