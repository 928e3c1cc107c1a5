"""Root test configuration: the --device-url option of the conformance suite, shared fixtures."""
from __future__ import annotations

import os
import tempfile

import pytest

# calibration data of the tests' devices stays out of the user's cache (and of other sessions)
os.environ["THERMOHIL_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="thermohil-cal-")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device-url", action="append", default=None, metavar="URL",
                     help="run tests/conformance against this device URL (repeatable); default: "
                          "local://, spawn:// and tcp:// to a daemon started for the session")


@pytest.fixture(scope="session")
def tcp_daemon():
    """One real daemon subprocess on a free loopback port, shared by the session."""
    from support import start_daemon
    d = start_daemon("tcp://127.0.0.1:0", "--cells", "32", "--seed", "1")
    yield d
    d.stop()
