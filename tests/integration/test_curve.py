"""CURVE: a daemon with keys serves authorized hosts and ignores everyone else."""
from __future__ import annotations

import pytest
import zmq.auth

import host
from support import start_daemon


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("curve")
    (d / "authorized").mkdir()
    zmq.auth.create_certificates(str(d), "server")
    client_dir = d / "client"
    client_dir.mkdir()
    pub, _ = zmq.auth.create_certificates(str(client_dir), "client")
    (d / "authorized" / "client.key").write_bytes(open(pub, "rb").read())
    return d


def test_curve_authorized_client_works_and_stranger_gets_nothing(keys):
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "4", "--curve-keys", str(keys))
    try:
        url = (f"{d.endpoint}?server_cert={keys / 'server.key'}"
               f"&client_cert={keys / 'client' / 'client.key_secret'}")
        with host.connect(url, timeout=5.0) as dev:
            assert dev.read("N_CELLS") == 4
            dev.write("SCRATCH", 3)
        with pytest.raises(host.DeviceTimeout):
            host.connect(d.endpoint, timeout=0.5, retries=0)  # plaintext: handshake never completes
    finally:
        assert d.stop() == 0
