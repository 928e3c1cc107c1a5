"""Studies on a local Ray cluster: the same numbers as the serial run, device runs on the
device-owning actors, a worker killed mid-run costing only the steps since its checkpoint, and
a run whose device dies handed to a device again rather than recorded as a result."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from host import study_runs  # noqa: E402
from host.experiments import STUDIES, run_study  # noqa: E402
from host.study_runs import Job, StudyError, run_jobs  # noqa: E402

SMALL = dict(seeds=2, epochs=4, batch=25, eval_every=40, dataset="spiral", device="spawn://")
ARMS = "AdLaLa,AdLaLa (device)"


@pytest.fixture(scope="module")
def cluster():
    from host import farm
    farm.start(None, devices=2)
    yield farm
    ray.shutdown()


def finals(result: dict) -> dict:
    return {label: (c["test_loss"][-1], c["test_accuracy"][-1], c["train_loss"][-1])
            for label, c in result["curves"].items()}


def test_a_study_on_ray_gives_the_serial_numbers(cluster, tmp_path):
    serial = run_study("spiral-langevin", out=tmp_path / "a", runs_dir=tmp_path / "runs-a", only=ARMS, **SMALL)
    on_ray = run_study("spiral-langevin", out=tmp_path / "b", runs_dir=tmp_path / "runs-b", only=ARMS,
                       ray_address="local", devices=2, **SMALL)
    assert finals(on_ray) == finals(serial)
    assert set(finals(serial)) == {"AdLaLa", "AdLaLa (device)"}
    # the device runs ran on a device (bytes went to a daemon), the digital ones did not
    for run in (tmp_path / "runs-b").iterdir():
        if run.is_dir() and run.name != "profiles":
            summary = json.loads((run / "summary.json").read_text())
            assert (summary["bytes_sent"] > 0) == run.name.startswith("adlala-device")


def test_a_non_ideal_device_arm_on_ray_gives_the_serial_numbers(cluster, tmp_path):
    """On the realistic profile each run calibrates its chip (its trims in its own directory):
    run in order or two at once, every seed gets the same numbers. (With one calibration cache
    for the chip, the serial study's later seeds loaded the first seed's trims, while on the
    cluster two seeds starting together each calibrated.)"""
    arm = "AdLaLa (device) realistic"
    settings = {**SMALL, "epochs": 3}
    serial = run_study("langevin-hardware", out=tmp_path / "a", runs_dir=tmp_path / "runs-a", only=arm, **settings)
    on_ray = run_study("langevin-hardware", out=tmp_path / "b", runs_dir=tmp_path / "runs-b", only=arm,
                       ray_address="local", devices=2, **settings)
    assert finals(on_ray) == finals(serial)
    for run in (tmp_path / "runs-b").glob("adlala-device-*"):
        assert list((run / "calibration").glob("serial-*.json")), run      # it calibrated itself
        assert json.loads((run / "summary.json").read_text())["calibration_time"] > 0


def test_a_killed_actor_costs_only_the_steps_since_its_checkpoint(cluster, tmp_path):
    """The actor running a job is killed (SIGKILL) after the run's second checkpoint; Ray
    restarts it and re-runs the call, which resumes from the checkpoint: every step appears once
    in metrics.jsonl, the run records two sessions, and (a digital run resumes exactly) the final
    numbers are those of an uninterrupted run."""
    arm = next(a for a in STUDIES["spiral-langevin"][1] if a.label == "AdLaLa")
    job = Job(arm, 0, str(tmp_path / "runs"), "spiral", 60, 25, 0, "spawn://")
    actor = cluster.DeviceActor.options(resources={cluster.DEVICE_RESOURCE: 1}).remote()
    pid = ray.get(actor.where.remote())["pid"]
    call = actor.run.remote(job, "a machine other than this one")     # so the files come back
    ckpt = job.out / "checkpoint.npz"
    deadline = time.monotonic() + 120
    while not (ckpt.exists() and study_runs._checkpoint_epochs(ckpt) >= 2):
        assert time.monotonic() < deadline, "no checkpoint within 2 min"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    files = ray.get(call, timeout=300)
    assert ray.get(actor.where.remote())["pid"] != pid           # a new actor process finished it
    rows = [json.loads(x) for x in files["metrics.jsonl"].splitlines()]
    steps = [r["step"] for r in rows if "batch_loss" in r]
    assert steps == list(range(1, 60 * 20 + 1))
    sessions = json.loads(files["config.json"])["resolved"]["sessions"]
    assert len(sessions) == 2 and sessions[1]["from_step"] >= 2 * 20
    whole = Job(arm, 0, str(tmp_path / "whole"), "spiral", 60, 25, 0, "spawn://")
    uninterrupted = study_runs.run_job(whole)
    driver = Job(arm, 0, str(tmp_path / "driver-runs"), "spiral", 60, 25, 0, "spawn://")   # another machine's
    cluster._write_back(driver, files)                                                      # runs directory
    assert driver.done and all((driver.out / name).read_text() == text for name, text in files.items())
    resumed = json.loads(files["summary.json"])
    for key in ("final_test_loss", "final_train_loss", "test_accuracy", "iterations"):
        assert resumed[key] == uninterrupted[key], key
    ray.kill(actor)


def test_boards_of_a_node_are_claimed_once_each(tmp_path, monkeypatch):
    from host import farm
    monkeypatch.setenv(farm.BOARDS_ENV, "tcp://10.0.0.5:5555, tcp://10.0.0.6:5555")
    monkeypatch.setenv(farm.LOCK_DIR_ENV, str(tmp_path))
    first, lock1 = farm.claim_board()
    second, lock2 = farm.claim_board()
    assert {first, second} == {"tcp://10.0.0.5:5555", "tcp://10.0.0.6:5555"}
    with pytest.raises(RuntimeError, match="every board of this node"):
        farm.claim_board()
    lock1.close()
    assert farm.claim_board()[0] == first            # released with its actor
    monkeypatch.delenv(farm.BOARDS_ENV)
    assert farm.claim_board() == (None, None)


def test_a_cluster_without_devices_refuses_device_runs(tmp_path):
    """Checked before anything runs: device runs need the thermo_device resource."""
    from host import farm
    arm = next(a for a in STUDIES["spiral-langevin"][1] if a.label == "AdLaLa (device)")
    job = Job(arm, 0, str(tmp_path / "runs"), "spiral", 1, 25, 0, "spawn://")
    was_up = ray.is_initialized()
    ray.shutdown()                       # (the module's cluster, if any: this one has no device)
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        with pytest.raises(ValueError, match="declares no thermo_device resource"):
            farm.run_on_ray([job])
    finally:
        ray.shutdown()
        if was_up:                       # the module's cluster back, for the tests after this one
            farm.start(None, devices=2)
    assert not job.out.exists()


def test_a_board_url_as_the_study_device_is_refused_on_ray(tmp_path):
    """On a cluster the device runs use the cluster's devices: one --device board URL for every
    actor would have them all fight over one board. Refused before Ray is even asked."""
    from host import farm
    arm = next(a for a in STUDIES["spiral-langevin"][1] if a.label == "AdLaLa (device)")
    job = Job(arm, 0, str(tmp_path / "runs"), "spiral", 1, 25, 0, "tcp://127.0.0.1:5555")
    with pytest.raises(ValueError, match="THERMOHIL_DEVICE_URLS"):
        farm.run_on_ray([job])
    assert not job.out.exists()


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        out.add(pid)
    return out


def _daemons_of(pid: int) -> set[int]:
    """The emulator daemons (``host.cli serve``) that descend from process ``pid``."""
    out = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"host.cli" in cmd and b"serve" in cmd and pid in _ancestors(int(proc.name)):
            out.add(int(proc.name))
    return out


def _kill_the_daemon_after(ckpt: Path, epochs: int) -> threading.Thread:
    """In the background: once the run has checkpointed ``epochs`` epochs, SIGKILL the emulator
    daemon this process started for it (directly, or through a Ray actor of this test's
    cluster) — a new one: daemons other tests' session fixtures keep are left alone."""
    me = os.getpid()
    others = _daemons_of(me)

    def watch() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if ckpt.exists() and study_runs._checkpoint_epochs(ckpt) >= epochs:
                for pid in _daemons_of(me) - others:
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.02)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _one_pass_each(run: Path, steps: int) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "batch_loss" in r] == list(range(1, steps + 1))
    return json.loads((run / "config.json").read_text())["resolved"]["sessions"]


