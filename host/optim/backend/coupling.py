"""The coupling and bias of one relax phase, assembled from its requests.

Each request couples only its own cells (its block of J's columns, or of a dense F, and its λ
on the diagonal); every other cell is uncoupled with zero bias. When no oscillation shares the
packet those cells get the phase's λ (if the requests share one), so the diagonal stays uniform
— the low-rank-on-a-uniform-diagonal form the emulator propagates exactly at any size.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from host.optim.backend.requests import Relax


def hessian(r: Relax) -> np.ndarray:
    return r.hessian if r.hessian is not None else np.eye(r.rank)


def assemble(phase: list[Relax], n: int, factor: float, uncoupled_rest: bool):
    """(dense F or None, J, H, diag, bias) in device units (bias/s); J, H, diag are None when
    the phase is dense (any request dense: the others are formed as JᵀHJ + λI blocks)."""
    lams = {r.lam for r in phase}
    fill = lams.pop() if uncoupled_rest and len(lams) == 1 else 0.0
    bias = np.zeros(n)
    for r in phase:
        bias[r.cells] = r.bias / (r.scale * factor)
    if any(r.dense is not None for r in phase):
        if len(phase) == 1 and phase[0].cells == slice(0, n):
            return phase[0].dense, None, None, None, bias
        A = np.zeros((n, n))
        A[np.diag_indices(n)] = fill
        for r in phase:
            c = r.cells
            A[c, c] = r.dense if r.dense is not None else \
                r.factor.T @ (hessian(r) @ r.factor) + r.lam * np.eye(c.stop - c.start)
        return A, None, None, None, bias
    if len(phase) == 1 and phase[0].cells == slice(0, n):
        J, H = phase[0].factor, hessian(phase[0])
    else:
        rows = []
        for r in phase:
            block = np.zeros((r.rank, n))
            block[:, r.cells] = r.factor
            rows.append(block)
        J = np.vstack(rows)
        H = scipy.linalg.block_diag(*[hessian(r) for r in phase])
    diag = np.full(n, fill)
    for r in phase:
        diag[r.cells] = r.lam
    return None, J, H, diag, bias
