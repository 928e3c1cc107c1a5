"""The device daemon: one firmware instance behind a ZeroMQ ROUTER (requests) and PUB (events).

Single-threaded request loop (the firmware's run scheduler has its own thread): it decodes
packets, hands them to the firmware, parks packets suspended at a WAIT and re-checks them only
when something may have changed (a packet was handled, the firmware woke it, a WAIT deadline
came, or a slow tick for registers that change by themselves), and publishes IRQ-like events.
Anything that cannot be executed gets a structured error reply (and a log line, at most 60 a
minute); nothing a client sends can stop the loop.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import queue
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import msgpack
import zmq

from firmware_sim import Firmware
from firmware_sim.hosting import PacketHost
from protocol import limits
from protocol.codec import Reply, encode_reply
from protocol.status import Status

log = logging.getLogger("thermohil.daemon")


def is_loopback(endpoint: str) -> bool:
    """ipc:// is local; tcp:// must name a loopback host."""
    url = urlparse(endpoint)
    if url.scheme in ("ipc", "inproc"):
        return True
    host = (url.hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names, hostnames: not provably loopback


def events_endpoint_for(endpoint: str) -> str:
    """Default event endpoint: next tcp port, or the ipc path with '.events' appended."""
    url = urlparse(endpoint)
    if url.scheme == "tcp":
        if url.port is None:
            raise ValueError(f"tcp endpoint needs an explicit port for the default event endpoint: {endpoint}")
        return f"tcp://{url.hostname if ':' not in (url.hostname or '') else '[' + url.hostname + ']'}:{url.port + 1}"
    return endpoint + ".events"


class Daemon:
    def __init__(self, firmware: Firmware, endpoint: str, events: str | None = None, *,
                 curve_dir: str | None = None, insecure: bool = False,
                 parent_pid: int | None = None) -> None:
        self.fw = firmware
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.MAXMSGSIZE, firmware.limits.max_frame_bytes)
        # per peer: at most this many requests read ahead (the rest waits in TCP: backpressure)
        # and replies queued; a peer that does not read its replies loses the ones beyond it
        # instead of making the daemon hold them
        self.router.setsockopt(zmq.RCVHWM, limits.MAX_QUEUED_PER_PEER)
        self.router.setsockopt(zmq.SNDHWM, limits.MAX_QUEUED_PER_PEER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.auth = None
        loopback = is_loopback(endpoint) and (events is None or is_loopback(events))
        if curve_dir:
            self._setup_curve(Path(curve_dir))
        elif not loopback and not insecure:
            raise PermissionError(
                f"refusing to bind {endpoint} without CURVE keys: it is not a loopback address. "
                "Pass --curve-keys DIR (see docs/protocol.md) or --insecure.")
        self._bind(self.router, endpoint.replace(":0", ":*") if endpoint.endswith(":0") else endpoint, "")
        self.endpoint = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._bind(self.pub, events or events_endpoint_for(self.endpoint), " (the event endpoint, --events)")
        self.events_endpoint = self.pub.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.parent_pid = parent_pid
        self.host = PacketHost(firmware)  # parked packets are routed back by peer identity
        self.events: queue.SimpleQueue[tuple[str, dict]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.fw.listeners.append(self._on_event)
        self.fw.wakers.append(self._wake)
        self._log_budget = LogBudget()
        self._stop = False

    def _bind(self, sock: zmq.Socket, endpoint: str, what: str) -> None:
        """Bind, or release everything and raise a one-line error (the CLI prints it): a port
        in use is a user error, not a traceback."""
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            self._close_sockets()
            raise RuntimeError(f"cannot bind {endpoint.replace(':*', ':0')}{what}: "
                               f"{zmq.strerror(e.errno)}") from None

    def _close_sockets(self) -> None:
        if self.auth is not None:
            self.auth.stop()
        self.router.close(0)
        self.pub.close(0)
        self.ctx.term()

    def _setup_curve(self, keydir: Path) -> None:
        import zmq.auth
        from zmq.auth.thread import ThreadAuthenticator
        secret = keydir / "server.key_secret"
        if not secret.exists():
            raise FileNotFoundError(f"CURVE server key {secret} not found (create it with "
                                    "zmq.auth.create_certificates(DIR, 'server'))")
        public, private = zmq.auth.load_certificate(str(secret))
        clients = keydir / "authorized"
        if not clients.is_dir():
            raise FileNotFoundError(f"CURVE client key folder {clients} not found: without it "
                                    "every client would be refused. Put the public keys (*.key) "
                                    "of the hosts allowed to connect there")
        # zmq.auth skips the whole folder when one file in it is not a key, which would refuse
        # every client while the daemon looks healthy: check each file first
        keys = sorted(clients.glob("*.key"))
        for key in keys:
            try:
                zmq.auth.load_certificate(str(key))
            except Exception as e:
                raise ValueError(f"CURVE client key {key} cannot be read ({e}): fix or remove it; "
                                 "one bad file makes zmq refuse every client") from None
        if not keys:
            raise FileNotFoundError(f"no client keys (*.key) in {clients}: every client would be "
                                    "refused")
        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(clients))
        for sock in (self.router, self.pub):
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = private, public, True

    # -- events (called on the run thread, under the firmware lock: must not block) ---------
    def _on_event(self, topic: str, body: dict) -> None:
        self.events.put((topic, body))
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the loop is already awake

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass

    def _publish(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                topic, body = self.events.get_nowait()
            except queue.Empty:
                return
            body = {**body, "boot_id": self.fw.boot_id}
            self.pub.send_multipart([topic.encode(), msgpack.packb(body, use_bin_type=True)])

    # -- request loop ------------------------------------------------------------------------
    def stop(self, *_: object) -> None:
        self._stop = True
        try:
            os.write(self._wake_w, b"q")
        except (BlockingIOError, OSError):
            pass

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._on_event("boot", {"serial": self.fw.regs.u32("SERIAL"), "n_cells": self.fw.core.n_cells})
        time.sleep(0.05)  # let early subscribers connect before the boot event
        while not self._stop:
            ready = dict(poller.poll(self._poll_ms()))
            if self.router in ready:
                for _ in range(64):  # drain, but keep serving wakeups
                    try:
                        frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)
                    if self.fw.running or self.host.parked:
                        # between two packets: let the run thread take the lock for a chunk,
                        # and answer a parked WAIT that has come true, so a burst of other
                        # clients' packets cannot hold the owner's run and reply back
                        time.sleep(0)
                        self._resume_pending()
            self._publish()
            self._resume_pending()  # and the firmware's housekeeping (lease expiry)
            if self.parent_pid and not _alive(self.parent_pid):
                log.warning("parent process %d is gone; shutting down", self.parent_pid)
                break
        self.close()

    def _poll_ms(self) -> int:
        """Sleep until a packet, a wakeup, the earliest parked WAIT's deadline, or a tick (a
        WAIT may watch a register that changes by itself, such as UPTIME_MS or FIFO_LEVEL)."""
        return max(1, int(self.host.next_wakeup() * 1000) + 1)

    def _handle(self, frames: list) -> None:
        for ident, reply in self.host.submit(frames[1:], frames[0].bytes):
            self._deliver(ident, reply)

    def _deliver(self, ident: bytes, out: Reply) -> None:
        if out.status not in (Status.OK, Status.TIMEOUT) and self._log_budget.allow():
            log.warning("rejected packet %s from %s: %s %s", out.seq, ident.hex(),
                        out.status.name, out.message)
        self._send(ident, out)

    def _resume_pending(self) -> None:
        for ident, reply in self.host.poll():
            self._deliver(ident, reply)

    def _send(self, ident: bytes, reply: Reply) -> None:
        try:
            self.router.send_multipart([ident, *encode_reply(reply)], copy=False)
        except zmq.ZMQError as e:
            log.warning("could not send reply to %s: %s", ident.hex(), e)

    def close(self) -> None:
        self.fw.shutdown()
        self._close_sockets()
        os.close(self._wake_r)
        os.close(self._wake_w)


class LogBudget:
    """At most ``per_minute`` lines about rejected packets a minute, then one line saying how
    many were left out: a flood of bad packets must not fill the disk with the daemon's log."""

    def __init__(self, per_minute: int = 60) -> None:
        self.per_minute, self.start, self.used, self.dropped = per_minute, time.monotonic(), 0, 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self.start >= 60:
            if self.dropped:
                log.warning("%d more rejected packets in the last minute were not logged",
                            self.dropped)
            self.start, self.used, self.dropped = now, 0, 0
        if self.used < self.per_minute:
            self.used += 1
            return True
        self.dropped += 1
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return os.getppid() == pid


def serve(endpoint: str, *, cells: int | None = None, profile: str = "ideal", seed: int = 0,
          serial: int | None = None, events: str | None = None, curve_dir: str | None = None,
          insecure: bool = False, parent_pid: int | None = None, max_rank: int | None = None) -> int:
    """Run a daemon until SIGINT/SIGTERM; returns the process exit code."""
    from threadpoolctl import threadpool_limits

    from device.emulator import DEFAULT_SERIAL, build_firmware
    # One BLAS thread: the kernels' large-N matvecs are memory-bound GEMVs, and a multi-threaded
    # BLAS whose threads spin-wait for a core held by another process (the host, a second
    # daemon) makes each call wait a scheduler tick — measured 11x slower per substep at
    # N = 2410, r = 320 on 2 busy cores (docs/performance.md).
    threadpool_limits(1)
    fw = build_firmware(cells, profile=profile, seed=seed, max_rank=max_rank,
                        serial=DEFAULT_SERIAL if serial is None else serial)
    try:
        daemon = Daemon(fw, endpoint, events, curve_dir=curve_dir, insecure=insecure,
                        parent_pid=parent_pid)
    except Exception:
        fw.shutdown()
        raise
    signal.signal(signal.SIGINT, daemon.stop)
    signal.signal(signal.SIGTERM, daemon.stop)
    print(f"thermohil: serving {daemon.endpoint} events {daemon.events_endpoint} "
          f"cells={fw.core.n_cells} profile={profile} serial={fw.regs.u32('SERIAL'):#x} "
          f"boot_id={fw.boot_id:#010x}", flush=True)
    daemon.serve_forever()
    log.info("daemon stopped")
    return 0


if __name__ == "__main__":  # python -m device.daemon ENDPOINT (debug convenience)
    logging.basicConfig(level=logging.INFO)
    sys.exit(serve(sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5555"))
