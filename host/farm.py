"""A device farm on Ray: the studies' runs across a cluster, each device owned by one actor.

A node says how many devices it has by the custom resource ``thermo_device``
(``ray start --resources '{"thermo_device": 2}'``; a local cluster gets ``--devices K``). Each
device is owned by one ``DeviceActor``, which asks for one unit of it: it holds the device —
a board whose URL the node lists in ``THERMOHIL_DEVICE_URLS`` (comma-separated; each actor on
the node claims one with a lock file), or, on a node without boards, an emulator slot where
every run gets a fresh ``spawn://`` daemon seeded by its own seed, exactly as a serial run does,
so the numbers are the same. An actor runs one job at a time: a run on it has the device to
itself for its whole duration. Digital runs are plain tasks and need no device.

Faults: a dead actor is restarted and its job re-run, a dead task's worker retried, a run whose
device failed handed to a device again — each a bounded number of times (``ATTEMPTS``). The
re-run resumes from the run's last checkpoint (``host.study_runs.run_job``), so a fault costs
the steps since that checkpoint, and a step is never counted twice. A run that still cannot
finish is reported at the end (``StudyError``) while the others complete. The runs directory is
the results: on several machines it must be a filesystem every node sees (the run directories
also come back to the driver, so a study finishes on a node without one, but a resumed run can
only find its checkpoint where it is).
"""
from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

try:
    import ray
except ImportError as e:        # pragma: no cover - exercised where ray is absent
    raise ImportError("studies on Ray need Ray: pip install 'thermohil[ray]' (or pip install 'ray[tune]')") from e

from host.run_dir import write_atomic
from host.study_runs import Job, StudyError, run_job
from host.training import DeviceFailed

DEVICE_RESOURCE = "thermo_device"
BOARDS_ENV = "THERMOHIL_DEVICE_URLS"
LOCK_DIR_ENV = "THERMOHIL_LOCK_DIR"
RUN_FILES = ("config.json", "metrics.jsonl", "summary.json")
ATTEMPTS = 3            # tries per run (the first included) before it is reported unfinished
PROGRESS_EVERY_S = 60.0


def _board_key(url: str) -> str:
    """One lock per board endpoint, however its URL's options are spelled."""
    u = urlparse(url)
    return "".join(c if c.isalnum() else "_" for c in f"{u.scheme}_{u.netloc}{u.path}")


def claim_board() -> tuple[str | None, Any]:
    """One of this node's boards (``THERMOHIL_DEVICE_URLS``) that no other process on the node
    holds, and the open lock that holds it (the kernel releases it when the process dies);
    (None, None) on a node without boards."""
    urls = [u.strip() for u in os.environ.get(BOARDS_ENV, "").split(",") if u.strip()]
    if not urls:
        return None, None
    lock_dir = Path(os.environ.get(LOCK_DIR_ENV, "/tmp"))
    for url in urls:
        path = lock_dir / f"thermohil-board-{_board_key(url)}.lock"
        try:
            fd = open(path, "a")
        except OSError as e:
            raise RuntimeError(f"node {socket.gethostname()}: cannot open the board lock {path}: {e} "
                               f"(set {LOCK_DIR_ENV} to a directory this user can write)") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fd.close()
            continue
        return url, fd
    raise RuntimeError(f"node {socket.gethostname()}: every board of this node ({', '.join(urls)}) is held "
                       f"by another actor: the node declares more {DEVICE_RESOURCE} than it lists in {BOARDS_ENV}")


