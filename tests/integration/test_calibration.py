"""Calibration, as the firmware runs it and the host uses it, against real daemon subprocesses.

The realistic profile's cells carry offsets of ~2 mV/τ0 that drift; a zero-coupling read-out
(only the diagonal λ, no bias) shows them as x = δ/λ. Calibration must remove at least 90 % of
that error, set CAL_VALID, count as a run, and its trims must survive a reconnect via the
per-serial file.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import host
from host import calibration
from host.errors import DeviceError, NotOwner, RunAborted
from protocol.status import Status
from support import REPO

CELLS = 128
URL = f"spawn://?profile=realistic&cells={CELLS}&seed=4&serial=77"


@pytest.fixture(scope="module")
def dev():
    with host.connect(URL) as d:
        yield d


def zero_coupling_readout(d: host.ThermoDevice, lam: float = 0.05) -> np.ndarray:
    d.configure(temperature=0.0)
    d.load_lowrank(np.zeros((0, CELLS)), np.zeros((0, 0)), lam)
    d.load_bias(np.zeros(CELLS))
    d.commit()
    d.reset_state()
    d.run(200.0)  # ten time constants of 1/λ to settle, then the average
    d.run(100.0)
    return d.mean()


def test_calibration_removes_at_least_90_percent_of_the_offset_error(dev):
    assert not dev.calibration_valid()
    before = zero_coupling_readout(dev)
    t0 = dev.read("DEVICE_TIME")
    report = dev.calibrate()
    assert dev.read("DEVICE_TIME") - t0 == pytest.approx(report.device_time)
    after = zero_coupling_readout(dev)
    rms = lambda v: float(np.sqrt(np.mean(v**2)))  # noqa: E731
    assert rms(before) > 0.02                       # ~2e-3/0.05 = 0.04 V: there is something to remove
    assert rms(after) <= 0.1 * rms(before), (rms(before), rms(after))
    assert report.valid and dev.calibration_valid() and report.residual < report.tolerance
    assert report.device_time == 384.0 and report.hardware_time_s == pytest.approx(384e-6, rel=1e-6)
    assert report.count >= 1
    # the DIAG gain trims: x = β/(λ g) with β = 0.4, λ = 0.05 → 8 V; gain mismatch is 1 %
    dev.load_bias(np.full(CELLS, 0.4))
    dev.commit()
    dev.reset_state()
    dev.run(300.0)
    dev.run(100.0)
    x = dev.mean()
    assert np.sqrt(np.mean((x / 8.0 - 1) ** 2)) < 0.004  # untrimmed: ~0.01 (plus the ADC step)


def test_calibration_counts_as_a_run_so_old_results_are_refused(dev):
    dev.load_lowrank(np.zeros((0, CELLS)), np.zeros((0, 0)), 1.0)
    dev.load_bias(np.zeros(CELLS))
    dev.commit()
    dev.run(5.0)
    dev.state()                                     # this host's run: fine
    dev.check_calibration()
    with pytest.raises(RunAborted, match="calibration"):
        dev.state()                                 # the core's state is no run's result now


def test_drift_check_notices_bad_trims_and_changes_nothing_else(dev):
    good = dev.trims()
    report = dev.load_trims(good["offset"] + 0.01, good["diag_gain"])  # 10 mV/τ0 off
    assert not report.valid and report.residual > 0.005 and not dev.calibration_valid()
    # the good ones again: what is left is the drift since they were made (a few 1e-4)
    assert dev.load_trims(good["offset"], good["diag_gain"]).residual < 1e-3
    assert dev.calibrate().valid and dev.calibration_valid()


@pytest.mark.parametrize("offset, gain, why", [
    (np.zeros(CELLS - 1), np.ones(CELLS), "offset trims must be"),
    (np.full(CELLS, np.nan), np.ones(CELLS), "offset trims must be"),
    (np.full(CELLS, 1.0), np.ones(CELLS), "out of range"),
    (np.zeros(CELLS), np.full(CELLS, -1.0), "out of range"),
])
def test_bad_trims_are_refused_before_anything_is_written(dev, offset, gain, why):
    before = dev.trims()
    with pytest.raises(ValueError, match=why):
        dev.load_trims(offset, gain)
    after = dev.trims()
    assert np.array_equal(before["offset"], after["offset"])


def test_calibration_needs_ownership_and_a_stopped_core(dev):
    dev.release()
    try:
        with pytest.raises(NotOwner):
            dev.calibrate()
    finally:
        dev.claim()
    dev.run(1e5, wait=False)
    with pytest.raises(DeviceError) as e:
        dev.calibrate()
    assert e.value.status == Status.BUSY
    dev.stop()


def test_trims_are_saved_per_serial_and_loaded_on_the_next_connection(tmp_path):
    with host.connect(URL) as d:
        report = calibration.ensure_calibrated(d, say=lambda m: None, where=tmp_path)
        assert report is not None and report.device_time == 384.0
        saved = list(tmp_path.glob("*.json"))
        assert len(saved) == 1 and "serial-0000004d-realistic-128cells" in saved[0].name
    said: list[str] = []
    with host.connect(URL) as d:                  # a new boot of the same chip: CAL_VALID = 0
        assert not d.calibration_valid()
        report = calibration.ensure_calibrated(d, say=said.append, where=tmp_path)
        assert report.valid and report.device_time == 64.0 and "loaded" in said[0]
    body = json.loads(saved[0].read_text())
    body["serial"] = 78
    saved[0].write_text(json.dumps(body))         # a file that is not this chip's is refused
    with host.connect(URL) as d:
        with pytest.raises(ValueError, match="not this device"):
            calibration.load(d, where=tmp_path)


def test_a_chip_without_calibration_says_so():
    with host.connect("spawn://?profile=spu-8") as d:
        assert not d.calibration_capable
        with pytest.raises(DeviceError, match="no calibration routine"):
            d.calibrate()
        said: list[str] = []
        assert calibration.ensure_calibrated(d, say=said.append) is None
        assert "no calibration routine" in said[0]


def test_cli_calibrate_check_and_load(tmp_path):
    env = {"THERMOHIL_CALIBRATION_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "host.cli", "calibrate", "--device", URL,
                               "--json", *args], capture_output=True, text=True, cwd=REPO,
                              timeout=120, env=env)
    p = cli("--check")                            # a fresh boot: offsets untrimmed
    assert p.returncode == 3 and not json.loads(p.stdout)["valid"]
    p = cli()
    out = json.loads(p.stdout)
    assert p.returncode == 0 and out["valid"] and out["saved"].startswith(str(tmp_path))
    p = cli("--load")
    assert p.returncode == 0 and json.loads(p.stdout)["action"] == "loaded the saved trims"
    p = cli("--check", "--load")
    assert p.returncode == 1 and "exclude" in p.stderr
