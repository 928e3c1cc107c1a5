"""TNGD-Adam: the device's natural-gradient estimate fed to Adam, as in the TNGD paper."""
from __future__ import annotations

from typing import Any

from host.optim.adam import scale_by_adam
from host.optim.schedules import Schedule
from host.optim.signature import default
from host.optim.tngd import tngd, tngd_direction
from host.optim.transform import Transform, chain, scale_by_learning_rate


def tngd_adam(device: Any, lr: float | Schedule = 1e-3, lam: float = 1.0, t: float = default(tngd, "t"),
              t_delay: float = default(tngd, "t_delay"), kappa: float = default(tngd, "kappa"),
              readout: str = default(tngd, "readout"), form: str = default(tngd, "form"),
              init: str = default(tngd, "init"), stability: float | None = default(tngd, "stability"),
              b1: float = 0.0, b2: float = 0.0, upload: str = default(tngd, "upload"),
              drift_check: int = default(tngd, "drift_check"), scale: str = default(tngd, "scale"),
              fidelity_every: int = default(tngd, "fidelity_every")) -> Transform:
    """g̃ from the device (see ``tngd``) fed to Adam; β1 = β2 = 0 as in the TNGD paper
    (Donatella et al. 2024), so the step is η·g̃/(|g̃| + ε):

        θ ← θ − η m̂/(√v̂ + ε),   m, v the moments of g̃

    Args:
        lr: step size η (the TNGD paper: 1e-3)
        lam: damping λ of G + λI (the TNGD paper: 1)
        b1: Adam β1 (the TNGD paper: 0)
        b2: Adam β2 (the TNGD paper: 0)

    The other arguments are ``tngd``'s.
    """
    return chain(tngd_direction(device, lam=lam, t=t, t_delay=t_delay, kappa=kappa, readout=readout, form=form,
                                init=init, stability=stability, upload=upload, drift_check=drift_check,
                                scale=scale, fidelity_every=fidelity_every),
                 scale_by_adam(b1, b2), scale_by_learning_rate(lr))


tngd_adam.help_from = tngd