def _run_files(job: Job, device: str | None, home: str) -> dict[str, str]:
    """Train the job (one BLAS thread, as the serial study) and return its record's files — none
    when this is the driver's machine (``home``), whose runs directory already holds them."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        run_job(job, device)
    if socket.gethostname() == home:
        return {}
    return {name: (job.out / name).read_text() for name in RUN_FILES if (job.out / name).exists()}


@ray.remote(max_restarts=ATTEMPTS - 1, max_task_retries=ATTEMPTS - 1)
class DeviceActor:
    """Owns one device: a board of its node, or an emulator slot (``spawn://`` per run)."""

    def __init__(self) -> None:
        self.url, self._lock = claim_board()

    def where(self) -> dict:
        """Which node, process and board (None: emulator slot) this actor is."""
        return {"node": socket.gethostname(), "pid": os.getpid(), "board": self.url}

    def run(self, job: Job, home: str) -> dict[str, str]:
        return _run_files(job, self.url, home)


@ray.remote(max_retries=ATTEMPTS - 1)
def _digital(job: Job, home: str) -> dict[str, str]:
    """A run that needs no device, as a plain task (retried if its worker dies)."""
    return _run_files(job, None, home)


def start(address: str | None, devices: int) -> None:
    """Join the cluster at ``address``, or start a local one of this machine with ``devices``
    emulated devices (as many CPUs as the machine, at least one per device)."""
    if ray.is_initialized():
        return
    _check_reachable(address)
    try:
        if address is None:
            ray.init(num_cpus=max(os.cpu_count() or 1, devices), resources={DEVICE_RESOURCE: devices},
                     include_dashboard=False, log_to_driver=True, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        if address and address.startswith("ray://") and "client" in str(e).lower():
            hint = " (a ray:// address needs Ray's client: pip install 'ray[client]')"
        elif address and isinstance(e, ConnectionError):
            hint = " (is it up? `ray status` on its head node; --ray without an address starts a local one)"
        else:
            hint = ""
        raise StudyError(f"could not join {where}: {type(e).__name__}: {e}{hint}") from e


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) where nothing listens is refused at once: Ray itself
    would go on retrying the connection for minutes."""
    if not address or address == "auto":
        return
    u = urlparse(address if "://" in address else f"//{address}")
    try:
        host, port = u.hostname, u.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise StudyError(f"could not join the Ray cluster at {address!r}: nothing answers at {host}:{port} "
                         f"({e.strerror or e}); is its head node up? (`ray status` there; --ray without an "
                         "address starts a local cluster)") from e


def _check_devices(device_jobs: list[Job]) -> None:
    """On a cluster a device arm runs on the cluster's devices, so the study's --device can only
    be the emulator (a board is given to the farm by the node that has it)."""
    given = sorted({j.device for j in device_jobs if urlparse(j.device).scheme != "spawn"})
    if given:
        raise ValueError(f"--device {given[0]} with --ray: on a cluster, device runs use the cluster's "
                         f"devices — emulators, or boards listed in {BOARDS_ENV} on the nodes that have "
                         "them; --device names one device for a study run here")


def _start_actors(n: int, device_jobs: list[Job]) -> list[Any]:
    """The device actors, each checked alive; refused if they mix boards and emulators (one
    arm's seeds would average two kinds of device), or if an arm sets an emulator profile and
    the devices are boards."""
    actors = [DeviceActor.options(resources={DEVICE_RESOURCE: 1}, num_cpus=1).remote() for _ in range(n)]
    try:
        where = ray.get([a.where.remote() for a in actors], timeout=300)
    except Exception as e:      # noqa: BLE001 - every way an actor fails to start is reported the same
        for a in actors:
            ray.kill(a)
        raise StudyError(f"the device actors did not start: {type(e).__name__}: {e}") from e
    boards = [w for w in where if w["board"]]
    refusal = None
    if boards and len(boards) < len(where):
        refusal = (f"this cluster mixes boards ({', '.join(w['node'] + ': ' + w['board'] for w in boards)}) and "
                   f"{len(where) - len(boards)} emulator slot(s): a study's device runs must run on one kind "
                   f"(declare {DEVICE_RESOURCE} only on the boards' nodes, or run the boards' study apart "
                   "with its own --runs)")
    profiled = sorted({j.arm.label for j in device_jobs if j.arm.profile is not None})
    if boards and profiled and refusal is None:
        refusal = (f"arm(s) {', '.join(profiled)} set an emulator profile (a chip's non-idealities), which a "
                   "board cannot take: run them on emulators")
    if refusal:
        for a in actors:
            ray.kill(a)
        raise ValueError(refusal)
    return actors


def run_on_ray(jobs: list[Job], *, address: str | None = None, devices: int = 2,
               say: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> None:
    """Run every job on the cluster: device jobs on the device actors (one at a time each),
    digital jobs as tasks; each run's files are written back to this machine's runs directory.
    Runs that cannot finish are named by a StudyError once every other run is done."""
    device_jobs = [j for j in jobs if j.needs_device]
    digital_jobs = [j for j in jobs if not j.needs_device]
    _check_devices(device_jobs)
    start(address, devices)
    n_devices = int(ray.cluster_resources().get(DEVICE_RESOURCE, 0))
    if device_jobs and n_devices == 0:
        raise ValueError(f"the cluster declares no {DEVICE_RESOURCE} resource, and {len(device_jobs)} runs "
                         f"need a device: start its nodes with --resources '{{\"{DEVICE_RESOURCE}\": K}}'")
    actors = _start_actors(min(n_devices, len(device_jobs)), device_jobs) if device_jobs else []
    say(f"ray: {len(jobs)} runs ({len(device_jobs)} on {len(actors)} devices, {len(digital_jobs)} digital) "
        f"on {int(ray.cluster_resources().get('CPU', 0))} CPUs")
    pending: dict[Any, tuple[Job, Any]] = {}
    home = socket.gethostname()
    for job in digital_jobs:
        pending[_digital.options(num_cpus=1).remote(job, home)] = (job, None)
    queue, idle, tries = list(device_jobs), list(actors), {id(j): 0 for j in device_jobs}
    failed: list[str] = []
    done, last_say = 0, time.monotonic()
    try:
        while pending or queue:
            while queue and idle:
                actor, job = idle.pop(), queue.pop(0)
                tries[id(job)] += 1
                pending[actor.run.remote(job, home)] = (job, actor)
            if not pending:         # device runs left, and no device actor alive to take them
                failed += [f"{j.arm.label} seed {j.seed}: no device left (every device actor died)" for j in queue]
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_EVERY_S)
            if not ready or time.monotonic() - last_say >= PROGRESS_EVERY_S:
                waiting = ", ".join(f"{j.arm.label} s{j.seed}" for j, _ in list(pending.values())[:6])
                say(f"ray: {done}/{len(jobs)} runs done; running or queued for a CPU: {waiting}"
                    f"{' …' if len(pending) > 6 else ''}{f'; {len(queue)} waiting for a device' if queue else ''}")
                last_say = time.monotonic()
            if not ready:
                continue
            job, actor = pending.pop(ready[0])
            try:
                _write_back(job, ray.get(ready[0]))
                done += 1
            except DeviceFailed as e:            # the run is unfinished: another go, from its checkpoint
                if tries[id(job)] < ATTEMPTS:
                    say(f"ray: {job.arm.label} seed {job.seed}: its device failed "
                        f"({_device_error(e)}); handing it to a device again, from its checkpoint "
                        f"(try {tries[id(job)] + 1} of {ATTEMPTS})")
                    queue.insert(0, job)
                else:
                    failed.append(str(_remote(e)))
            except ray.exceptions.RayActorError as e:   # its actor is gone for good (restarts used up)
                failed.append(f"{job.arm.label} seed {job.seed}: its device actor died: {e}")
                actor = None
            except Exception as e:  # noqa: BLE001 - any other failure of one run: reported, the rest go on
                cause = _remote(e)
                failed.append(f"{job.arm.label} seed {job.seed}: {type(cause).__name__}: {cause}")
            if actor is not None and queue:
                idle.append(actor)
            elif actor is not None:      # no device job left for it: its CPU goes to digital runs
                ray.kill(actor)
    finally:
        for actor in actors:
            ray.kill(actor)
    if failed:
        raise StudyError(f"{len(failed)} of {len(jobs)} runs did not finish; the others are kept and the same "
                         "command resumes these: " + "; ".join(failed))


def _remote(e: BaseException) -> BaseException:
    """The exception a remote call raised, not Ray's wrapping of it with its traceback."""
    return getattr(e, "cause", None) or e


def _device_error(e: BaseException) -> str:
    """The device's own error at the bottom of a DeviceFailed's chain (its first line)."""
    inner = _remote(e)
    while inner.__cause__ is not None:
        inner = inner.__cause__
    return f"{type(inner).__name__}: {(str(inner).splitlines() or [''])[0]}"


def _write_back(job: Job, files: dict[str, str]) -> None:
    """A run's record in this machine's runs directory (nothing to do for a run on this machine);
    summary.json, the run's 'done' mark, last, and every file whole or not at all."""
    if not files:
        if not job.done:
            raise StudyError(f"{job.arm.label} seed {job.seed}: the run came back without its summary")
        return
    job.out.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == "summary.json"):
        path, text = job.out / name, files[name]
        if not path.exists() or path.read_text() != text:
            write_atomic(path, text)
