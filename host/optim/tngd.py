"""Thermodynamic Natural Gradient Descent: the natural-gradient solve done by the device.

Each iteration uploads the bias ∇ℓ and the curvature G + λI — low-rank as (J, H, λ) with
G = Jᵀ H J, so the N×N matrix is never formed, or dense for small models — commits, lets the
device relax for analog time t under

    dg̃ = −((G + λI) g̃ − ∇ℓ) dt + sqrt(2κ) dW,

and reads g̃ back (instantaneous state, or the accumulator mean over the t window). Donatella et
al. 2024. The device is not reset between iterations (warm start: g̃ starts from the previous
estimate). With ``t_delay`` > 0 the device keeps running on the previous curvature for t_d while
the host computes the next gradient — on the emulator that run happens on the daemon's thread,
so host and device really overlap; the next upload waits for it to finish, as the hardware
would. Upload, commit, run, wait and read-out are ONE packet per iteration.
"""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from host.errors import DeviceSaturated


class CurvatureSaturates(RuntimeError):
    """The device kept hitting its rails even at the smallest signal scale."""


J_FULL_SCALE_MAX = 4096.0


def _within_full_scale(J: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JᵀHJ = (J/c)ᵀ(c²H)(J/c): move a power of two c from J into H when J's entries grow
    toward the converters' full-scale limit (65536), as they do late in training."""
    m = float(np.max(np.abs(J), initial=0.0))
    if m <= J_FULL_SCALE_MAX:
        return J, H
    c = 2.0 ** math.ceil(math.log2(m / J_FULL_SCALE_MAX))
    return J / c, H * (c * c)


def _ggn_sqrt(objective: Any, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """U with G = UᵀU: the objective's own square root, or U = (Q√w)ᵀJ from (J, H) with
    H = Q diag(w) Qᵀ (H is PSD; its zero and round-off-negative eigenvalues are dropped)."""
    if hasattr(objective, "ggn_sqrt"):
        return objective.ggn_sqrt(theta, X, y)
    J, H = objective.ggn_factors(theta, X, y)
    w, Q = np.linalg.eigh(0.5 * (H + H.T))
    keep = w > 1e-12 * max(float(np.max(np.abs(w), initial=0.0)), 1e-300)
    return (Q[:, keep] * np.sqrt(w[keep])).T @ J


class TNGDDirection:
    READOUTS = ("state", "mean")
    INITS = ("warm", "zero", "grad")
    name = "tngd"

    UPLOADS = ("factor", "hessian")
    SCALES = ("range", "norm")

    def __init__(self, device: Any, lam: float = 0.01, t: float = 50.0, t_delay: float = 0.0,
                 kappa: float = 0.0, readout: str = "state", form: str = "lowrank",
                 init: str = "warm", stability: float | None = None, headroom: float = 0.5,
                 upload: str = "factor", drift_check: int = 8, scale: str = "range",
                 fidelity_every: int = 0) -> None:
        if readout not in self.READOUTS:
            raise ValueError(f"readout must be one of {self.READOUTS}, got {readout!r}")
        if init not in self.INITS:
            raise ValueError(f"init must be one of {self.INITS}, got {init!r}")
        if upload not in self.UPLOADS:
            raise ValueError(f"upload must be one of {self.UPLOADS}, got {upload!r}")
        if scale not in self.SCALES:
            raise ValueError(f"scale must be one of {self.SCALES}, got {scale!r}")
        if not (isinstance(fidelity_every, int) and fidelity_every >= 0):
            raise ValueError(f"fidelity_every must be an int >= 0 (steps; 0 = never), got "
                             f"{fidelity_every!r}")
        if not (isinstance(drift_check, int) and drift_check >= 0):
            raise ValueError(f"drift_check must be an int >= 0 (steps; 0 = never), got {drift_check!r}")
        if form not in ("lowrank", "dense"):
            raise ValueError(f"form must be 'lowrank' or 'dense', got {form!r}")
        for name, value, ok in (("lam", lam, lam > 0), ("t", t, t > 0), ("t_delay", t_delay, t_delay >= 0),
                                ("kappa", kappa, kappa >= 0)):
            if not (np.isfinite(value) and ok):
                raise ValueError(f"{name} must be a finite number {'> 0' if name in ('lam', 't') else '>= 0'}, "
                                 f"got {value}")
        if stability is not None and not 1e-4 <= stability <= 0.5:
            raise ValueError(f"stability must be in [0.0001, 0.5] (substep × stiffness bound), got {stability}")
        self.dev, self.lam, self.t, self.t_delay, self.kappa = device, lam, t, t_delay, kappa
        self.readout, self.form, self.init_mode, self.stability = readout, form, init, stability
        self.headroom = headroom  # the bound on |g̃| uses this fraction of the rails
        self.upload = upload
        self.scale_mode = scale
        self.fidelity_every = fidelity_every
        self.drift_check = drift_check
        self._check_every = drift_check
        self._since_check = 0
        self._grad_norm = 0.0
        self.scale: float | None = None
        self.info: dict[str, float] = {}
        self._diag_loaded = False
        self._delay_running = False
        self._last: np.ndarray | None = None
        self._restore_warm_start = False

    def init(self, state: Any) -> None:
        dev = self.dev
        if state.theta.size > dev.n_cells:
            raise ValueError(f"the model has {state.theta.size} parameters but the device only "
                             f"{dev.n_cells} cells (one cell per parameter)")
        dev.stop()
        # κ is the paper's noise on g̃; the device sees g̃/s, so its temperature is κ/s² (set
        # with each new scale, in the iteration's packet)
        dev.configure(mode="overdamped", temperature=0.0, mobility=1.0, noise_gain=1.0,
                      stability=self.stability)
        self._temperature = 0.0  # what TEMPERATURE holds now
        dev.clear_saturation()
        dev.reset_state()

    # the scale s: the device solves for g̃/s. |g̃/s| ≤ ‖∇ℓ‖/(λ s) always, so that bound keeps it
    # inside the rails; but it is loose by the ratio of a vector's 2-norm to its largest entry
    # (tens, for thousands of cells), and every volt of range left unused makes the cells'
    # offsets and converter steps that much larger against the signal. Once there is a previous
    # solution, its largest entry (scaled by the change in ‖∇ℓ‖) sets s instead; a saturated
    # run (the solution grew) is retried at a larger s.
    def _choose_scale(self, grad: np.ndarray) -> float:
        norm = float(np.linalg.norm(grad))
        need = norm / (self.lam * self.headroom * self.dev.vmax)
        if self.scale_mode == "range" and self._last is not None and self._grad_norm > 0:
            ranged = float(np.max(np.abs(self._last))) * norm / self._grad_norm
            need = min(need, ranged / (self.headroom * self.dev.vmax))
        need = 2.0 ** math.ceil(math.log2(max(need, 2.0**-30)))
        # (the range estimate tracks the solution, so it may fall back sooner than the bound)
        slack = 4 if self.scale_mode == "range" else 64
        if self.scale is None or need > self.scale or need < self.scale / slack:
            return need  # hysteresis: keep the scale (and the warm start) unless far off
        return self.scale

    def __call__(self, state: Any, X: np.ndarray, y: np.ndarray, objective: Any, grad: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        if self.form == "lowrank" and self.upload == "factor":
            # G = UᵀU uploaded as (U, I): quantisation and mismatch of U's entries and of H's
            # diagonal keep the coupling positive semi-definite, whereas rounding the entries of
            # a singular H (the softmax Hessian has a zero eigenvalue) can make it indefinite
            J = _ggn_sqrt(objective, state.theta, X, y)
            H = np.eye(J.shape[0])
            coupling = None
        elif self.form == "lowrank":
            J, H = objective.ggn_factors(state.theta, X, y)
            coupling = None
        else:
            coupling = objective.ggn_dense(state.theta, X, y)
            coupling[np.diag_indices_from(coupling)] += self.lam
        digital = time.perf_counter() - t0
        dt0 = time.perf_counter()  # device calls from here on (a drift check's included)
        calibration_time = self._keep_calibrated()  # (its few words are not the step's traffic)
        sent0, recv0 = self.dev.stats.bytes_sent, self.dev.stats.bytes_received
        for attempt in range(4):
            scale = self._choose_scale(grad) if attempt == 0 else self.scale * 16
            try:
                d = self._device_solve(state, grad, scale, coupling, J if coupling is None else None,
                                       H if coupling is None else None)
                break
            except DeviceSaturated:
                self.scale = scale
                self.dev.clear_saturation()
                self.dev.reset_state()
                self._last = None
                state.slots.pop("tngd_last", None)
        else:
            raise CurvatureSaturates(
                f"the device saturated at step {state.step} even with the bias scaled down by "
                f"{self.scale:g}: the uploaded curvature is not positive definite or too stiff")
        self.info = {
            "device_time": self.t + self.t_delay + calibration_time,
            "bytes_sent": self.dev.stats.bytes_sent - sent0,
            "bytes_received": self.dev.stats.bytes_received - recv0,
            "curvature_time_s": digital,
            "device_call_s": time.perf_counter() - dt0,
            "scale": self.scale or 0.0,
            "rank": 0 if coupling is not None else J.shape[0],
            "calibration_time": calibration_time,
        }
        self._grad_norm = float(np.linalg.norm(grad))
        if self.fidelity_every and state.step % self.fidelity_every == 0:
            self.info["direction_error"] = self._direction_error(d, state, X, y, objective, grad)
        return d

    def _direction_error(self, d: np.ndarray, state: Any, X: np.ndarray, y: np.ndarray,
                         objective: Any, grad: np.ndarray) -> float:
        """‖d − d*‖/‖d*‖ against the exact solve d* = (G + λI)⁻¹∇ℓ (Woodbury, digital): how far
        the device's answer is from what the algorithm asked, whatever the loss then does."""
        from host.optim.directions import NaturalGradientDirection
        exact = NaturalGradientDirection(self.lam, "woodbury")(state, X, y, objective, grad)
        return float(np.linalg.norm(d - exact) / max(np.linalg.norm(exact), 1e-300))
    # An offset δ left in a cell moves g̃/s by up to δ/λ in G's null space; against the largest
    # entry, headroom·VMAX, that is a relative error δ/(λ·headroom·VMAX). The device's own
    # CAL_TOLERANCE is a fixed voltage; TNGD recalibrates when the residual offset reaches this
    # fraction of its signal instead (λ = 0.01: 5·10⁻⁴ V/τ0), so a chip that drifts costs a
    # calibration every few thousand τ0, not every few steps.
    DRIFT_TOLERANCE = 0.01

    def _keep_calibrated(self) -> float:
        """Offsets drift: every ``drift_check`` steps (adapting between 1 and 8× that) run the
        device's drift check, and recalibrate when the residual offset exceeds DRIFT_TOLERANCE
        of the signal. Both reset the device's state, so the warm start is written back.
        Returns the device time spent (τ0)."""
        if not self.drift_check or not self.dev.calibration_capable:
            return 0.0
        self._since_check += 1
        if self._since_check < self._check_every:
            return 0.0
        self._since_check = 0
        if self._delay_running:  # the delayed run ends first (a check needs the core to itself)
            self.dev.wait()
            self._delay_running = False
        report = self.dev.check_calibration()
        spent = report.device_time
        tolerance = self.DRIFT_TOLERANCE * self.lam * self.headroom * self.dev.vmax
        if report.residual < tolerance / 2:
            self._check_every = min(self._check_every * 2, 8 * self.drift_check)
        elif report.residual > tolerance:
            spent += self.dev.calibrate().device_time
            self._check_every = max(1, self._check_every // 2)
        self._restore_warm_start = True
        return spent

    def _device_solve(self, state: Any, grad: np.ndarray, scale: float, coupling: np.ndarray | None,
                      J: np.ndarray | None, H: np.ndarray | None) -> np.ndarray:
        dev = self.dev
        if self._last is None and "tngd_last" in state.slots:  # resumed: restore the warm start
            self._last = state.slots["tngd_last"]
            self.scale = None
        rescale = self._last is not None and (scale != self.scale or self._restore_warm_start)
        self._restore_warm_start = False
        with dev.batch():
            if self._delay_running:
                dev.wait()  # the t_d run on the previous curvature ends before the new upload
            temperature = self.kappa / scale**2
            if temperature != self._temperature:  # a new scale (or, in subclasses, a new κ)
                dev.configure(temperature=temperature)
            if coupling is not None:
                dev.load_coupling(coupling)
            else:
                dev.load_lowrank(*_within_full_scale(J, H), None if self._diag_loaded else self.lam)
            dev.load_bias(grad / scale)
            dev.commit()
            if self.init_mode == "zero":
                dev.reset_state()
            elif self.init_mode == "grad":
                dev.set_state(np.clip(grad / scale, -0.9 * dev.vmax, 0.9 * dev.vmax))
            elif rescale:  # keep the warm start when the scale changes
                dev.set_state(np.clip(self._last / scale, -0.9 * dev.vmax, 0.9 * dev.vmax))
            dev.run(self.t)
            out = dev.mean() if self.readout == "mean" else dev.state()
        self._diag_loaded = coupling is None
        self.scale, self._temperature = scale, temperature
        d = out.value * scale
        self._last = state.slots["tngd_last"] = d
        self._delay_running = False
        if self.t_delay > 0:
            dev.run(self.t_delay, wait=False)
            self._delay_running = True
        return d
