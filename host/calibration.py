"""Calibration data kept per device serial, and the "calibrate unless valid" policy.

A board's trims depend on the chip (its serial), so they are saved under the serial and loaded
back on the next connection: the drift check (CAL_CHECK) then says whether they still hold, and
only if they do not is the full routine run again. Files are JSON, one per serial, in
``$THERMOHIL_CALIBRATION_DIR`` or ``~/.cache/thermohil/calibration``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from host.thermo_device import CalibrationReport

FORMAT = 1


def directory() -> Path:
    env = os.environ.get("THERMOHIL_CALIBRATION_DIR")
    return Path(env) if env else Path.home() / ".cache" / "thermohil" / "calibration"


def path_for(info: dict, where: str | Path | None = None) -> Path | None:
    """One file per chip: its serial, and on the emulator its profile and size too (the same
    serial under another profile or size is another chip). None for an emulator started from a
    profile file: the device cannot say which file, so its trims are not kept (the drift check
    would not notice another chip's DIAG gain trims)."""
    profile = info.get("emulator", {}).get("profile")
    if profile == "file":
        return None
    suffix = "" if profile is None else f"-{profile}-{info['n_cells']}cells"
    return Path(where or directory()) / f"serial-{info['serial']:08x}{suffix}.json"


def save(dev: Any, report: CalibrationReport | None = None, where: str | Path | None = None) -> Path:
    """Write the device's current trims under its serial (atomically: a crash leaves the old file)."""
    info, trims = dev.info(), dev.trims()
    path = path_for(info, where)
    if path is None:
        raise ValueError("trims of an emulator started from a profile file are not saved (the "
                         "device cannot say which file)")
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": FORMAT, "serial": info["serial"], "n_cells": info["n_cells"],
            "profile": info.get("emulator", {}).get("profile"), "saved_unix": time.time(),
            "device_time": info["device_time"],
            "residual": None if report is None else report.residual,
            "offset": trims["offset"].tolist(), "diag_gain": trims["diag_gain"].tolist()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)
    return path


def load(dev: Any, where: str | Path | None = None) -> CalibrationReport | None:
    """Load the saved trims of this device's serial and check them; None when there are none.
    A file for another serial or cell count is refused (ValueError), never loaded."""
    info = dev.info()
    path = path_for(info, where)
    if path is None or not path.exists():
        return None
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"calibration file {path} cannot be read: {e}") from None
    if body.get("format") != FORMAT or body.get("serial") != info["serial"] \
            or body.get("n_cells") != info["n_cells"]:
        raise ValueError(f"calibration file {path} is for serial {body.get('serial')!r} with "
                         f"{body.get('n_cells')!r} cells, not this device (serial "
                         f"{info['serial']:#x}, {info['n_cells']} cells)")
    return dev.load_trims(np.asarray(body["offset"]), np.asarray(body["diag_gain"]))


def ensure_calibrated(dev: Any, say: Callable[[str], None] = print, *,
                      where: str | Path | None = None) -> CalibrationReport | None:
    """Calibrate a device whose CAL_VALID is 0, saying what was done: saved trims are tried
    first (a drift check validates them), the full routine runs if they fail. Returns the last
    report, or None when the device is valid already or has no calibration."""
    if not dev.calibration_capable:
        say("the device has no calibration routine; running uncalibrated")
        return None
    if dev.calibration_valid():  # one register read: the common case costs one round trip
        return None
    try:
        loaded = load(dev, where)
    except ValueError as e:
        say(f"saved calibration not used: {e}")
        loaded = None
    if loaded is not None and loaded.valid:
        say(f"calibration loaded for serial {dev.info()['serial']:#x}: {loaded.describe()}")
        return loaded
    report = dev.calibrate()
    why = "the saved trims failed the drift check" if loaded is not None else "CAL_VALID was 0"
    say(f"calibrated the device ({why}): {report.describe()}")
    try:
        save(dev, report, where)
    except (OSError, ValueError) as e:
        say(f"calibration not saved: {e}")
    return report
