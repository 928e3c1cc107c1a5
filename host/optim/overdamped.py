"""Overdamped Langevin dynamics: the γ → ∞ limit of BAOAB (Leimkuhler–Matthews' "BAOAB limit").

    θ_{n+1} = θ_n − (h²/2) ∇L(θ_n) + (h/2) √τ (R_n + R_{n+1})

R_{n+1} is kept for the next step. Like BAOAB it samples a harmonic potential at temperature τ
with no discretisation bias at any stable h. It stays digital: its only gradient-free part is
the Gaussian R, and an overdamped cell run for h²/2 with the frozen gradient as bias would be an
Euler–Maruyama step (stationary variance τ/(k(1 − h²k/4)), not the exact τ/k).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from host.optim.checks import at, checked_schedule
from host.optim.schedules import Schedule
from host.optim.transform import Transform


def overdamped(h: float | Schedule = 0.25, tau: float | Schedule = 1e-4) -> Transform:
    """Overdamped Langevin (the BAOAB limit):

        θ ← θ − (h²/2) ∇ℓ + (h/2) √τ (R_n + R_{n+1})

    Args:
        h: step size h
        tau: temperature τ
    """
    h_of = checked_schedule("step size h", h, 0.0, True)
    tau_of = checked_schedule("temperature τ", tau, 0.0, False)

    def init(params: np.ndarray) -> dict:
        return {"count": 0, "noise": np.zeros(np.size(params))}

    def update(grad: np.ndarray, state: dict, params: Any, *, rng: np.random.Generator,
               **extra: Any) -> tuple[np.ndarray, dict]:
        n = state["count"]
        hn = at("step size h", h_of, n, 0.0, True)
        t = at("temperature τ", tau_of, n, 0.0, False)
        r_now = rng.standard_normal(grad.size) if n == 0 else state["noise"]     # R_0 at the first step
        r_next = rng.standard_normal(grad.size)
        u = -(0.5 * hn * hn) * grad + (0.5 * hn * math.sqrt(t)) * (r_now + r_next)
        return u, {"count": n + 1, "noise": r_next}

    return Transform(init, update)