def test_a_run_whose_device_dies_is_unfinished_not_a_result_and_resumes(tmp_path):
    """Serial: the emulator daemon of a device run is SIGKILLed after its second checkpoint. The
    run is not recorded as diverged (no summary.json); the study ends with StudyError naming it;
    the same command resumes it on a fresh device (a second session, with a seed of its own so
    the noise is not replayed) and every step appears once."""
    arm = next(a for a in STUDIES["spiral-langevin"][1] if a.label == "AdLaLa (device)")
    job = Job(arm, 0, str(tmp_path / "runs"), "spiral", 40, 25, 0, "spawn://")
    watcher = _kill_the_daemon_after(job.out / "checkpoint.npz", 2)
    with pytest.raises(StudyError, match=r"(?s)AdLaLa \(device\) seed 0: the device failed: DeviceDied.*resumes"):
        run_jobs([job])
    watcher.join()
    assert not job.done
    run_jobs([job])
    summary = json.loads((job.out / "summary.json").read_text())
    assert "diverged" not in summary and summary["iterations"] == 40 * 20
    sessions = _one_pass_each(job.out, 40 * 20)
    assert len(sessions) == 2 and sessions[1]["from_step"] >= 2 * 20
    assert sessions[0]["device"]["seed"] == 0 and sessions[1]["device"]["seed"] != 0


