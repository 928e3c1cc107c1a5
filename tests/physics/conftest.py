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
    """Every physics test runs against both integrators, except those about EM itself."""
    if "integrator" in metafunc.fixturenames:
        em_only = metafunc.definition.get_closest_marker("em_only") is not None
        metafunc.parametrize("integrator", ["em"] if em_only else ["em", "exact"], indirect=True)


@pytest.fixture(autouse=True)
def integrator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The integrator every core built in the test starts with."""
    from device.analog import AnalogCore

    monkeypatch.setattr(AnalogCore, "default_integrator", request.param)
    return request.param
