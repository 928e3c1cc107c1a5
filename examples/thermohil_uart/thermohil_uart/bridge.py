"""The board side of uart://, played by the emulated firmware.

    python -m thermohil_uart.bridge --port 0 --cells 16 --profile ideal
    -> thermohil-uart: listening 127.0.0.1:PORT

On a real board this loop is firmware: read a framed message off the serial line, execute the
packet, write the framed reply. Here a loopback TCP socket is the serial line and
``device.emulator.build_firmware`` is the board. A serial line has exactly one peer, so one
connection is served at a time; the next one is accepted when it closes (the host driver
reconnects after a timeout, and its retried packet is answered from the firmware's reply cache).

Malformed packets get the protocol's structured error reply (``Reply`` with the ProtocolError's
status, built by ``Firmware.execute``); a stream with an impossible length gets one error reply and is then closed, because the
position of the next message is unknown. SIGTERM or SIGINT stops the bridge with exit code 0.
"""
from __future__ import annotations

import argparse
import logging
import select
import signal
import socket
import sys
import time
from typing import Sequence

from firmware_sim import Firmware
from protocol.codec import Reply, encode_reply
from protocol.status import Status
from thermohil_uart.framing import FramingError, read_message, write_message

log = logging.getLogger("thermohil_uart.bridge")

#: How often the idle loops look at the stop flag and run the firmware's housekeeping.
POLL_S = 0.2
#: Once a message has started, the rest of it must arrive within this time.
MESSAGE_TIMEOUT_S = 30.0
#: A reply the host does not take within this time is abandoned with the connection.
WRITE_TIMEOUT_S = 30.0


class Bridge:
    def __init__(self, firmware: Firmware, port: int = 0) -> None:
        self.fw = firmware
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4)  # loopback only
        self.port: int = self.listener.getsockname()[1]
        self.stopping = False

    def stop(self, *_: object) -> None:
        """Signal handler: only sets a flag; every loop below looks at it within POLL_S."""
        self.stopping = True

    def serve_forever(self) -> None:
        while not self.stopping:
            if not select.select([self.listener], [], [], POLL_S)[0]:
                self.fw.tick()
                continue
            try:
                conn, peer = self.listener.accept()
            except OSError as e:  # the peer gave up between select and accept
                log.warning("accept failed: %s", e)
                continue
            log.info("link up: %s:%d", *peer[:2])
            try:
                self._serve(conn)
            except OSError as e:
                log.warning("link lost: %s", e)
            finally:
                conn.close()
            log.info("link down")

    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not self.stopping:
            if not select.select([conn], [], [], POLL_S)[0]:
                self.fw.tick()
                continue
            try:
                frames = read_message(conn, time.monotonic() + MESSAGE_TIMEOUT_S)
            except FramingError as e:
                log.warning("bad framing, dropping the link: %s", e.message)
                self._reply(conn, Reply(None, e.status, [], [], self.fw.boot_id, e.message))
                return
            if frames is None:
                return  # the host closed the link
            reply = self._run(frames)
            if reply is None:
                return  # stopping
            self._reply(conn, reply)

    def _run(self, frames: Sequence[bytearray]) -> Reply | None:
        """The firmware decodes the untrusted frames itself (``decode_request``; a malformed
        packet gets the ProtocolError's status in a structured ``Reply``) and runs the packet.
        A packet suspended at a WAIT stays in the firmware's in-flight table, so executing the
        same frames again resumes it: short slices let a SIGTERM stop the bridge mid-WAIT."""
        while True:
            try:
                return self.fw.execute(list(frames), timeout=POLL_S)
            except TimeoutError:
                if self.stopping:
                    return None
            except Exception as e:  # a firmware bug while resuming must not take the board down
                log.exception("internal error")
                return Reply(None, Status.INTERNAL, [], [], self.fw.boot_id, f"internal error: {e!r}")

    def _reply(self, conn: socket.socket, reply: Reply) -> None:
        write_message(conn, encode_reply(reply), time.monotonic() + WRITE_TIMEOUT_S)

    def close(self) -> None:
        self.listener.close()
        self.fw.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m thermohil_uart.bridge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=5600, help="TCP port on 127.0.0.1 (0 = any free)")
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--profile", default="ideal", help="non-ideality profile: ideal or realistic")
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
