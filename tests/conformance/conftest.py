"""The conformance suite runs against any device URL: ``pytest tests/conformance --device-url URL``.

Without --device-url it runs against local://, spawn:// and a tcp:// daemon started for the
session, which is how CI proves the three transports behave the same, and against a spawned
emulator of the realistic (non-ideal) chip.
"""
from __future__ import annotations

import pytest

import host

# the three built-in transports, and a non-ideal chip (12-bit converters, mismatch, offsets,
# drift) behind the real daemon: what passes on the ideal profile must pass on that one too
DEFAULT_URLS = ["local://?cells=16", "spawn://?cells=16", "tcp", "spawn://?cells=16&profile=realistic"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device_url" in metafunc.fixturenames:
        urls = metafunc.config.getoption("--device-url") or DEFAULT_URLS
        metafunc.parametrize("device_url", urls, scope="session")


@pytest.fixture(scope="session")
def resolved_url(device_url: str, request: pytest.FixtureRequest) -> str:
    if device_url == "tcp":
        return request.getfixturevalue("tcp_daemon").endpoint
    return device_url


@pytest.fixture(scope="session")
def session_dev(resolved_url: str):
    dev = host.connect(resolved_url, timeout=10.0)
    yield dev
    dev.close()


@pytest.fixture()
def dev(session_dev: host.ThermoDevice):
    """The session's device, stopped and with flags cleared before each test."""
    d = session_dev
    d.stop()
    d.configure(temperature=1e-3, mode="overdamped", mobility=1.0, friction=1.0, noise_gain=1.0,
                active=d.n_cells)
    d.write("CTRL", 0b1110100)  # CLEAR_SAT | CLEAR_FIFO | CLEAR_ACC | RESET_STATE
    d.write("IRQ_STATUS", 0xFFFFFFFF)
    if "emulator" in d.info()["caps"]:
        d.configure(integrator="exact")  # a test that needs runs to last selects EM itself
    return d
