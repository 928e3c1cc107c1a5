"""The board side of uart://, played by the emulated firmware.

    python -m thermohil_uart.bridge --port 0 --cells 16 --profile ideal
    -> thermohil-uart: listening 127.0.0.1:PORT

On a real board this loop is firmware: bytes in from the serial line, packets to the packet
handler, framed replies out. Here a loopback TCP socket is the serial line,
``device.emulator.build_firmware`` is the board, and ``firmware_sim.stream_server.StreamServer``
is the serial main loop (framing, CRC checks, NAKs, resync; packets parked at a WAIT are
answered when they complete, so a run of any length works). A serial line has one peer, so one
connection is served at a time; the next is accepted when it closes.
SIGTERM or SIGINT stops the bridge with exit code 0.
"""
from __future__ import annotations

import argparse
import logging
import select
import signal
import socket
import sys
from typing import Any, Sequence

from firmware_sim import Firmware
from firmware_sim.stream_server import StreamServer

log = logging.getLogger("thermohil_uart.bridge")

#: How often the idle loop looks at the stop flag and runs the firmware's housekeeping.
POLL_S = 0.2


class SocketLink:
    """The ByteLink of StreamServer over a connected socket."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def read(self, timeout: float) -> bytes:
        if not select.select([self.conn], [], [], timeout)[0]:
            return b""
        data = self.conn.recv(1 << 16)
        if not data:
            raise EOFError("the host closed the line")
        return data

    def write(self, data: Any) -> None:
        self.conn.settimeout(30.0)  # a host that stops reading for this long is gone
        self.conn.sendall(data)


class Bridge:
    def __init__(self, firmware: Firmware, port: int = 0) -> None:
        self.fw = firmware
        self.server = StreamServer(firmware)
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4)  # loopback only
        self.port: int = self.listener.getsockname()[1]
        self.stopping = False

    def stop(self, *_: object) -> None:
        """Signal handler: only sets a flag; the loops below look at it within POLL_S."""
        self.stopping = True

    def serve_forever(self) -> None:
        while not self.stopping:
            if not select.select([self.listener], [], [], POLL_S)[0]:
                self.server.host.poll()  # parked packets and lease housekeeping, link or not
                continue
            try:
                conn, peer = self.listener.accept()
            except OSError as e:  # the peer gave up between select and accept
                log.warning("accept failed: %s", e)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("link up: %s:%d", *peer[:2])
            try:
                self.server.serve(SocketLink(conn), stop=lambda: self.stopping)
            except (EOFError, OSError) as e:
                log.info("link down: %s", e)
            finally:
                conn.close()

    def close(self) -> None:
        self.listener.close()
        self.fw.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m thermohil_uart.bridge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5600, help="TCP port on 127.0.0.1 (0 = any free)")
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--profile", default="ideal", help="hardware profile (ideal, realistic, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from device.emulator import build_firmware  # the board; a real one needs no emulator
    fw = build_firmware(args.cells, profile=args.profile, seed=args.seed)
    try:
        bridge = Bridge(fw, args.port)
    except BaseException:
        fw.shutdown()  # e.g. the port is taken: stop the run thread, then report
        raise
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    try:
        print(f"thermohil-uart: listening 127.0.0.1:{bridge.port}", flush=True)
        bridge.serve_forever()
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
