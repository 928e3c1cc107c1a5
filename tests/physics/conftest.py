"""Fixtures for the analog-core physics tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _compiled_kernels() -> None:
    """Compile (or load from the on-disk cache) every kernel once per session."""
    import numpy as np

    from device.analog import kernels

    x, v, b = np.zeros(2), np.zeros(2), np.zeros(2)
    one, und, sat = np.ones(2), np.zeros(2, np.uint8), np.zeros(2, np.uint8)
    xi = np.zeros((1, 2))
    kernels.em_dense(x, v, np.eye(2), b, one, one, und, one, xi, 0.1, 1.0, sat, np.zeros(2))
    kernels.em_lowrank(x, v, np.ones((1, 2)), np.eye(1), one, b, one, one, und, one, xi, 0.1,
                       1.0, sat, np.zeros(2))
    kernels.em_dense_chains(x[None], v[None], np.eye(2), b, one, one, und, one, xi[:, None], 0.1,
                            1.0, sat[None], np.zeros((1, 2)))
    kernels.em_capacitive(x, v, np.eye(2), b, one, one, one, xi, 0.1, 1.0, sat, np.zeros(2))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every physics test runs against both integrators, except those about one of them."""
    if "integrator" in metafunc.fixturenames and _only(metafunc.definition) is None:
        metafunc.parametrize("integrator", ["em", "exact"], indirect=True)


def _only(item: pytest.Item) -> str | None:
    for name in ("em_only", "exact_only"):
        if item.get_closest_marker(name) is not None:
            return name.split("_")[0]
    return None


@pytest.fixture(autouse=True)
def integrator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The integrator every core built in the test starts with."""
    from device.analog import AnalogCore

    name = getattr(request, "param", None) or _only(request.node) or "exact"
    monkeypatch.setattr(AnalogCore, "default_integrator", name)
    return name
