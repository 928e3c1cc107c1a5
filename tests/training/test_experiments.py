"""host.experiments: the step-size sweep end to end on tiny settings (real training runs), the
working-range rule, and a diverged run recorded as a result rather than a crash."""
from __future__ import annotations

import json

import pytest

from host import experiments
from host.experiments import Sweep, main, run_sweep, working_range


def test_working_range_is_the_widest_run_of_consecutive_values_above_the_threshold():
    v = [1, 2, 4, 8, 16, 32]
    assert working_range(v, [0.9, 0.5, 0.9, 0.9, 0.9, 0.5]) == (4, 16)
    assert working_range(v, [0.9, 0.9, 0.5, 0.9, 0.5, 0.5]) == (1, 2)
    assert working_range(v, [0.9] * 6) == (1, 32)
    assert working_range(v, [0.86, 0.5, 0.5, 0.5, 0.5, 0.5]) == (1, 1)
    assert working_range(v, [0.5] * 6) is None


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the overflowing model, on purpose
def test_sweep_runs_every_value_and_records_divergence(tmp_path, monkeypatch):
    """Langevin at h = 0.25 trains; at h = 1024 it overflows, which must be a result (chance
    accuracy, counted as diverged), not an exception; a second call reuses every run."""
    monkeypatch.setitem(experiments.SWEEPS, "tiny", ("tiny", [Sweep("Langevin", "langevin", "h", 0.25)]))
    monkeypatch.setattr(experiments, "OCTAVES", (0, 12))
    kw = dict(seeds=2, epochs=2, batch=25, eval_every=0, out=tmp_path / "fig", runs_dir=tmp_path / "runs",
              dataset="spiral")
    result = run_sweep("tiny", **kw)
    ok, blown = result["methods"]["Langevin"]["cells"]
    assert ok["value"] == 0.25 and ok["diverged"] == 0 and all(0.5 <= f <= 1 for f in ok["finals"])
    assert blown["value"] == 1024 and blown["diverged"] == 2 and blown["finals"] == [0.5, 0.5]
    saved = json.loads((tmp_path / "fig" / "tiny.json").read_text())
    assert saved["methods"]["Langevin"]["cells"][1]["diverged"] == 2
    table = (tmp_path / "fig" / "tiny.md").read_text()
    assert "(2 div.)" in table and "| Langevin (h = 0.25) |" in table
    assert "`python -m host.experiments tiny --seeds 2 --epochs 2 --batch-size 25 --eval-every 0`" in table
    assert (tmp_path / "fig" / "tiny.png").stat().st_size > 0
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 4
    stamp = {p: (tmp_path / "runs" / p / "summary.json").stat().st_mtime_ns for p in runs}
    assert run_sweep("tiny", **kw)["methods"] == result["methods"]       # cached: nothing re-run
    assert stamp == {p: (tmp_path / "runs" / p / "summary.json").stat().st_mtime_ns for p in runs}


def test_unknown_study_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        main(["no-such-study"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--devices", "2"], ["--devices", "2", "--ray", "auto"], ["--ray", "--devices", "0"]])
def test_devices_without_a_local_cluster_is_refused(args, tmp_path, capsys):
    """--devices sizes the local cluster of a bare --ray: given anywhere else it would be ignored."""
    with pytest.raises(SystemExit) as e:
        main(["spiral-langevin", *args, "--out", str(tmp_path / "fig"), "--runs", str(tmp_path / "runs")])
    assert e.value.code == 2 and "--devices" in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()


def test_unknown_only_label_is_refused_and_nothing_runs(tmp_path, capsys):
    code = main(["spiral-step-sweep", "--only", "SGD,nope", "--out", str(tmp_path / "fig"),
                 "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 1 and "unknown method 'nope'" in err and "LaLa γ=1/0.1" in err
    assert not (tmp_path / "fig").exists() and not (tmp_path / "runs").exists()
