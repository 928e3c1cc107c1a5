"""What an update may ask the device to do in one step, in the update's own units.

The backend divides every signal by the request's scale s (a power of two that keeps it inside
the rails), runs the cells, and multiplies what it reads back by s; when a run saturates it
retries the whole packet with every scale ×16, and a result says which scale it ran at.

``Relax``: overdamped cells with coupling F = JᵀHJ + λI (or a dense F) and bias b relax for
time t toward N(F⁻¹b, κF⁻¹); the result is their state at the end, or its mean over the run.
``Oscillate``: uncoupled underdamped cells whose loop current v obeys
dv = −Γv dt + sqrt(q) dW from v0 for time t (an exact Ornstein–Uhlenbeck step of a momentum);
the result is v at the end — or a refusal, when the converters cannot program Γ or the noise
beside the packet's other requests, and the requester then takes the same step on the host.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Relax:
    cells: slice
    bias: np.ndarray                    # b
    lam: float                          # λ, on the diagonal
    J: np.ndarray | None = None         # (r × n): F = JᵀHJ + λI; None with ``dense``
    H: np.ndarray | None = None         # (r × r); None: the identity
    dense: np.ndarray | None = None     # F itself (n × n, λ included)
    kappa: float = 0.0                  # noise temperature of x
    t: float = 50.0                     # run time (τ0)
    start: str = "warm"                 # 'warm' (continue; ``initial`` written if the cells lost
                                        # it, zero without one), 'zero', or 'given' (``initial``)
    initial: np.ndarray | None = None
    readout: str = "state"              # 'state' (at the end) or 'mean' (over the run)
    scale: float = 1.0
    stability: float | None = None      # emulator fidelity (None: leave as it is)
    t_delay: float = 0.0                # keep running this long after the read-out

    @property
    def rank(self) -> int:
        return 0 if self.J is None else self.J.shape[0]


@dataclass(frozen=True)
class Oscillate:
    cells: slice
    friction: float                     # Γ
    noise: float                        # q = 2κΓ, in the units of v0
    v0: np.ndarray
    t: float
    scale: float = 1.0
    stability: float | None = None

    @property
    def kappa(self) -> float:
        """The temperature κ = q/(2Γ) the cells run at (0 without friction)."""
        return self.noise / (2.0 * self.friction) if self.friction > 0 else 0.0


def moved(request: Any, offset: int) -> Any:
    """The request for the same cells ``offset`` further on (a group inside the whole θ)."""
    c = request.cells
    return dataclasses.replace(request, cells=slice(c.start + offset, c.stop + offset))


@dataclass(frozen=True)
class Result:
    value: np.ndarray | None            # in the request's units (None: refused)
    scale: float                        # the scale it ran at (s·16^retries; 0 when refused)
    kept: float = 0.0                   # the scale to start from next step: the one asked for

    # A retry's larger scale answers one packet's saturation; kept for good it would cost every
    # later read-out four bits of resolution (the hysteresis keeps a scale up to 64× too large).

    @property
    def ran(self) -> bool:
        return self.value is not None
