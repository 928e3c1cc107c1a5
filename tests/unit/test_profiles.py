"""Hardware profiles are data files: built-ins cite their sources, users bring their own, and
a bad file is a clear error before anything starts."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import host
from device.analog.profiles import PROFILES, SECTIONS, get_profile, load_profile
from support import REPO

CHIP = """name = "my-chip"
description = "a user's chip"
[converters]
dac_bits_coupling = 10
dac_bits_bias = 11
adc_bits = 13
[timing]
tau0_s = 2.5e-7
link_bits_per_s = 1.0e9
[sources]
converters = "our datasheet"
"""


def test_builtins_load_and_say_where_their_numbers_come_from():
    assert set(PROFILES) == {"ideal", "realistic", "tngd-asic", "spu-8"}
    for name, prof in PROFILES.items():
        assert prof.builtin and prof.name == name and prof.description
        sections = {s for s, keys in SECTIONS.items()
                    if any(getattr(prof, k) != getattr(PROFILES["ideal"], k) for k in keys)}
        for section in sections - {"device"}:   # every section that differs from ideal is cited
            keys = SECTIONS[section]
            assert section in prof.sources or any(k in prof.sources for k in keys), (name, section)
    spu = get_profile("spu-8")
    assert spu.cells == 8 and spu.modes == ("capacitive",) and spu.dac_bits_coupling == 4


def test_a_users_profile_file_runs_and_its_timing_is_readable_from_registers(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text(CHIP)
    prof = load_profile(path)
    assert (prof.dac_bits_coupling, prof.dac_bits_bias, prof.adc_bits) == (10, 11, 13)
    assert prof.gain_sigma == 0 and not prof.builtin
    with host.connect(f"spawn://?cells=16&profile={path}") as dev:
        info = dev.info()
        assert info["dac_bits"] == {"coupling": 10, "bias": 11} and info["adc_bits"] == 13
        assert info["emulator"]["profile"] == "file"
        assert info["timing"]["tau0_s"] == pytest.approx(2.5e-7)
        assert info["timing"]["link_bits_per_s"] == pytest.approx(1e9)
        assert dev.read("TAU0") == pytest.approx(2.5e-7)


@pytest.mark.parametrize("text, needle", [
    ("name = 'x'\n[analog]\nvmaxx = 3.0\n", "unknown key 'vmaxx'"),
    ("name = 'x'\n[analogue]\nvmax = 3.0\n", "unknown section"),
    ("name = 'x'\n[converters]\nadc_bits = 40\n", "adc_bits must be an integer in 1..32"),
    ("name = 'x'\n[converters]\nadc_bits = 'twelve'\n", "must be a number"),
    ("name = 'x'\n[analog]\ngain_sigma = -0.1\n", "gain_sigma must be finite and >= 0"),
    ("name = 'x'\n[analog]\ndrift_rate = inf\n", "drift_rate must be finite"),
    ("name = 'x'\n[timing]\ntau0_s = inf\n", "tau0_s must be finite and > 0"),
    ("name = 'x'\n[device]\nmodes = ['dense', 'dense']\n", "modes must be"),
    ("name = 'x'\n[device]\nmodes = ['magnetic']\n", "modes must be"),
    ("[analog]\nvmax = 3.0\n", "needs a name"),
    ("name = 'x'\n[analog\n", "not valid TOML"),
])
def test_a_bad_profile_file_is_a_clear_error(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=needle):
        load_profile(path)


def test_unknown_names_and_missing_files_are_errors_and_serve_refuses_them(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'perfect'.*profile file"):
        get_profile("perfect")
    with pytest.raises(ValueError, match="cannot read profile file"):
        get_profile(str(tmp_path / "missing.toml"))
    p = subprocess.run([sys.executable, "-m", "host.cli", "serve", "--profile",
                        str(tmp_path / "missing.toml")], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert p.returncode == 1 and "cannot read profile file" in p.stderr


def test_a_chip_of_fixed_size_refuses_another_size():
    with pytest.raises(ValueError, match="8 cells, not 16"):
        host.connect("local://?profile=spu-8&cells=16")


def test_stochastic_rounding_is_unbiased_and_keeps_the_coupling_symmetric():
    """A 4-bit coupling DAC: nearest rounding errs by up to half a step, always the same way;
    stochastic rounding errs by up to a step, but averages to the value asked for."""
    C = np.array([[2.0, -0.3], [-0.3, 1.7]])
    with host.connect("local://?profile=spu-8") as dev:
        def programmed(seed):
            if seed is None:
                dev.load_capacitance(np.pad(C, (0, 6)) + np.diag([0] * 2 + [1.0] * 6))
            else:
                with dev.stochastic_rounding(seed):
                    dev.load_capacitance(np.pad(C, (0, 6)) + np.diag([0] * 2 + [1.0] * 6))
            codes = dev.read("COUPLING", 64).reshape(8, 8)
            assert np.array_equal(codes, codes.T)
            return codes[:2, :2]
        nearest = programmed(None)
        step = 2 * dev.read("COUPLING_FS") / 16
        assert abs(nearest[0, 1] - (-0.3)) <= step / 2 + 1e-12
        draws = np.array([programmed(s)[0, 1] for s in range(400)])
        assert set(np.round(draws / step, 6)) <= {np.floor(-0.3 / step), np.ceil(-0.3 / step)}
        # mean of 400 two-valued draws: s.e. ≤ step/2/sqrt(400); 4 s.e.
        assert abs(draws.mean() - (-0.3)) <= 4 * step / 2 / 20


def test_a_studys_variant_of_a_builtin_is_a_valid_profile_file(tmp_path):
    from host.study_runs import profile_file
    for base in PROFILES:
        prof = load_profile(profile_file(base, {"dac_bits_coupling": 10, "gain_sigma": 0.02},
                                         tmp_path))
        ref = get_profile(base)
        assert prof.dac_bits_coupling == 10 and prof.gain_sigma == 0.02
        assert (prof.modes, prof.cells, prof.adc_bits, prof.tau0_s) == \
            (ref.modes, ref.cells, ref.adc_bits, ref.tau0_s)


def test_stochastic_rounding_keeps_lowrank_h_symmetric_so_it_commits():
    rng = np.random.default_rng(0)
    J, H = rng.standard_normal((3, 16)), np.array([[2.0, 0.3, -0.1], [0.3, 1.5, 0.2], [-0.1, 0.2, 1.0]])
    with host.connect("local://?profile=realistic&cells=16") as dev:
        for seed in range(10):
            with dev.stochastic_rounding(seed):
                dev.load_lowrank(J, H, 0.5)
            dev.commit()                                  # COMMIT refuses an asymmetric H
            codes = dev.read("LOWRANK_H", 9).reshape(3, 3)
            assert np.array_equal(codes, codes.T)
