"""The coupling and bias of one relax phase, assembled from its requests.

Each request couples only its own cells (its block of J's columns, or of a dense F, and its λ
on the diagonal); every other cell is uncoupled with zero bias. When no oscillation shares the
packet those cells get the phase's λ (if the requests share one), so the diagonal stays uniform
— the low-rank-on-a-uniform-diagonal form the emulator propagates exactly at any size.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from host.optim.backend.requests import Relax


class Coupling(NamedTuple):
    bias: np.ndarray                     # b/s, every cell
    dense: np.ndarray | None = None      # F (n × n) when a request is dense, else:
    J: np.ndarray | None = None          # the stacked rows of every request (r × n)
    H: np.ndarray | None = None          # their H, block-diagonal
    diag: np.ndarray | None = None       # λ per cell


def hessian(r: Relax) -> np.ndarray:
    return r.H if r.H is not None else np.eye(r.rank)


def assemble(phase: list[Relax], n: int, boost: float, uncoupled_rest: bool) -> Coupling:
    """The phase's coupling in device units (bias/s, s = scale × boost); a phase with any
    dense request is dense (the others formed as JᵀHJ + λI blocks)."""
    lams = {r.lam for r in phase}
    fill = lams.pop() if uncoupled_rest and len(lams) == 1 else 0.0
    bias = np.zeros(n)
    for r in phase:
        bias[r.cells] = r.bias / (r.scale * boost)
    whole = len(phase) == 1 and phase[0].cells == slice(0, n)
    if any(r.dense is not None for r in phase):
        if whole:
            return Coupling(bias, dense=phase[0].dense)
        A = np.zeros((n, n))
        A[np.diag_indices(n)] = fill
        for r in phase:
            c = r.cells
            A[c, c] = r.dense if r.dense is not None else \
                r.J.T @ (hessian(r) @ r.J) + r.lam * np.eye(c.stop - c.start)
        return Coupling(bias, dense=A)
    if whole:
        J, H = phase[0].J, hessian(phase[0])
    else:
        J = np.zeros((sum(r.rank for r in phase), n))   # filled in place: one r × n array, no copies
        top = 0
        for r in phase:
            J[top:top + r.rank, r.cells] = r.J
            top += r.rank
        H = scipy.linalg.block_diag(*[hessian(r) for r in phase])
    diag = np.full(n, fill)
    for r in phase:
        diag[r.cells] = r.lam
    return Coupling(bias, J=J, H=H, diag=diag)
