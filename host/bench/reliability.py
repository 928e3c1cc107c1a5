"""Reliability: what a host sees, and how soon, when the device or another host misbehaves.

``python -m host.bench.reliability [--quick] [--out docs/reliability.md]``

Every scenario runs against real ``thermohil serve`` daemon subprocesses (tcp:// or ipc://, or
the private daemon of a spawn:// device), with hosts in this process or in other processes, and
kills, freezes (SIGSTOP) or floods them. Each one gives one or more table rows: the fault, the
exception the host gets (type and the gist of its message), the documented deadline (a formula
and its value for the settings used) and the measured time. Progress goes to stderr; the table
is written to ``--out`` (default docs/reliability.md) and printed.

Every wait is bounded, and every process started here is killed in a ``finally``. ``--quick``
shortens timeouts, leases, floods and iteration counts for a smoke run (well under a minute);
the table then states the settings it used.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zmq

from host.bench.timing import fmt_time
from protocol import limits
from protocol.codec import Transaction, decode_reply, encode_request
from protocol.ops import Op
from protocol.regmap import REGMAP
from protocol.status import RunEnd

#: Slack allowed over a documented deadline before a row says it was missed (scheduling, the
#: socket rebuild between attempts, Python start-up of a thread).
SLACK_S = 0.25
#: Longest a daemon may take to print its ready line (the first start compiles Numba kernels).
READY_TIMEOUT_S = 120.0


# ================================================================================ results
@dataclass
class Row:
    fault: str
    host_sees: str
    deadline: str
    measured: str
    missed: bool = False  # the measurement broke the documented deadline or expectation


@dataclass(frozen=True)
class Settings:
    quick: bool
    kill_links: tuple[tuple[float | None, int | None], ...]  # (timeout, retries); None: defaults
    freeze_timeout: float
    freeze_retries: int
    freeze_lease_ms: int
    train_timeout: float
    train_retries: int
    flood_workers: int
    flood_iterations: int
    flood_cap_s: float  # longest one flood phase may last


FULL = Settings(quick=False, kill_links=((2.0, 2), (None, None)), freeze_timeout=3.0,
                freeze_retries=1, freeze_lease_ms=30_000, train_timeout=3.0, train_retries=1,
                flood_workers=2, flood_iterations=200, flood_cap_s=60.0)
QUICK = Settings(quick=True, kill_links=((0.5, 1),), freeze_timeout=1.0, freeze_retries=1,
                 freeze_lease_ms=3_000, train_timeout=1.0, train_retries=1, flood_workers=1,
                 flood_iterations=20, flood_cap_s=8.0)


def say(text: str) -> None:
    print(f"reliability: {text}", file=sys.stderr, flush=True)


def gist(text: str, limit: int = 150) -> str:
    """One line of a message: whitespace collapsed, temp paths dropped, cut at ``limit``."""
    text = re.sub(r"/tmp/\S+", "…", " ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sees(exc: BaseException | None, limit: int = 150) -> str:
    """The exception's type and the gist of its first line (a DeviceDied message goes on with
    the daemon's log tail)."""
    if exc is None:
        return "no exception"
    lines = str(exc).splitlines() or [""]
    more = " […]" if len(lines) > 1 else ""
    return f"`{type(exc).__name__}`: {gist(lines[0], limit)}{more}"


def verdict(measured: float, deadline: float) -> tuple[str, bool]:
    if measured <= deadline + SLACK_S:
        return "within", False
    return f"**over by {fmt_time(measured - deadline)}**", True


