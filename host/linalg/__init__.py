"""Thermodynamic linear algebra on a connected device (docs/linalg.md).

    import host
    from host import linalg
    with host.connect("local://?cells=64") as dev:
        sol = linalg.solve(dev, A, b, tol=1e-2)      # sol.x, sol.error_estimate, ...
        Ainv, err = linalg.inv(dev, A)
        xs = linalg.sample(dev, A, b, 1000, temperature=1.0)   # N(A⁻¹b, κA⁻¹)
        ld, ld_err = linalg.logdet(dev, A)

Each function scales A and b into the device's ranges and back, picks its run times from a
relaxation-time estimate, and returns an error estimate with the answer.
"""
from __future__ import annotations

from host.linalg._problem import NotPositiveDefinite
from host.linalg._sampling import SampleInfo, inv, logdet, sample
from host.linalg._solver import Solution, solve

__all__ = ["solve", "inv", "sample", "logdet", "Solution", "SampleInfo", "NotPositiveDefinite"]
