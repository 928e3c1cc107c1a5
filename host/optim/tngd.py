"""Thermodynamic Natural Gradient Descent: the natural-gradient solve done by the device.

Each iteration uploads the bias ∇ℓ and the curvature G + λI — low-rank as (U, I) with G = UᵀU
(or (J, H) with G = JᵀHJ), so the N×N matrix is never formed, or dense for small models —,
lets the device relax for analog time t under

    dg̃ = −((G + λI) g̃ − ∇ℓ) dt + sqrt(2κ) dW,

and reads g̃ back (the instantaneous state, or the accumulator's mean over the run); then
θ ← θ − η g̃ (Donatella et al. 2024). The device is not reset between iterations (warm start:
g̃ starts from the previous estimate). With ``t_delay`` > 0 the device keeps running on the
previous curvature for t_d while the host computes the next gradient (on the emulator that
run happens on the daemon's thread, so host and device really overlap); the next upload waits
for it, as the hardware would. Upload, commit, run, wait and read-out are one packet.
"""
from __future__ import annotations

import time
from typing import Any, Generator

import numpy as np

from host.optim.backend.drift import DRIFT_TOLERANCE, watch, watch_init
from host.optim.backend.packet import backend_for
from host.optim.backend.requests import Relax
from host.optim.backend.scaling import check_stability, hysteresis, pow2_above
from host.optim.checks import check_choice, check_count
from host.optim.ngd import natural_solve
from host.optim.schedules import Schedule
from host.optim.transform import Transform, chain, scale_by_learning_rate, with_device

STARTS = {"warm": "warm", "zero": "zero", "grad": "given"}


def uploaded_curvature(curvature: Any, lam: float, form: str, upload: str = "factor") -> dict:
    """The coupling G + λI as a Relax request takes it. 'factor' uploads (U, I) with G = UᵀU:
    quantisation and mismatch of U's entries keep the coupling positive semi-definite, whereas
    rounding the entries of a singular H (the softmax Hessian has a zero eigenvalue) can make it
    indefinite; 'hessian' uploads (J, H) as the TNGD paper writes it; 'dense' G + λI itself."""
    if form == "dense":
        F = curvature.dense()
        F[np.diag_indices_from(F)] += lam
        return {"dense": F}
    if upload == "factor":
        return {"J": curvature.sqrt()}
    J, H = curvature.factors()
    return {"J": J, "H": H}