# ================================================================================ processes
@dataclass
class Daemon:
    """A ``thermohil serve`` subprocess; a context manager that always kills it."""
    proc: subprocess.Popen
    endpoint: str
    log_path: str

    @classmethod
    def start(cls, cells: int, logdir: str, endpoint: str = "tcp://127.0.0.1:0",
              extra: tuple[str, ...] = ()) -> "Daemon":
        events = "tcp://127.0.0.1:0" if endpoint.startswith("tcp") else endpoint + ".events"
        log = tempfile.NamedTemporaryFile(dir=logdir, prefix="daemon-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "host.cli", "serve", "--endpoint", endpoint, "--events", events,
               "--cells", str(cells), "--parent-pid", str(os.getpid()), *extra]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=0.2):
                    line = proc.stdout.readline()
                    if line.startswith("thermohil: serving "):
                        return cls(proc, line.split()[2], log.name)
                    if not line:
                        break
        finally:
            sel.close()
        kill(proc)
        raise RuntimeError(f"daemon did not start: {Path(log.name).read_text()[-2000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status_kb(self, key: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return -1

    def __enter__(self) -> "Daemon":
        return self

    def __exit__(self, *exc: object) -> None:
        kill(self.proc)


def kill(proc: subprocess.Popen | Any) -> None:
    """SIGKILL a process this tool started (a frozen one too) and reap it."""
    pid = getattr(proc, "pid", None)
    if pid is None:
        return
    alive = proc.poll() is None if hasattr(proc, "poll") else proc.is_alive()
    if alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        if hasattr(proc, "poll"):
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()
        else:
            proc.join(timeout=10)
    except subprocess.TimeoutExpired:
        say(f"process {pid} did not die within 10 s of SIGKILL")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc/*/stat)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def serve_children(pid: int) -> list[int]:
    """The `thermohil serve` processes started by ``pid`` (a trainer's spawn:// daemon)."""
    out = []
    for kid in children_of(pid):
        try:
            if b"serve" in Path(f"/proc/{kid}/cmdline").read_bytes():
                out.append(kid)
        except OSError:
            pass
    return out


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def last_line(path: str) -> str:
    """The CLI's error line if there is one (a DeviceDied message goes on with the daemon's log
    tail over several lines, then the trainer's resume hint), else the last line."""
    lines = [x for x in Path(path).read_text(errors="replace").splitlines() if x.strip()]
    errors = [i for i, x in enumerate(lines) if x.startswith("thermohil: error:")]
    if errors and errors[-1] < len(lines) - 1:  # the hint follows the log tail's last line
        return f"{gist(lines[errors[-1]], 140)} […] {gist(lines[-1].split('; ', 1)[-1], 140)}"
    if not lines:
        return "(empty)"
    line = gist(lines[-1], 10_000)  # a long one line: its start and its end (the resume hint)
    return line if len(line) <= 300 else f"{line[:160].rstrip()} […] {line[-120:].lstrip()}"


# ================================================================================ host helpers
def spd(n: int, cond: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (q * np.geomspace(1.0, cond, n)) @ q.T


def wall_per_tau(dev: Any, target: float = 0.3) -> float:
    """Wall seconds one τ0 of run takes on the committed configuration (doubling short runs)."""
    t = 1.0
    for _ in range(30):
        t0 = time.monotonic()
        dev.run(t)
        wall = time.monotonic() - t0
        if wall >= target:
            break
        t *= 2
    return wall / t


def long_run(dev: Any, n: int, wall_s: float, seed: int = 1) -> float:
    """Program an n-cell dense problem and return a run time t that lasts about ``wall_s``."""
    A = spd(n, 10.0, seed)
    dev.load_coupling(A)
    dev.load_bias(np.full(n, 0.5))
    dev.commit()
    return wall_s / wall_per_tau(dev)


def record_sends(driver: Any) -> list[float]:
    """Times (monotonic) at which the driver sent each packet. During a run the host re-sends
    as soon as a WAIT slice is answered, so the last send before a fault is the daemon's last
    answer (or the call's start): the documented deadline of a dead device counts from it."""
    sends: list[float] = []
    exchange = driver._exchange

    def timed_exchange(*args: Any, **kwargs: Any) -> Any:
        sends.append(time.monotonic())
        return exchange(*args, **kwargs)

    driver._exchange = timed_exchange
    return sends


def fault_delay(dev: Any) -> float:
    """When to kill or freeze a run: half-way through its second WAIT slice (≥ 1 s), so the
    daemon has answered the run's packet at least once when it is hit."""
    return max(1.0, 1.5 * dev._wait_slice_ms / 1000)


@dataclass
class Call:
    """A host call on a worker thread, so the main thread can kill or freeze the device."""
    fn: Callable[[], Any]
    value: Any = None
    error: BaseException | None = None
    ended: float | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self.fn()
        except BaseException as e:  # noqa: BLE001 — reported, not handled
            self.error = e
        self.ended = time.monotonic()

    def join(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def timed(fn: Callable[[], Any]) -> tuple[float, Any, BaseException | None]:
    """(seconds, value, None) or (seconds, None, the exception)."""
    t0 = time.monotonic()
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001
        return time.monotonic() - t0, None, e
    return time.monotonic() - t0, value, None


# ================================================================================ 1. SIGKILL, tcp
def kill_tcp_daemon(s: Settings, logdir: str) -> list[Row]:
    import host
    rows = []
    for timeout, retries in s.kill_links:
        with Daemon.start(64, logdir) as d:
            dev = host.connect(d.endpoint, timeout=timeout, retries=retries)
            to, re_ = dev.driver.timeout, dev.driver.retries
            deadline = (re_ + 1) * to
            say(f"1. SIGKILL during run, tcp, timeout {to:g} s, retries {re_} ({d.endpoint})")
            t = long_run(dev, 64, wall_s=max(30.0, 3 * deadline))
            delay = fault_delay(dev)
            sends = record_sends(dev.driver)
            call = Call(lambda: dev.run(t))
            time.sleep(delay)
            still = call.thread.is_alive()
            killed = time.monotonic()
            os.kill(d.pid, signal.SIGKILL)
            done = call.join(deadline + 15)
            label = "defaults of `host.connect`" if timeout is None else "host settings"
            fault = (f"daemon SIGKILLed {delay:g} s into a long `dev.run` (tcp, 64 dense cells; "
                     f"{label}: timeout {to:g} s, retries {re_}; WAIT slice "
                     f"{dev._wait_slice_ms / 1000:g} s)")
            documented = (f"(retries+1) × timeout = {re_ + 1} × {to:g} s = {deadline:g} s after the "
                          "last answer")
            if not done or call.ended is None:
                rows.append(Row(fault, "no exception: the call hung", documented,
                                f"still blocked {deadline + 15:g} s after the kill", missed=True))
                continue
            after_kill = call.ended - killed
            after_last = call.ended - max(x for x in sends if x <= killed)
            word, missed = verdict(after_last, deadline)
            tc, _, _ = timed(dev.close)
            rows.append(Row(
                fault + ("" if still else " — **the run had already ended before the kill**"),
                sees(call.error), documented,
                f"{fmt_time(after_kill)} after the kill, {fmt_time(after_last)} after the last answer "
                f"({word}); `close()` {fmt_time(tc)}",
                missed or not isinstance(call.error, host.DeviceTimeout) or not still))
            say(f"   -> {type(call.error).__name__} {after_kill:.2f} s after the kill, "
                f"{after_last:.2f} s after the last answer (deadline {deadline:g} s)")
    return rows


# ================================================================================ 2. spawn:// child
def kill_spawn_child(s: Settings, logdir: str) -> list[Row]:
    import host
    from host.drivers.zmq_driver import LIVENESS_POLL_S
    say("2. SIGKILL of the spawn:// child during dev.run")
    dev = host.connect("spawn://?cells=64")
    proc = dev.driver.proc
    try:
        t = long_run(dev, 64, wall_s=30.0)
        call = Call(lambda: dev.run(t))
        time.sleep(1.0)
        still = call.thread.is_alive()
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        done = call.join(dev.driver.timeout * (dev.driver.retries + 1) + 10)
        tc, _, _ = timed(dev.close)
    finally:
        kill(proc)
        Path(dev.driver.log.name).unlink(missing_ok=True)  # kept by the driver: it was killed
    fault = "spawn:// child SIGKILLed 1 s into a long `dev.run` (64 dense cells)"
    dl = f"at once: one liveness poll, {LIVENESS_POLL_S:g} s"
    if not done or call.ended is None:
        return [Row(fault, "no exception: the call hung", dl, "blocked", missed=True)]
    took = call.ended - killed
    word, missed = verdict(took, LIVENESS_POLL_S)
    say(f"   -> {type(call.error).__name__} {took:.3f} s after the kill")
    return [Row(fault, sees(call.error, 110), dl, f"{fmt_time(took)} ({word}); `close()` {fmt_time(tc)}",
                missed or not isinstance(call.error, host.DeviceDied) or not still)]


# ================================================================================ 3. train, spawn
def train_cmd(out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "host.cli", "train", "--algo", "tngd", "--dataset", "spiral",
            "--epochs", "50", "--out", out, *extra]


def wait_metrics(out: str, proc: subprocess.Popen, lines: int = 25, timeout: float = 120.0) -> bool:
    """Until the trainer has logged ``lines`` metrics lines (25: past the first spiral epoch of
    20 steps, so a checkpoint exists) — False if it exited or did not get there in time."""
    metrics = Path(out) / "metrics.jsonl"

    def ready() -> bool:
        return proc.poll() is not None or (metrics.exists() and
                                           len(metrics.read_text().splitlines()) >= lines)
    return wait_until(ready, timeout) and proc.poll() is None


def kill_train_child(s: Settings, logdir: str) -> list[Row]:
    say("3. SIGKILL of the spawn:// child during `thermohil train`")
    out = tempfile.mkdtemp(dir=logdir, prefix="train-spawn-")
    err = os.path.join(logdir, "train-spawn.stderr")
    with open(err, "w") as f:
        trainer = subprocess.Popen(train_cmd(out), stdout=subprocess.DEVNULL, stderr=f)
    try:
        if not wait_metrics(out, trainer):
            return [Row("spawn:// child SIGKILLed during `thermohil train`",
                        f"training did not start (exit {trainer.poll()}): {gist(last_line(err))}",
                        "—", "—", missed=True)]
        child = serve_children(trainer.pid)[0]
        killed = time.monotonic()
        os.kill(child, signal.SIGKILL)
        try:
            rc = trainer.wait(timeout=60)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - killed
    finally:
        for pid in serve_children(trainer.pid):  # a trainer that hung still has its daemon
            os.kill(pid, signal.SIGKILL)
        kill(trainer)
    line = last_line(err)
    for log in set(re.findall(r"/\S*thermohil-daemon-[^\s:]+\.log", Path(err).read_text())):
        Path(log).unlink(missing_ok=True)  # the killed child's log, named in the error
    say(f"   -> trainer exited {rc} {took:.2f} s after the kill: {gist(line, 100)}")
    return [Row("spawn:// child SIGKILLed during `thermohil train --algo tngd --dataset spiral "
                "--epochs 50` (after 25 metrics lines: one epoch done)",
                f"exit code {rc}; stderr ends: {line}",
                "DeviceDied at once (0.1 s poll), then the trainer stops",
                f"trainer gone {fmt_time(took)} after the kill (DeviceDied is due within 0.1 s; the "
                f"rest is closing and exiting)", rc != 1)]


# ================================================================================ 4. SIGSTOP, tcp
def freeze_tcp_daemon(s: Settings, logdir: str) -> list[Row]:
    import host
    to, re_, lease_ms = s.freeze_timeout, s.freeze_retries, s.freeze_lease_ms
    deadline = (re_ + 1) * to
    say(f"4. SIGSTOP during dev.run, tcp, timeout {to:g} s, retries {re_}, lease {lease_ms} ms")
    rows: list[Row] = []
    with Daemon.start(64, logdir) as d:
        dev = host.connect(d.endpoint, timeout=to, retries=re_, lease_ms=lease_ms)
        t = long_run(dev, 64, wall_s=120.0)
        delay = fault_delay(dev)
        sends = record_sends(dev.driver)
        call = Call(lambda: dev.run(t))
        time.sleep(delay)
        stopped = time.monotonic()
        os.kill(d.pid, signal.SIGSTOP)
        try:
            done = call.join(deadline + 15)
            ended = call.ended if done and call.ended is not None else float("nan")
            last_send = max(x for x in sends if x <= stopped)
            took, after_last = ended - stopped, ended - last_send
            sent = dev.stats.packets
            tc, _, close_err = timed(dev.close) if done else (float("nan"), None, None)
            sent = dev.stats.packets - sent
        finally:
            os.kill(d.pid, signal.SIGCONT)
        resumed = time.monotonic()
        word, missed = verdict(after_last, deadline)
        say(f"   -> {type(call.error).__name__} {took:.2f} s after SIGSTOP; close {tc:.3f} s")
        rows.append(Row(
            f"daemon frozen (SIGSTOP) {delay:g} s into a long `dev.run` (tcp; timeout {to:g} s, "
            f"retries {re_}; WAIT slice {dev._wait_slice_ms / 1000:g} s)", sees(call.error) if done else "no exception: the call hung",
            f"(retries+1) × timeout = {re_ + 1} × {to:g} s = {deadline:g} s after the last answer",
            f"{fmt_time(took)} after SIGSTOP, {fmt_time(after_last)} after the last answer ({word})",
            missed or not done or not isinstance(call.error, host.DeviceTimeout)))
        cword, cmissed = verdict(tc, to)
        rows.append(Row(
            "… then `dev.close()` on the frozen daemon",
            "returns" + (f" (swallowed {type(close_err).__name__})" if close_err else "") +
            f"; packets sent by `close()`: {sent} (the release is skipped: the last request "
            "went unanswered)",
            f"never longer than one timeout = {to:g} s (here: no release sent, ≈ 0)",
            f"{fmt_time(tc)} ({cword})", cmissed or sent != 0))
        # SIGCONT, then a new host waits for the frozen host's lease to run out
        waits: list[float] = []
        lease_end = last_send + lease_ms / 1000  # its last packet renewed the lease
        t0 = time.monotonic()
        try:
            b = host.connect(d.endpoint, wait_for_lease=40, on_wait=waits.append)
            got, err = time.monotonic() - t0, None
            end = _run_end(b.read("STATUS"))
            b.close()
        except Exception as e:  # noqa: BLE001
            got, err, end = time.monotonic() - t0, e, None
        expect = max(0.0, lease_end - t0)
        say(f"   -> new host got the device {got:.2f} s after SIGCONT (+{t0 - resumed:.2f} s); "
            f"expected ≈ {expect:.2f} s")
        rows.append(Row(
            "… then SIGCONT, and a new host `host.connect(url, wait_for_lease=40)`",
            (f"claims after waiting (told {', '.join(f'{w:.1f} s' for w in waits) or 'nothing'}); "
             f"the frozen host's run ended `{end}`") if err is None else sees(err),
            f"the frozen host's lease: LEASE_MS = {lease_ms / 1000:g} s after its last packet "
            f"(≈ {expect:.1f} s left at SIGCONT)",
            f"{fmt_time(got)} after SIGCONT", err is not None or got > expect + 0.5))
    return rows


# ================================================================================ 5. SIGSTOP, train
def train_size() -> tuple[int, int]:
    """Cells (one per parameter) and MAX_RANK the spiral TNGD run needs."""
    from host.problem import MODEL_DEFAULTS, build_problem
    return build_problem("spiral").objective.model.n_params, MODEL_DEFAULTS["spiral"]["batch"]


def freeze_train_daemon(s: Settings, logdir: str) -> list[Row]:
    to, re_ = s.train_timeout, s.train_retries
    cells, rank = train_size()
    say(f"5. SIGSTOP of a tcp daemon during `thermohil train` (timeout {to:g} s, retries {re_})")
    out = tempfile.mkdtemp(dir=logdir, prefix="train-tcp-")
    err = os.path.join(logdir, "train-tcp.stderr")
    with Daemon.start(cells, logdir, extra=("--max-rank", str(rank))) as d:
        with open(err, "w") as f:
            trainer = subprocess.Popen(train_cmd(out, "--device", d.endpoint, "--timeout", f"{to:g}",
                                                 "--retries", str(re_)),
                                       stdout=subprocess.DEVNULL, stderr=f)
        try:
            if not wait_metrics(out, trainer):
                return [Row("tcp daemon frozen during `thermohil train`", "training did not start: "
                            + gist(last_line(err)), "—", "—", missed=True)]
            stopped = time.monotonic()
            os.kill(d.pid, signal.SIGSTOP)
            try:
                rc = trainer.wait(timeout=(re_ + 1) * to + to + 60)
            except subprocess.TimeoutExpired:
                rc = None
            took = time.monotonic() - stopped
        finally:
            os.kill(d.pid, signal.SIGCONT)
            kill(trainer)
    line = last_line(err)
    deadline = (re_ + 1) * to + to
    word, missed = verdict(took, deadline)
    say(f"   -> trainer exited {rc} {took:.2f} s after SIGSTOP: {gist(line, 100)}")
    return [Row(f"tcp daemon frozen (SIGSTOP) during `thermohil train --algo tngd --dataset spiral "
                f"--timeout {to:g} --retries {re_}`",
                f"exit code {rc}; stderr ends: {line}",
                f"(retries+1) × timeout + close ≤ {re_ + 1} × {to:g} s + {to:g} s = {deadline:g} s",
                f"trainer gone {fmt_time(took)} after SIGSTOP ({word}; includes interpreter exit)",
                missed or rc != 1)]


# ================================================================================ 6. lease lost
def _lease_host(endpoint: str, A: np.ndarray, b: np.ndarray, t: float, lease_ms: int, conn: Any) -> None:
    """Host A (another process): a long solve_step on a short lease; reports what it got."""
    import host
    dev = host.connect(endpoint, lease_ms=lease_ms, timeout=2)
    try:
        dev.configure(temperature=1e-4)
        conn.send(("started", time.monotonic()))
        try:
            x = dev.solve_step(coupling=A, bias=b, t=t)
            conn.send(("result", np.asarray(x).tolist(), time.monotonic()))
        except Exception as e:  # noqa: BLE001 — what the host sees is the measurement
            conn.send(("error", type(e).__name__, str(e), getattr(e, "end", None), time.monotonic()))
    finally:
        dev.close()


def lease_lost(s: Settings, logdir: str) -> list[Row]:
    import host
    n, lease_ms = 16, 500
    say(f"6. lease lost mid-packet (host A lease {lease_ms} ms, frozen 0.3 s into its solve_step)")
    A = spd(n, 10.0, 3)
    rng = np.random.default_rng(4)
    bA, bB = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    xA, xB_true = np.linalg.solve(A, bA), np.linalg.solve(A, bB)
    ctx = multiprocessing.get_context("spawn")
    with Daemon.start(64, logdir) as d:
        with host.connect(d.endpoint) as cal:  # calibrate: A's run should last ~60 s
            cal.load_coupling(A)
            cal.load_bias(bA)
            cal.commit()
            t_long = 60.0 / wall_per_tau(cal)
        mine, theirs = ctx.Pipe()
        a = ctx.Process(target=_lease_host, args=(d.endpoint, A, bA, t_long, lease_ms, theirs))
        a.start()
        try:
            if not mine.poll(60):
                raise RuntimeError("host A did not start")
            mine.recv()
            time.sleep(0.3)
            os.kill(a.pid, signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                t0 = time.monotonic()
                b = host.connect(d.endpoint, wait_for_lease=10)
                claim_s = time.monotonic() - t0
                a_end = _run_end(b.read("STATUS"))
                b.stop()
                b.configure(temperature=1e-4)
                xB = b.solve_step(coupling=A, bias=bB, t=400.0, burn_in=20.0)
            finally:
                resumed = time.monotonic()  # taken before the signal: A may run at once
                os.kill(a.pid, signal.SIGCONT)
            frozen_s = resumed - frozen
            got = mine.recv() if mine.poll(30) else ("nothing", "no message from host A within 30 s")
            after = b.mean()
            b.close()
        finally:
            kill(a)
    rel = float(np.linalg.norm(xB - xB_true) / np.linalg.norm(xB_true))
    rel_a = float(np.linalg.norm(xB - xA) / np.linalg.norm(xB_true))
    unchanged = bool(np.array_equal(after, xB))
    if got[0] == "error":
        a_sees = f"`{got[1]}`" + (f" (end `{got[3]}`)" if got[3] else "") + f": {gist(got[2], 220)}"
        a_bad = got[1] not in ("LeaseLost", "RunAborted")
        a_when = f"{fmt_time(got[4] - resumed)} after SIGCONT"
    else:
        a_sees, a_bad, a_when = f"**a {got[0]}**: {gist(got[1], 140)}", True, "—"
    say(f"   -> A: {got[0]} {got[1]}; B claimed in {claim_s:.2f} s, rel. error {rel:.3g}")
    return [
        Row(f"host A (lease {lease_ms} ms, another process) frozen 0.3 s into a long `solve_step`; "
            "host B takes the device, runs another bias; A resumed",
            f"A: {a_sees}", "an exception (LeaseLost / RunAborted), never a result",
            f"A raised {a_when} (frozen {frozen_s:.1f} s); A's run had ended `{a_end}` "
            f"(STATUS.RUN_END as B found it)", a_bad),
        Row("… host B in the same scenario (`host.connect(url, wait_for_lease=10)`, `stop()`, "
            "`solve_step(bias=bB, t=400, burn_in=20)`)",
            f"B's answer vs A⁻¹bB: relative error {rel:.2e} (vs A's answer A⁻¹bA: {rel_a:.2f}); "
            f"B's mean {'unchanged' if unchanged else '**changed**'} after A resumed",
            f"B claims within A's lease ({lease_ms} ms)",
            f"B claimed {fmt_time(claim_s)} after A froze", not unchanged or rel > 0.05 or
            claim_s > lease_ms / 1000 + SLACK_S),
    ]


# ================================================================================ 7. floods
@dataclass(frozen=True)
class Flood:
    key: str
    what: str
    window: int  # requests in flight per flooding process
    make: Callable[[dict], tuple[list[Transaction], int]]  # (transactions, header token)


FOREIGN_TOKEN = 0x0BADBEEF


def _run_end(status: int) -> str:
    code = REGMAP.STATUS.field("RUN_END").get(status)
    return RunEnd(code).name.lower() if code in set(RunEnd) else f"code {code}"


def _flood_read(lim: dict) -> tuple[list[Transaction], int]:
    return [Transaction(Op.READ, REGMAP.windows["COUPLING"].base, (lim["open_reply"],))], 0


def _flood_read_ni(lim: dict) -> tuple[list[Transaction], int]:
    return [Transaction(Op.READ_NI, REGMAP.registers["STATUS"].address, (1 << 26,))], 0


def _flood_write_ni(lim: dict, token: int = FOREIGN_TOKEN) -> tuple[list[Transaction], int]:
    n = 16 * 1024 * 1024
    return [Transaction(Op.WRITE_NI, REGMAP.registers["SCRATCH"].address, (n,),
                        np.zeros(n, np.uint32))], token


def _flood_ni_packet(lim: dict) -> tuple[list[Transaction], int]:
    n = min(lim["register_ni"], 1024)
    k = min(limits.MAX_TRANSACTIONS, lim["open_reply"] // n)  # as many as the open limit allows
    return [Transaction(Op.READ_NI, REGMAP.registers["STATUS"].address, (n,))] * k, 0


def _flood_wait(lim: dict) -> tuple[list[Transaction], int]:
    return [Transaction(Op.WAIT, REGMAP.registers["SCRATCH"].address,
                        (0xFFFFFFFF, 0x5EED, limits.MAX_WAIT_MS))], 0


FLOODS = (
    Flood("a", "READ of MAX_OPEN_REPLY_WORDS words of COUPLING (1 MiB replies)", 2, _flood_read),
    Flood("b", "READ_NI of 2^26 words on STATUS", 8, _flood_read_ni),
    Flood("c", "WRITE_NI of 16 Mi words (64 MiB) to SCRATCH with a foreign token", 1, _flood_write_ni),
    Flood("d", "WAITs on SCRATCH that can never complete (timeout MAX_WAIT_MS)", 64, _flood_wait),
    Flood("e", "packets of READ_NI of 1024 words on STATUS, as many as MAX_OPEN_REPLY_WORDS "
               "allows (the costliest open read)", 8, _flood_ni_packet),
)


def _flooder(endpoint: str, key: str, lim: dict, cap_s: float, stop: Any, conn: Any) -> None:
    """A hostile non-owner (another process): keeps ``window`` requests in flight until told."""
    flood = next(f for f in FLOODS if f.key == key)
    tx, token = flood.make(lim)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    cid, seq, out, counts = os.urandom(16), 0, 0, Counter()
    told = False
    end = time.monotonic() + cap_s
    try:
        while time.monotonic() < end and not stop.is_set():
            while out < flood.window:
                seq += 1
                sock.send_multipart(encode_request(seq, cid, token, tx), copy=False)
                out += 1
            if not sock.poll(5000):
                counts["no reply in 5 s"] += 1
                break
            reply = decode_reply(sock.recv_multipart(copy=False), tx)
            counts[reply.status.name] += 1
            out -= 1
            if not told:
                conn.send("flooding")
                told = True
    finally:
        conn.send(dict(counts))
        sock.close(0)


def one_packet(endpoint: str, tx: list[Transaction], token: int) -> tuple[float, str, str]:
    """Seconds to the reply of one hand-made packet, its status and message."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        frames = encode_request(1, os.urandom(16), token, tx)
        t0 = time.monotonic()
        sock.send_multipart(frames, copy=False)
        if not sock.poll(30_000):
            return float("nan"), "no reply in 30 s", ""
        reply = decode_reply(sock.recv_multipart(copy=False), tx)
        return time.monotonic() - t0, reply.status.name, reply.message
    finally:
        sock.close(0)


def owner_latency(dev: Any, A: np.ndarray, b: np.ndarray, iterations: int, cap_s: float) -> dict:
    lat, errors = [], Counter()
    end = time.monotonic() + cap_s
    while len(lat) + sum(errors.values()) < iterations and time.monotonic() < end:
        t0 = time.monotonic()
        try:
            dev.solve_step(coupling=A, bias=b, t=5.0)
            lat.append(time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 — counted and reported
            errors[type(e).__name__] += 1
    p50, p99 = np.percentile(lat, [50, 99]) if lat else (float("nan"), float("nan"))
    return {"p50": p50, "p99": p99, "n": len(lat), "errors": dict(errors)}


def flood_phase(d: Daemon, owner: Callable[[], dict], flood: Flood, s: Settings,
                lim: dict) -> tuple[dict | None, Counter]:
    """Start the flooding processes, measure the owner while they flood, stop them; returns
    the owner's latencies (None if the flooders did not start) and the flooders' replies."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    pipes, procs, counts = [], [], Counter()
    try:
        for _ in range(s.flood_workers):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_flooder, args=(d.endpoint, flood.key, lim,
                                                   s.flood_cap_s + 30, stop, theirs))
            p.start()
            pipes.append(mine)
            procs.append(p)
        started = all(m.poll(60) and m.recv() == "flooding" for m in pipes)
        res = owner() if started else None
        stop.set()
        for m in pipes:
            if m.poll(30):
                counts.update(m.recv())
    finally:
        stop.set()
        for p in procs:
            p.join(5)
            kill(p)
    return res, counts


FLOOD_EXPECT = {"a": "answered (reads are open, up to MAX_OPEN_REPLY_WORDS)",
                "b": "TOO_LARGE at once",
                "c": "NOT_OWNER at once (with token 0: TOO_LARGE, the NI limit is checked first)",
                "d": "TIMEOUT at once (only the owner parks)",
                "e": "answered (reads are open)"}


def floods(s: Settings, logdir: str) -> list[Row]:
    import host
    cells = 1024
    say(f"7. non-owner floods ({s.flood_workers} flooding process(es), daemon --cells {cells})")
    A, b = spd(16, 10.0, 5), np.full(16, 0.5)
    rows: list[Row] = []
    with Daemon.start(cells, logdir) as d:
        dev = host.connect(d.endpoint)
        lim = {"open_reply": dev.read("MAX_OPEN_REPLY_WORDS"),
               "register_ni": dev.read("MAX_REGISTER_NI_WORDS")}
        for _ in range(5):  # warm up
            dev.solve_step(coupling=A, bias=b, t=5.0)

        def owner() -> dict:
            return owner_latency(dev, A, b, s.flood_iterations, s.flood_cap_s)

        quiet, rss0 = owner(), d.status_kb()
        singles = {f.key: one_packet(d.endpoint, *f.make(lim)) for f in FLOODS}
        singles["c0"] = one_packet(d.endpoint, *_flood_write_ni(lim, token=0))
        rss1 = d.status_kb()
        rows.append(Row(f"none (owner: `solve_step` of 16 dense cells, t = 5, repeated; daemon "
                        f"--cells {cells})", "results", "—",
                        f"owner p50 {fmt_time(quiet['p50'])}, p99 {fmt_time(quiet['p99'])} "
                        f"({quiet['n']} calls); daemon RSS {rss0 / 1024:.0f} MiB, "
                        f"{rss1 / 1024:.0f} MiB after one packet of each flood below"))
        say(f"   quiet: p50 {quiet['p50'] * 1e3:.1f} ms p99 {quiet['p99'] * 1e3:.1f} ms; "
            f"RSS {rss0 / 1024:.0f} MiB, {rss1 / 1024:.0f} MiB after the single packets")
        for flood in FLOODS:
            before = d.status_kb()
            res, counts = flood_phase(d, owner, flood, s, lim)
            after, peak = d.status_kb(), d.status_kb("VmHWM")
            fault = (f"flood ({flood.key}) by {s.flood_workers} non-owner process(es), "
                     f"{flood.window} in flight each: {flood.what}")
            if res is None:
                rows.append(Row(fault, "the flooders did not start", "—", "—", missed=True))
                continue
            took, status, _ = singles[flood.key]
            one = f"one alone: {status} in {fmt_time(took)}"
            if flood.key == "c":
                one += f" (with token 0: {singles['c0'][1]} in {fmt_time(singles['c0'][0])})"
            got = ", ".join(f"{v} {k}" for k, v in counts.most_common())
            err = f"; owner errors {res['errors']}" if res["errors"] else ""
            say(f"   flood {flood.key}: p50 {res['p50'] * 1e3:.1f} ms p99 {res['p99'] * 1e3:.1f} ms; "
                f"RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB (peak {peak / 1024:.0f}); {got}")
            expect = FLOOD_EXPECT[flood.key]
            rows.append(Row(
                fault, f"owner: results{err}; flooders got {got}", f"flooders: {expect}; owner: —",
                f"{one}; owner p50 {fmt_time(res['p50'])}, p99 {fmt_time(res['p99'])} ({res['n']} calls); "
                f"daemon RSS {before / 1024:.0f} → {after / 1024:.0f} MiB (peak {peak / 1024:.0f})",
                bool(res["errors"]) or (flood.key not in ("a", "e") and status != expect.split()[0])))
        dev.close()
    return rows


# ================================================================================ 8. reset
def sticky_reset(s: Settings, logdir: str) -> list[Row]:
    import host
    say("8. daemon restarted on the same ipc:// endpoint: sticky DeviceReset")
    endpoint = f"ipc://{logdir}/restart.sock"
    d1 = Daemon.start(64, logdir, endpoint=endpoint)
    d2: Daemon | None = None
    try:
        dev = host.connect(endpoint)
        dev.configure(temperature=0.005)
        d1.proc.terminate()
        d1.proc.wait(timeout=15)
        d2 = Daemon.start(64, logdir, endpoint=endpoint)
        t1, _, e1 = timed(lambda: dev.read("STATUS"))
        p1 = dev.stats.packets
        t2, _, e2 = timed(lambda: dev.read("STATUS"))
        p2 = dev.stats.packets
        tr, _, er = timed(dev.recover)
        temp = dev.read("TEMPERATURE")
        dev.close()
    finally:
        kill(d1.proc)
        if d2 is not None:
            kill(d2.proc)
    both = isinstance(e1, host.DeviceReset) and isinstance(e2, host.DeviceReset)
    ok = both and p1 == p2 and er is None and abs(temp - 0.005) < 1e-6
    say(f"   -> {type(e1).__name__}, {type(e2).__name__}; packets {p1} -> {p2}; TEMPERATURE {temp}")
    return [Row("daemon restarted on the same ipc:// endpoint (SIGTERM, new `serve`); host keeps "
                "calling `dev.read`",
                f"1st call {sees(e1, 110)}; 2nd call `{type(e2).__name__}` again, packets sent "
                f"{p1} → {p2}; after `dev.recover()` TEMPERATURE reads {temp:.6g} (configured 0.005)",
                "sticky: every call raises until `recover()`, nothing sent",
                f"1st {fmt_time(t1)}, 2nd {fmt_time(t2)}, `recover()` {fmt_time(tr)}", not ok)]


# ================================================================================ 9. run budget
def run_budget(s: Settings, logdir: str) -> list[Row]:
    import host
    say("9. runs that could not finish: refused at RUN")
    rows = []
    with Daemon.start(64, logdir) as d, host.connect(d.endpoint) as dev:
        dev.load_coupling(6e4 * np.eye(8))
        dev.load_bias(np.full(8, 1e3))
        dev.commit()
        t1, _, e1 = timed(lambda: dev.run(2e4))
        dev.load_coupling(np.eye(8))
        dev.load_bias(np.full(8, 0.5))
        dev.commit()
        dev.configure(substep=1e-9)
        t2, _, e2 = timed(lambda: dev.run(50))
    for what, t, e in (("dense A = 6e4·I on 8 cells, `run(2e4)`", t1, e1),
                       ("`configure(substep=1e-9)`, `run(50)` (8 cells, A = I)", t2, e2)):
        status = getattr(getattr(e, "status", None), "name", None)
        say(f"   -> {what}: {type(e).__name__} {status} in {t:.3f} s")
        rows.append(Row(f"a run the emulator could not finish: {what}", sees(e, 230),
                        "refused at RUN (one round trip) with RANGE naming the budget",
                        fmt_time(t), status != "RANGE" or "budget" not in str(e).lower()))
    return rows


# ================================================================================ 10. busy host
def busy_host(s: Settings, logdir: str) -> list[Row]:
    """A host that computes for several leases between calls keeps the device (keep-alive);
    the same host with the keep-alive off loses it, and its next call says so."""
    import host
    say("10. a busy host: 4 leases of digital work between two device calls")
    lease_ms = 500
    with Daemon.start(8, logdir) as d:
        with host.connect(d.endpoint, lease_ms=lease_ms) as busy:
            busy.solve_step(coupling=np.eye(8), bias=np.full(8, 0.5), t=20.0)
            time.sleep(4 * lease_ms / 1000)
            t1, m, e1 = timed(busy.mean)
            kept = e1 is None and np.allclose(m, 0.5, atol=0.1)
        silent = host.connect(d.endpoint, lease_ms=lease_ms, keepalive=False)
        silent.solve_step(coupling=np.eye(8), bias=np.full(8, 0.5), t=20.0)
        time.sleep(4 * lease_ms / 1000)
        t2, _, e2 = timed(silent.mean)
        silent.close()
    say(f"   -> keep-alive: {type(e1).__name__ if e1 else 'result'}; without: {type(e2).__name__}")
    return [Row(f"host computes for 4 leases ({4 * lease_ms / 1000:g} s, LEASE_MS {lease_ms}) "
                "between `solve_step` and `mean()`", "the result (keep-alive renewed the lease)",
                "a busy host keeps the device; only a dead, frozen or cut-off one loses it",
                fmt_time(t1), not kept),
            Row("… the same with `connect(keepalive=False)`", sees(e2, 150),
                "LeaseLost: the lease lapsed, nothing is returned", fmt_time(t2),
                type(e2).__name__ != "LeaseLost")]


# ================================================================================ 11. deaf peer
def deaf_dealer(endpoint: str) -> zmq.Socket:
    """A DEALER that takes (almost) none of its replies: a one-message receive queue and the
    smallest kernel buffer, so everything the daemon answers backs up on the daemon's side."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def deaf_peer(s: Settings, logdir: str) -> list[Row]:
    """A client that sends open reads and never takes the replies: the daemon keeps at most
    MAX_QUEUED_PER_PEER of them and drops the rest."""
    import host
    say("11. a peer that never reads its replies")
    n = 300 if not s.quick else 100
    with Daemon.start(512, logdir) as d, host.connect(d.endpoint) as owner:
        words = owner.read("MAX_OPEN_REPLY_WORDS")
        rss0 = d.status_kb()
        sock = deaf_dealer(d.endpoint)
        try:
            cid = os.urandom(16)
            read = [Transaction(Op.READ, REGMAP.windows["COUPLING"].base, (words,))]
            for seq in range(1, n + 1):
                sock.send_multipart(encode_request(seq, cid, 0, read))
            time.sleep(3.0)
            rss1 = d.status_kb()
            t, _, e = timed(lambda: owner.read("SCRATCH"))
        finally:
            sock.close(0)
    reply_mib = words * 4 / 2**20
    bound = limits.MAX_QUEUED_PER_PEER * reply_mib
    grown = (rss1 - rss0) / 1024
    say(f"   -> RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB; owner read {t * 1e3:.1f} ms")
    return [Row(f"a non-owner sends {n} open READs of MAX_OPEN_REPLY_WORDS ({reply_mib:g} MiB "
                "replies) and never reads the replies (RCVHWM 1)",
                f"daemon RSS {rss0 / 1024:.0f} → {rss1 / 1024:.0f} MiB; the owner's next read "
                f"{'answered' if e is None else sees(e, 80)}",
                f"at most MAX_QUEUED_PER_PEER = {limits.MAX_QUEUED_PER_PEER} replies held per "
                f"peer (≈ {bound:g} MiB)", f"grew {grown:.0f} MiB; owner read {fmt_time(t)}",
                e is not None or grown > bound + 64)]


# ================================================================================ report
SCENARIOS: tuple[Callable[[Settings, str], list[Row]], ...] = (
    kill_tcp_daemon, kill_spawn_child, kill_train_child, freeze_tcp_daemon, freeze_train_daemon,
    lease_lost, floods, sticky_reset, run_budget, busy_host, deaf_peer)

INTRO = """\
# Reliability

What a host sees, and how soon, when the device daemon dies, freezes or reboots, when another
host takes the device over, or when non-owners flood it. Every row was measured against real
`thermohil serve` daemon subprocesses (tcp://, ipc:// or the private daemon of a spawn://
device) with hosts in this process or in other processes, by `python -m host.bench.reliability`
(`host/bench/reliability.py`): SIGKILL and SIGSTOP/SIGCONT are sent to the real processes, and
floods are hand-made packets on raw DEALER sockets. Times are wall times on the machine named
below; "within" allows {slack} of scheduling slack, and a missed deadline or expectation is
marked in bold. The documented deadlines are those of the host library and the protocol:
a dead daemon raises `DeviceTimeout` within (retries + 1) × timeout of its last answer, a
spawn:// child's death `DeviceDied` at once, `close()`'s release never blocks longer than one
timeout (spawn:// then stops its daemon: up to 10 s for a clean exit, 1 s if it stopped answering), a
frozen host's lease frees the device after LEASE_MS.
"""


def render(rows: list[Row], meta: str, quick: bool) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [INTRO.format(slack=fmt_time(SLACK_S))]
    if quick:
        lines.append("*A `--quick` smoke run: shorter timeouts, leases and floods than the full "
                     "run; the deadlines are for the settings used.*\n")
    lines.append("| fault | what the host sees | documented deadline | measured time |")
    lines.append("|---|---|---|---|")
    for r in rows:
        lines.append(f"| {cell(r.fault)} | {cell(r.host_sees)} | {cell(r.deadline)} | "
                     f"{cell(r.measured)} |")
    lines.append("")
    lines.append(meta)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host.bench.reliability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: shorter everything")
    p.add_argument("--out", default="docs/reliability.md", help="markdown file to write")
    p.add_argument("--only", default=None, help=f"comma-separated scenario numbers (1-{len(SCENARIOS)})")
    args = p.parse_args(argv)
    s = QUICK if args.quick else FULL
    chosen = range(1, len(SCENARIOS) + 1) if not args.only else \
        [int(x) for x in args.only.split(",") if x.strip()]
    load0 = os.getloadavg()
    started = time.monotonic()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="thermohil-reliability-") as logdir:
        for k in chosen:
            fn = SCENARIOS[k - 1]
            try:
                rows += fn(s, logdir)
            except Exception as e:  # a scenario that broke is a result too
                say(f"scenario {k} ({fn.__name__}) failed: {type(e).__name__}: {e}")
                rows.append(Row(f"scenario {k} ({fn.__name__})", f"the measurement failed: {sees(e)}",
                                "—", "—", missed=True))
    load1 = os.getloadavg()
    command = "python -m host.bench.reliability" + ("".join(f" {a}" for a in (argv or sys.argv[1:])))
    meta = (f"Produced by `{command}` on {time.strftime('%Y-%m-%d')}, {platform.machine()} with "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; load average "
            f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end; took "
            f"{time.monotonic() - started:.0f} s.")
    text = render(rows, meta, s.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)
    missed = [r for r in rows if r.missed]
    say(f"wrote {args.out}: {len(rows)} rows, {len(missed)} missed a deadline or expectation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
