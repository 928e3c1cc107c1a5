"""The reference peer of the transport benchmark: a raw pyzmq ROUTER in its own process that
answers every request with one frame of the size the request's first frame names (8 bytes,
little-endian). ``python -m host.bench.echo_server ENDPOINT`` prints ``ready ENDPOINT``."""
from __future__ import annotations

import sys

import zmq


def main(endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(endpoint)
    print("ready", sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    replies: dict[int, bytes] = {}
    while True:
        ident, size_frame, *_payload = sock.recv_multipart(copy=False)
        size = int.from_bytes(size_frame.bytes, "little")
        if size < 0 or size > 1 << 30:
            break
        body = replies.setdefault(size, bytes(size))
        sock.send_multipart([ident, body], copy=False)


if __name__ == "__main__":
    main(sys.argv[1])
