"""Keeping a drifting chip calibrated while an optimizer uses it.

An offset δ left in a cell moves a solution x/s by up to δ/λ in the coupling's null space;
against the largest entry, headroom·VMAX, that is a relative error δ/(λ·headroom·VMAX). The
device's own CAL_TOLERANCE is a fixed voltage; an optimizer recalibrates when the residual
offset reaches DRIFT_TOLERANCE of its signal instead (λ = 0.01: 5·10⁻⁴ V), so a chip that drifts
costs a calibration every few thousand τ0, not every few steps.
"""
from __future__ import annotations

from typing import Any

DRIFT_TOLERANCE = 0.01


def watch_init(every: int) -> dict:
    return {"since_check": 0, "check_every": every}


def watch(backend: Any, state: dict, every: int, tolerance: float) -> dict:
    """Every ``every`` steps (adapting between 1 and 8× that), run the device's drift check
    and recalibrate when the residual offset exceeds ``tolerance`` (volts); the new state."""
    if not every or not backend.dev.calibration_capable:
        return state
    since = state["since_check"] + 1
    if since < state["check_every"]:
        return {**state, "since_check": since}
    report = backend.calibration(check_only=True)
    check_every = state["check_every"]
    if report.residual < tolerance / 2:
        check_every = min(check_every * 2, 8 * every)
    elif report.residual > tolerance:
        backend.calibration(check_only=False)
        check_every = max(1, check_every // 2)
    return {"since_check": 0, "check_every": check_every}
