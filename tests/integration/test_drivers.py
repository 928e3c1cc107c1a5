"""URL handling of the built-in drivers: typos are refused, a missing ipc socket fails fast."""
from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid

import pytest

import host


@pytest.mark.parametrize("url, valid", [
    ("spawn://?cells=4&celss=8", "cells, profile, seed, serial, max_rank, timeout, retries"),
    ("tcp://127.0.0.1:5555?timout=2", "timeout, retries, server_cert, client_cert"),
    (f"ipc://{tempfile.gettempdir()}/no-such-thermohil?retry=1",
     "timeout, retries, server_cert, client_cert"),
    ("local://?cells=4&profle=ideal&x", "cells, profile, seed, serial, max_rank, timeout"),
])
def test_unknown_query_parameters_are_refused(url, valid):
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="unknown query parameter") as e:
        host.connect(url, timeout=30.0)
    assert valid in str(e.value)
    assert time.monotonic() - t0 < 5.0  # refused up front: no daemon started, no timeout waited


def test_spawn_keeps_the_keys_training_uses():
    """host/training.py builds spawn://?cells=…&max_rank=…&seed=…; the link keys pass through."""
    with host.connect("spawn://?cells=4&max_rank=2&seed=3&timeout=7&retries=1") as dev:
        assert dev.n_cells == 4 and dev.info()["max_rank"] == 2
        assert dev.driver.timeout == 7.0 and dev.driver.retries == 1


def test_ipc_without_a_socket_file_fails_at_once():
    path = f"{tempfile.gettempdir()}/thermohil-missing-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        host.connect(f"ipc://{path}", timeout=30.0)
    assert time.monotonic() - t0 < 1.0
    with open(path, "w"):  # a plain file is no socket either
        pass
    try:
        with pytest.raises(ValueError, match="not a socket"):
            host.connect(f"ipc://{path}", timeout=30.0)
    finally:
        os.unlink(path)


def test_timeout_message_states_the_total_wait():
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(host.DeviceTimeout, match=r"after 0\.6 s \(3 attempts × 0\.2 s\)"):
        host.connect(f"tcp://127.0.0.1:{port}", timeout=0.2, retries=2)
    assert time.monotonic() - t0 < 2.0