def tngd_direction(device: Any, *, lam: float, t: float, t_delay: float, kappa: float, readout: str,
                   form: str, init: str, stability: float | None, upload: str, drift_check: int,
                   scale: str, fidelity_every: int, headroom: float = 0.5) -> Transform:
    """u ← g̃ ≈ (G + λI)⁻¹ u, solved by the device (see the module docstring; the arguments are
    ``tngd``'s)."""
    if device is None or not hasattr(device, "vmax"):
        raise ValueError(f"TNGD runs on a device: give one (host.connect(url)), got {device!r}")
    check_choice("readout", readout, ("state", "mean"))
    check_choice("init", init, tuple(STARTS))
    check_choice("upload", upload, ("factor", "hessian"))
    check_choice("scale", scale, ("range", "norm"))
    check_choice("form", form, ("lowrank", "dense"))
    check_count("fidelity_every", fidelity_every)
    check_count("drift_check", drift_check)
    for name, value, strict in (("lam", lam, True), ("t", t, True), ("t_delay", t_delay, False),
                                ("kappa", kappa, False)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and (value > 0 if strict else value >= 0)):
            raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} 0, got {value!r}")
    check_stability(stability)
    room = headroom * device.vmax

    def init_state(params: np.ndarray) -> dict:
        return {"scale": 0.0, "last": np.zeros(np.size(params)), "warm": 0, "grad_norm": 0.0,
                **watch_init(drift_check)}

    # the scale s: the device solves for g̃/s. |g̃/s| ≤ ‖∇ℓ‖/(λ s) always, so that bound keeps it
    # inside the rails; but it is loose by the ratio of a vector's 2-norm to its largest entry
    # (tens, for thousands of cells). Once there is a previous solution, its largest entry
    # (scaled by the change in ‖∇ℓ‖) sets s instead ('range'); a saturated run is retried larger.
    def choose_scale(grad: np.ndarray, state: dict) -> float:
        norm = float(np.linalg.norm(grad))
        need = norm / (lam * room)
        if scale == "range" and state["warm"] and state["grad_norm"] > 0:
            ranged = float(np.max(np.abs(state["last"]))) * norm / state["grad_norm"]
            need = min(need, ranged / room)
        # (the range estimate tracks the solution, so it may fall back sooner than the bound)
        return hysteresis(pow2_above(need), state["scale"] or None, 4 if scale == "range" else 64)

    def steps(grad: np.ndarray, state: dict, params: np.ndarray, *, curvature: Any, step: int = 0,
              info: dict | None = None, **extra: Any) -> Generator:
        t0 = time.perf_counter()
        coupling = uploaded_curvature(curvature, lam, form, upload)
        digital = time.perf_counter() - t0
        watched = watch(backend_for(device), state, drift_check, DRIFT_TOLERANCE * lam * room)
        start = STARTS[init]
        initial = grad if start == "given" else (state["last"] if state["warm"] else None)
        request = Relax(slice(0, grad.size), grad, lam, **coupling, kappa=kappa, t=t, start=start,
                        initial=initial, readout=readout, scale=choose_scale(grad, state),
                        stability=stability, t_delay=t_delay)
        (result,) = yield [request]
        d = result.value
        if info is not None:
            info.update(curvature_time_s=digital, scale=result.scale, rank=request.rank, t_delay=t_delay)
            if fidelity_every and step % fidelity_every == 0:
                # ‖d − d*‖/‖d*‖ against the exact solve: how far the device's answer is from
                # what the algorithm asked, whatever the loss then does
                exact = natural_solve(curvature, lam, grad, "woodbury")
                info["direction_error"] = float(np.linalg.norm(d - exact) / max(np.linalg.norm(exact), 1e-300))
        return d, {**state, **watched, "scale": result.kept, "last": d, "warm": 1,
                   "grad_norm": float(np.linalg.norm(grad))}

    return with_device(init_state, steps, device)


def tngd(device: Any, lr: float | Schedule = 0.01, lam: float = 0.01, t: float = 50.0, t_delay: float = 0.0,
         kappa: float = 0.0, readout: str = "state", form: str = "lowrank", init: str = "warm",
         stability: float | None = 0.5, upload: str = "factor", drift_check: int = 8, scale: str = "range",
         fidelity_every: int = 0) -> Transform:
    """Thermodynamic natural gradient descent (the device solves the damped GGN system):

        θ ← θ − η g̃,   g̃ = the device's state after t under dg̃ = −((G + λI)g̃ − ∇ℓ)dt + √(2κ)dW

    Args:
        lr: step size η
        lam: damping λ of G + λI
        t: analog time per iteration (τ0)
        t_delay: delay t_d: the device runs on the old curvature while the host computes
        kappa: noise κ of the g̃ dynamics (the TNGD paper's; the device runs at κ/s²)
        readout: read-out: 'state' (instantaneous) or 'mean' (accumulator over t)
        form: curvature upload: 'lowrank' (J, H, λ) or 'dense' (G + λI)
        init: device state at each iteration: 'warm' (the TNGD paper's), 'zero' or 'grad'
        stability: emulator fidelity, in [0.0001, 0.5]: substep = stability / stiffness bound
        upload: low-rank upload: 'factor' (U, I) with G = UᵀU, positive semi-definite whatever the
            converters do; 'hessian' (J, H) as the TNGD paper writes it
        drift_check: steps between the device's drift checks (recalibrating when the residual offset
            reaches a hundredth of the signal, δ/λ vs 0.5·VMAX; adapts 1x-8x; 0 = never)
        scale: bias scale: 'range' (the last solution's largest entry fills the rails) or 'norm'
            (the bound ‖∇ℓ‖/λ: safe, but leaves most of the range unused)
        fidelity_every: every this many steps, also solve (G + λI)⁻¹∇ℓ digitally and log the
            device's relative error as direction_error (0 = never)
    """
    return chain(tngd_direction(device, lam=lam, t=t, t_delay=t_delay, kappa=kappa, readout=readout, form=form,
                                init=init, stability=stability, upload=upload, drift_check=drift_check,
                                scale=scale, fidelity_every=fidelity_every), scale_by_learning_rate(lr))
