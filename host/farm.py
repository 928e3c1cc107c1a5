"""A device farm on Ray: the studies' runs across a cluster, each device owned by one actor.

A node says how many devices it has by the custom resource ``thermo_device``
(``ray start --resources '{"thermo_device": 2}'``; a local cluster gets ``--devices K``). Each
device is owned by one ``DeviceActor``, which asks for one unit of it: it holds the device —
a board whose URL the node lists in ``THERMOHIL_DEVICE_URLS`` (comma-separated; each actor on
the node claims one with a lock file), or, on a node without boards, an emulator slot where
every run gets a fresh ``spawn://`` daemon seeded by its own seed, exactly as a serial run does,
so the numbers are the same. An actor runs one job at a time: a run on it has the device to
itself for its whole duration. Digital runs are plain tasks and need no device.

Faults: an actor is restarted and its job re-run (``max_restarts``, ``max_task_retries``); a
task is retried (``max_retries``). The re-run resumes from the run's last checkpoint
(``host.experiments.run_job``), so a dead worker costs the steps since that checkpoint, and a
step is never counted twice. The runs directory is the results: on several machines it must be
a filesystem every node sees (the run directories also come back to the driver, so a study
finishes on a node without one, but a resumed run can only find its checkpoint where it is).
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable

try:
    import ray
except ImportError as e:        # pragma: no cover - exercised where ray is absent
    raise ImportError("studies on Ray need Ray: pip install 'thermohil[ray]' (or pip install 'ray[tune]')") from e

from host.experiments import Job, run_job

DEVICE_RESOURCE = "thermo_device"
BOARDS_ENV = "THERMOHIL_DEVICE_URLS"
LOCK_DIR_ENV = "THERMOHIL_LOCK_DIR"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json")


def claim_board() -> tuple[str | None, Any]:
    """One of this node's boards (``THERMOHIL_DEVICE_URLS``) that no other process on the node
    holds, and the open lock that holds it; (None, None) on a node without boards."""
    urls = [u.strip() for u in os.environ.get(BOARDS_ENV, "").split(",") if u.strip()]
    if not urls:
        return None, None
    lock_dir = Path(os.environ.get(LOCK_DIR_ENV, "/tmp"))
    for url in urls:
        name = "".join(c if c.isalnum() else "_" for c in url)
        fd = open(lock_dir / f"thermohil-board-{name}.lock", "w")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fd.close()
            continue
        return url, fd
    raise RuntimeError(f"every board of this node ({', '.join(urls)}) is held by another actor: the node "
                       f"declares more {DEVICE_RESOURCE} than it lists in {BOARDS_ENV}")


def _run_files(job: Job, device: str | None) -> dict[str, str]:
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):          # as the serial study: one BLAS thread per run
        run_job(job, device)
    return {name: (job.out / name).read_text() for name in RUN_FILES if (job.out / name).exists()}


@ray.remote(max_restarts=-1, max_task_retries=-1)
class DeviceActor:
    """Owns one device: a board of its node, or an emulator slot (``spawn://`` per run)."""

    def __init__(self) -> None:
        self.url, self._lock = claim_board()

    def where(self) -> dict:
        return {"node": socket.gethostname(), "pid": os.getpid(), "board": self.url}

    def run(self, job: Job) -> dict[str, str]:
        return _run_files(job, self.url)


@ray.remote(max_retries=3)
def _digital(job: Job) -> dict[str, str]:
    return _run_files(job, None)


def start(address: str | None, devices: int) -> None:
    """Join the cluster at ``address``, or start a local one of this machine with ``devices``
    emulated devices (as many CPUs as the machine, at least one per device)."""
    if ray.is_initialized():
        return
    if address is None:
        ray.init(num_cpus=max(os.cpu_count() or 1, devices), resources={DEVICE_RESOURCE: devices},
                 include_dashboard=False, log_to_driver=True, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=True, configure_logging=False)


def run_on_ray(jobs: list[Job], *, address: str | None = None, devices: int = 2,
               say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> None:
    """Run every job on the cluster: device jobs on the device actors (one at a time each),
    digital jobs as tasks; each run's files are written back to this machine's runs directory."""
    start(address, devices)
    n_devices = int(ray.cluster_resources().get(DEVICE_RESOURCE, 0))
    device_jobs = [j for j in jobs if j.needs_device]
    digital_jobs = [j for j in jobs if not j.needs_device]
    if device_jobs and n_devices == 0:
        raise ValueError(f"the cluster declares no {DEVICE_RESOURCE} resource, and {len(device_jobs)} runs "
                         f"need a device: start its nodes with --resources '{{\"{DEVICE_RESOURCE}\": K}}'")
    actors = [DeviceActor.options(resources={DEVICE_RESOURCE: 1}, num_cpus=1).remote()
              for _ in range(min(n_devices, len(device_jobs)))]
    say(f"ray: {len(jobs)} runs ({len(device_jobs)} on {len(actors)} devices, {len(digital_jobs)} digital) "
        f"on {int(ray.cluster_resources().get('CPU', 0))} CPUs")
    pending: dict[Any, tuple[Job, Any]] = {}
    for job in digital_jobs:
        pending[_digital.options(num_cpus=1).remote(job)] = (job, None)
    queue, idle = list(device_jobs), list(actors)
    try:
        while pending or queue:
            while queue and idle:
                actor, job = idle.pop(), queue.pop(0)
                pending[actor.run.remote(job)] = (job, actor)
            ready, _ = ray.wait(list(pending), num_returns=1)
            job, actor = pending.pop(ready[0])
            _write_back(job, ray.get(ready[0]))
            if actor is not None and queue:
                idle.append(actor)
            elif actor is not None:      # no device job left for it: its CPU goes to digital runs
                ray.kill(actor)
    finally:
        for actor in actors:
            ray.kill(actor)


def _write_back(job: Job, files: dict[str, str]) -> None:
    """A run's record in this machine's runs directory (a no-op where the worker shares it)."""
    job.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = job.out / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
