"""Optimizers on one small interface (``init`` / ``step``), digital and device-assisted.

``ALGORITHMS`` maps the names used by ``thermohil train --algo`` to a builder and its
hyperparameters (name -> (type, default, help)); the CLI exposes each hyperparameter as an
option and refuses options an algorithm does not take.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from host.optim.base import (NonFiniteError, Optimizer, State, as_schedule, cosine_decay,
                             exponential_decay)
from host.optim.composed import Composed
from host.optim.directions import GradientDirection, NaturalGradientDirection
from host.optim.rules import AdamRule, SGDRule
from host.optim.tngd import CurvatureSaturates, TNGDDirection
from host.optim.langevin import (AdLScheme, LangevinScheme, OverdampedScheme, Partition,
                                 PartitionedLangevin, adl, adlala, lala, lol, overdamped, partitioned)
from host.optim.langevin import presets as _langevin_presets


def sgd(lr: float = 0.05, momentum: float = 0.0) -> Optimizer:
    return Composed("sgd", GradientDirection(), SGDRule(lr, momentum))


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    return Composed("adam", GradientDirection(), AdamRule(lr, b1, b2, eps))


def ngd(lr: float = 0.01, lam: float = 0.01, solver: str = "woodbury", cg_iters: int = 50) -> Optimizer:
    return Composed(f"ngd-{solver}", NaturalGradientDirection(lam, solver, cg_iters), SGDRule(lr))


def tngd(device: Any, lr: float = 0.01, lam: float = 0.01, t: float = 50.0, t_delay: float = 0.0,
         kappa: float = 0.0, readout: str = "state", form: str = "lowrank", init: str = "warm",
         stability: float | None = None, upload: str = "factor", drift_check: int = 8,
         scale: str = "range", fidelity_every: int = 0) -> Optimizer:
    direction = TNGDDirection(device, lam, t, t_delay, kappa, readout, form, init, stability,
                              upload=upload, drift_check=drift_check, scale=scale,
                              fidelity_every=fidelity_every)
    return Composed("tngd", direction, SGDRule(lr), uses_device=True)


def tngd_adam(device: Any, lr: float = 1e-3, lam: float = 1.0, t: float = 50.0, t_delay: float = 0.0,
              kappa: float = 0.0, readout: str = "state", form: str = "lowrank", init: str = "warm",
              stability: float | None = None, b1: float = 0.0, b2: float = 0.0,
              upload: str = "factor", drift_check: int = 8, scale: str = "range",
              fidelity_every: int = 0) -> Optimizer:
    """g̃ fed to Adam; β1 = β2 = 0 as in the paper (Adam then takes η·g̃/|g̃| steps)."""
    direction = TNGDDirection(device, lam, t, t_delay, kappa, readout, form, init, stability,
                              upload=upload, drift_check=drift_check, scale=scale,
                              fidelity_every=fidelity_every)
    return Composed("tngd-adam", direction, AdamRule(lr, b1, b2), uses_device=True)


@dataclass
class AlgorithmSpec:
    name: str
    build: Callable[..., Optimizer]
    params: dict[str, tuple[type, Any, str]]
    uses_device: bool = False
    doc: str = ""
    extra: dict = field(default_factory=dict)


_TNGD_PARAMS = {
    "lam": (float, None, "damping λ of G + λI"),
    "t": (float, 50.0, "analog time per iteration (τ0)"),
    "t_delay": (float, 0.0, "delay t_d: the device runs on the old curvature while the host computes"),
    "kappa": (float, 0.0, "noise κ of the g̃ dynamics (the paper's; the device runs at κ/s²)"),
    "readout": (str, "state", "read-out: 'state' (instantaneous) or 'mean' (accumulator over t)"),
    "form": (str, "lowrank", "curvature upload: 'lowrank' (J, H, λ) or 'dense' (G + λI)"),
    "init": (str, "warm", "device state at each iteration: 'warm' (paper), 'zero' or 'grad'"),
    "stability": (float, 0.5, "emulator fidelity, in [0.0001, 0.5]: substep = stability / stiffness bound"),
    "upload": (str, "factor", "low-rank upload: 'factor' (U, I) with G = UᵀU, positive semi-definite "
                              "whatever the converters do; 'hessian' (J, H) as the paper writes it"),
    "drift_check": (int, 8, "steps between the device's drift checks (recalibrating when the residual "
                            "offset reaches a hundredth of the signal, δ/λ vs 0.5·VMAX; adapts 1x-8x; 0 = never)"),
    "fidelity_every": (int, 0, "every this many steps, also solve (G + λI)⁻¹∇ℓ digitally and log "
                                "the device's relative error as direction_error (0 = never)"),
    "scale": (str, "range", "bias scale: 'range' (the last solution's largest entry fills the rails) "
                            "or 'norm' (the bound ‖∇ℓ‖/λ: safe, but leaves most of the range unused)"),
}

ALGORITHMS: dict[str, AlgorithmSpec] = {
    "sgd": AlgorithmSpec("sgd", sgd, {"lr": (float, 0.05, "step size"),
                                      "momentum": (float, 0.0, "heavy-ball momentum")}),
    "adam": AlgorithmSpec("adam", adam, {"lr": (float, 1e-3, "step size"),
                                         "b1": (float, 0.9, "β1"), "b2": (float, 0.999, "β2")}),
    "ngd": AlgorithmSpec("ngd", ngd, {"lr": (float, 0.01, "step size"),
                                      "lam": (float, 0.01, "damping λ"),
                                      "solver": (str, "woodbury", "exact | woodbury | cg"),
                                      "cg_iters": (int, 50, "CG iterations (solver cg)")}),
    "tngd": AlgorithmSpec("tngd", tngd, {"lr": (float, 0.01, "step size η"),
                                         **{**_TNGD_PARAMS, "lam": (float, 0.01, "damping λ")}},
                          uses_device=True),
    "tngd-adam": AlgorithmSpec("tngd-adam", tngd_adam,
                               {"lr": (float, 1e-3, "step size η"),
                                **{**_TNGD_PARAMS, "lam": (float, 1.0, "damping λ")},
                                "b1": (float, 0.0, "Adam β1 (paper: 0)"),
                                "b2": (float, 0.0, "Adam β2 (paper: 0)")}, uses_device=True),
}

# The Langevin family (docs/algorithms.md "The Langevin family"): presets of one
# partitioned integrator, digital. Defaults: the authors' AdLaLa spiral settings.
_H = {"h": (float, 0.25, "step size h (the same for every layer)")}
_LANGEVIN_FAMILY = {
    "langevin": ("Langevin (BAOAB) on every parameter", _langevin_presets.langevin,
                 {**_H, "gamma": (float, 0.1, "friction γ"),
                  "tau": (float, 1e-4, "temperature τ")}),
    "overdamped": ("overdamped Langevin (BAOAB limit) on every parameter", overdamped,
                   {**_H, "tau": (float, 1e-4, "temperature τ")}),
    "adl": ("Adaptive Langevin on every layer, one thermostat ξ per layer", adl,
            {**_H, "tau": (float, 1e-4, "temperature τ"),
             "sigma_a": (float, 0.01, "AdL noise σ_A"),
             "eps": (float, 0.05, "AdL thermostat coupling ε"),
             "xi0": (float, 1e-3, "initial thermostat ξ0")}),
    "adlala": ("AdL on the first layer(s), Langevin on the rest", adlala,
               {**_H, "tau1": (float, 1e-4, "temperature τ1 of the AdL layer(s)"),
                "tau2": (float, 1e-4, "temperature τ2 of the Langevin layers"),
                "gamma": (float, 0.1, "friction γ"),
                "sigma_a": (float, 0.01, "AdL noise σ_A"),
                "eps": (float, 0.05, "AdL thermostat coupling ε"),
                "xi0": (float, 1e-3, "initial thermostat ξ0"),
                "split": (int, 1, "how many leading layers run the first scheme (paper: 1)")}),
    "lol": ("Langevin on the first layer(s), overdamped Langevin on the rest", lol,
            {**_H, "tau1": (float, 1e-4, "temperature τ1 of the Langevin layer(s)"),
             "tau2": (float, 1e-4, "temperature τ2 of the overdamped layers"),
             "gamma": (float, 0.1, "friction γ"),
             "split": (int, 1, "how many leading layers run the first scheme (paper: 1)")}),
    "lala": ("Langevin on every layer with its own γ_i, τ_i", lala,
             {**_H, "gammas": (str, "0.1", "per-layer frictions γ_i, comma-separated (one value: all)"),
              "taus": (str, "1e-4", "per-layer temperatures τ_i, comma-separated (one value: all)")}),
    "partitioned": ("any partition of the layers into langevin/overdamped/adl/natural groups", partitioned,
                    {**_H, "partition": (str, "0:adl, *:langevin",
                                         "LAYERS:SCHEME[(name=value,...)] entries, e.g. "
                                         "'0:adl(tau=1e-3), 1-2:overdamped, *:langevin' or "
                                         "'0:natural(lam=1), *:langevin'"),
                     "tau": (float, 1e-4, "temperature τ"),
                     "gamma": (float, 0.1, "friction γ"),
                     "sigma_a": (float, 0.01, "AdL noise σ_A"),
                     "eps": (float, 0.05, "AdL thermostat coupling ε"),
                     "xi0": (float, 1e-3, "initial thermostat ξ0"),
                     "lam": (float, 0.1, "damping λ of a natural group's F = G_gg + λI")}),
}
for _name, (_doc, _build, _params) in _LANGEVIN_FAMILY.items():
    ALGORITHMS[_name] = AlgorithmSpec(_name, _build, _params, uses_device=False, doc=_doc)

__all__ = ["Optimizer", "State", "NonFiniteError", "CurvatureSaturates", "ALGORITHMS",
           "AlgorithmSpec", "sgd", "adam", "ngd", "tngd", "tngd_adam", "as_schedule",
           "exponential_decay", "cosine_decay", "Composed", "GradientDirection",
           "NaturalGradientDirection", "TNGDDirection", "SGDRule", "AdamRule",
           "PartitionedLangevin", "Partition", "LangevinScheme", "OverdampedScheme", "AdLScheme",
           "overdamped", "adl", "adlala", "lol", "lala", "partitioned"]

# Device-assisted Langevin family (docs/algorithms.md "Device-assisted variants"):
# the device's cells carry the momenta and do the O-step (AdL: friction ξ and noise σ_A)
# physically; same hyperparameters as the digital twins, plus the emulator fidelity knob.
from host.optim.langevin import device as _langevin_device  # noqa: E402
from host.optim.langevin.natural import natural_langevin  # noqa: E402

_DEVICE_STABILITY = {"stability": (float, 0.002, "emulator fidelity: substep = stability / largest "
                                                 "friction (EM bias of the O-step ≈ stability/2)")}
_NATURAL_GROUP_DEVICE = {
    "natural_t": (float, 50.0, "analog time of a natural group's sample per step (τ0)"),
    "natural_stability": (float, 0.1, "emulator fidelity of the natural groups' run")}
for _name, _build in (("langevin", _langevin_device.langevin_device), ("adl", _langevin_device.adl_device),
                      ("adlala", _langevin_device.adlala_device), ("lol", _langevin_device.lol_device),
                      ("lala", _langevin_device.lala_device),
                      ("partitioned", _langevin_device.partitioned_device)):
    _doc, _digital, _params = _LANGEVIN_FAMILY[_name]
    _extra = _NATURAL_GROUP_DEVICE if _name == "partitioned" else {}
    ALGORITHMS[f"{_name}-device"] = AlgorithmSpec(
        f"{_name}-device", _build, {**_params, **_DEVICE_STABILITY, **_extra}, uses_device=True,
        doc=f"{_doc}; momenta in the device's cells (O-step, AdL friction and noise done physically)")

ALGORITHMS["natural-langevin"] = AlgorithmSpec(
    "natural-langevin", natural_langevin,
    {"h": (float, 0.05, "step size h: θ ← θ − h·x"),
     "tau": (float, 1e-4, "temperature τ (device temperature κ = 2τ/h)"),
     "lam": (float, 0.1, "damping λ of F = G + λI"),
     "t": (float, 50.0, "analog time per step (τ0): several times 1/λ_min(F) to decorrelate"),
     "init": (str, "zero", "device state at each step: 'zero' (independent samples) or 'warm'"),
     "form": (str, "lowrank", "curvature upload: 'lowrank' (J, H, λ) or 'dense' (G + λI)"),
     "stability": (float, 0.1, "emulator fidelity: substep = stability / stiffness bound")},
    uses_device=True,
    doc="thermodynamic natural Langevin: one device sample x ~ N(F⁻¹∇ℓ, (2τ/h)F⁻¹) per step, θ ← θ − h x")
