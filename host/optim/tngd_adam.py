"""TNGD-Adam: the device's natural-gradient estimate fed to Adam, as in the TNGD paper."""
from __future__ import annotations

from typing import Any

from host.optim.adam import scale_by_adam
from host.optim.schedules import Schedule
from host.optim.tngd import tngd, tngd_direction
from host.optim.transform import Transform, chain, scale_by_learning_rate


def tngd_adam(device: Any, lr: float | Schedule = 1e-3, lam: float = 1.0, t: float = 50.0,
              t_delay: float = 0.0, kappa: float = 0.0, readout: str = "state", form: str = "lowrank",
              init: str = "warm", stability: float | None = 0.5, b1: float = 0.0, b2: float = 0.0,
              upload: str = "factor", drift_check: int = 8, scale: str = "range",
              fidelity_every: int = 0) -> Transform:
    """g̃ from the device (see ``tngd``) fed to Adam; β1 = β2 = 0 as in the paper, so the step is
    η·g̃/(|g̃| + ε):

        θ ← θ − η m̂/(√v̂ + ε),   m, v the moments of g̃

    Args:
        lr: step size η
        lam: damping λ of G + λI
        b1: Adam β1 (paper: 0)
        b2: Adam β2 (paper: 0)

    The other arguments are ``tngd``'s.
    """
    return chain(tngd_direction(device, lam, t, t_delay, kappa, readout, form, init, stability, upload,
                                drift_check, scale, fidelity_every),
                 scale_by_adam(b1, b2), scale_by_learning_rate(lr))


tngd_adam.help_from = tngd
