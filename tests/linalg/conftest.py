"""Devices for the host.linalg tests: in-process (local://), one per profile and size, shared by
the session. Each test re-claims its device (an idle device's lease runs out while another test
runs for long) and reseeds it, so its noise does not depend on which tests ran before."""
from __future__ import annotations

from typing import Iterator

import pytest

import host


def _open(url: str) -> Iterator[host.ThermoDevice]:
    with host.connect(url) as dev:
        yield dev


@pytest.fixture(scope="session")
def _dev64() -> Iterator[host.ThermoDevice]:
    yield from _open("local://?cells=64&seed=11")


@pytest.fixture(scope="session")
def _dev64_realistic() -> Iterator[host.ThermoDevice]:
    yield from _open("local://?cells=64&profile=realistic&seed=12")


@pytest.fixture(scope="session")
def _dev8() -> Iterator[host.ThermoDevice]:
    yield from _open("local://?cells=8&seed=13")


def _fresh(dev: host.ThermoDevice, request: pytest.FixtureRequest) -> host.ThermoDevice:
    dev.claim()
    dev.clear_saturation()
    seed = sum(map(ord, request.node.name)) % 100_000  # per test, stable across runs
    dev.configure(seed=seed, temperature=1e-3)
    return dev


@pytest.fixture
def dev64(_dev64: host.ThermoDevice, request: pytest.FixtureRequest) -> host.ThermoDevice:
    return _fresh(_dev64, request)


@pytest.fixture
def dev64_realistic(_dev64_realistic: host.ThermoDevice,
                    request: pytest.FixtureRequest) -> host.ThermoDevice:
    return _fresh(_dev64_realistic, request)


@pytest.fixture
def dev8(_dev8: host.ThermoDevice, request: pytest.FixtureRequest) -> host.ThermoDevice:
    return _fresh(_dev8, request)