def test_on_ray_a_run_whose_device_dies_goes_to_a_device_again(cluster, tmp_path):
    """The same fault on the farm: the actor's run fails with DeviceFailed, the driver hands the
    job to a device again, and it resumes from its checkpoint; the study completes."""
    arm = next(a for a in STUDIES["spiral-langevin"][1] if a.label == "AdLaLa (device)")
    job = Job(arm, 0, str(tmp_path / "runs"), "spiral", 40, 25, 0, "spawn://")
    watcher = _kill_the_daemon_after(job.out / "checkpoint.npz", 2)
    cluster.run_on_ray([job], devices=2)
    watcher.join()
    summary = json.loads((job.out / "summary.json").read_text())
    assert "diverged" not in summary and summary["iterations"] == 40 * 20
    sessions = _one_pass_each(job.out, 40 * 20)
    assert len(sessions) == 2 and sessions[1]["from_step"] >= 2 * 20


def test_the_tune_example_runs_and_reports_a_best_trial(tmp_path):
    """examples/ray_tune_tngd.py as the README runs it, small: its own local cluster in a
    subprocess, trials on emulated devices, metrics streamed, the best trial printed."""
    import subprocess
    import sys
    from support import REPO
    p = subprocess.run([sys.executable, os.path.join(REPO, "examples", "ray_tune_tngd.py"), "--samples", "2",
                        "--epochs", "1", "--storage", str(tmp_path / "tune")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    best = [line for line in p.stdout.splitlines() if line.startswith("best: lam = ")]
    assert best and "test accuracy" in best[0], p.stdout[-2000:]
    runs = list((tmp_path / "tune").glob("tngd-lam-t/trial_*/run/metrics.jsonl"))
    assert len(runs) == 2 and all(json.loads(r.read_text().splitlines()[0])["step"] == 0 for r in runs)


def test_an_address_where_nothing_listens_is_refused_at_once_in_one_line(tmp_path):
    """Ray itself would retry the connection for minutes; the study says at once what is wrong."""
    import socket
    import subprocess
    import sys
    from support import REPO
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "host.experiments", "spiral-langevin", "--only", "AdLaLa", "--epochs", "1",
                        "--seeds", "1", "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
                        "--ray", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 1, p.stderr[-2000:]
    assert f"nothing answers at 127.0.0.1:{port}" in p.stderr and "Traceback" not in p.stderr
    assert time.monotonic() - t0 < 60
    assert not list((tmp_path / "runs").glob("*/summary.json"))
