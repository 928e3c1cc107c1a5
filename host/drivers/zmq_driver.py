"""tcp:// and ipc:// — the ZeroMQ DEALER driver (Lazy Pirate: timeout, rebuild, retry).

Every packet may be retried with its sequence number unchanged: the device answers a repeat
from its reply cache, so a retried write is never applied twice. Query parameters:
``timeout`` (s per attempt), ``retries``, and for CURVE ``server_cert`` (path of the device's
public certificate, server.key) with ``client_cert`` (path of this host's zmq.auth secret
certificate, *.key_secret). Keys travel as files, not in the URL: Z85 text is not URL-safe.
Any other query parameter is a ValueError. An ipc:// path with no socket file fails at once
(FileNotFoundError) instead of after the timeout: no daemon is listening there.
"""
from __future__ import annotations

import os
import stat
import time

import zmq

from host.drivers.base import PacketDriver
from protocol import limits

#: How often a wait for a reply looks at the device's liveness (spawn://: its child process).
LIVENESS_POLL_S = 0.1


class ZmqDriver(PacketDriver):
    schemes = ("tcp", "ipc")
    QUERY = ("timeout", "retries", "server_cert", "client_cert")

    def __init__(self, url: str, *, timeout: float | None = None, retries: int | None = None) -> None:
        super().__init__(url, timeout=timeout, retries=retries)
        q = self.query
        self.endpoint = url.split("?", 1)[0]
        if self.endpoint.startswith("ipc://"):
            _check_ipc_socket(self.endpoint)
        self._curve = (q["server_cert"], q.get("client_cert")) if "server_cert" in q else None
        self.ctx = zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self._connect()

    def _connect(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, limits.MAX_FRAME_BYTES)
        if self._curve is not None:
            from zmq import auth as zmq_auth
            server_cert, cert = self._curve
            if not cert:
                raise ValueError("CURVE needs client_cert=PATH (a zmq.auth .key_secret file)")
            pub, sec = zmq_auth.load_certificate(cert)
            if sec is None:
                raise ValueError(f"client_cert {cert} holds no secret key (use the .key_secret file)")
            sock.curve_publickey, sock.curve_secretkey = pub, sec
            sock.curve_serverkey, _ = zmq_auth.load_certificate(server_cert)
        sock.connect(self.endpoint)
        self.sock = sock

    def _send(self, frames: list, deadline: float) -> None:
        if self.sock is None:
            self._connect()
        assert self.sock is not None
        self.sock.send_multipart(frames, copy=False)

    def _receive(self, deadline: float) -> list:
        assert self.sock is not None
        while (left := deadline - time.monotonic()) > 0:
            if self.sock.poll(max(1, int(min(left, LIVENESS_POLL_S) * 1000))):
                return self.sock.recv_multipart(copy=False)
            self._check_alive()  # after the poll: a reply sent before dying is kept
        raise TimeoutError("no reply before the deadline")

    def _check_alive(self) -> None:
        """Called every LIVENESS_POLL_S while waiting: a transport that can tell that the device
        is gone (spawn:// sees its child exit) raises DeviceDied here instead of timing out."""

    def _reset_link(self) -> None:
        """Lazy Pirate: a DEALER with a lost reply in flight is not reused."""
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def close(self) -> None:
        self._reset_link()


def _check_ipc_socket(endpoint: str) -> None:
    """zmq connects to a missing ipc path without complaint and then waits out every timeout;
    a missing socket file means no daemon, so say so now. (Linux abstract names, ipc://@name,
    have no file.)"""
    path = endpoint[len("ipc://"):]
    if path.startswith("@"):
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no device at {endpoint}: the socket file {path} does not exist "
                                "(is the daemon running, with this --endpoint?)") from None
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"no device at {endpoint}: {path} is not a socket")
