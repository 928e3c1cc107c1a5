"""Device-assisted Langevin family: the device's cells carry the momenta and perform the
friction-and-noise sub-steps physically (docs/algorithms.md, "Device-assisted
variants").

One cell per parameter. A Langevin group's cells are UNDERDAMPED with zero coupling and zero
bias, mobility M = 1, friction Γ_i = γ and temperature κ_i = τ, so their loop current obeys

    dv = −Γ v dt + sqrt(2 κ Γ M) dW,

an Ornstein–Uhlenbeck process whose exact solution over run time h is the O_h sub-step
p ← e^{−γh} p + sqrt((1 − e^{−2γh}) τ) R (stationary variance κM = τ). The host writes p (scaled
by a power of two s per group, so |p/s| stays well inside the rails) into the VELOCITY window,
zeroes x (the rails absorb the current, so x must not reach them), runs h, and reads v back.

An AdL group's cells get friction Γ_i = ξ (the group's thermostat) and temperature
κ_i = σ_A²/(2ξM): then the noise amplitude sqrt(2κΓM) is σ_A, and a run of h/2 performs the
thermostat friction C_{h/2} and the AdL noise D_{h/2} together, exactly (one OU of friction ξ and
noise σ_A). The thermostat update E needs the kinetic energy, which only the host can turn into a
new ξ, so a step with an AdL group is TWO packets, in the digital order
(CD)_{h/2} E_h (CD)_{h/2} (Langevin groups: O_{h/2} twice, which is O_h in law). The one-packet
Strang splitting E_{h/2} (CD)_h E_{h/2} was tried first and is unstable in training: the first E
sees the momenta right after the kick, before any friction, so when the kicks alone carry more
than 2τ per degree of freedom (spiral, τ = 1e-4) ξ grows without bound (87.7 at step 67 740,
against ≈ 9 for the digital twin). A negative (or too small to program) ξ cannot be a friction:
that group's (CD)_{h/2} is done on the host with the same exact OU formula (for ξ < 0 it
amplifies p — the thermostat heating a too-cold group).

Overdamped groups (the BAOAB limit) stay digital. Their only gradient-free ingredient is the
Gaussian R_{n+1} (the device would be a random-number generator, no dynamics), and an overdamped
cell run for h²/2 with the frozen gradient as bias is an Euler–Maruyama step of the overdamped
SDE: stationary variance τ/(k(1 − h²k/4)) instead of the BAOAB limit's exact τ/k. Their cells are
set OVERDAMPED at zero temperature and stay idle.

All groups' O-steps share the packets: every group's first half (A_{h/2}), one packet
(configuration if it changed, COMMIT, RESET_STATE, VELOCITY write, RUN, WAIT, VELOCITY read) — two
with AdL groups, E_h between them — then every group's second half (A_{h/2}).
"""
from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from host.errors import DeviceSaturated
from host.optim.base import Schedule, State
from host.optim.langevin.integrator import Group, PartitionedLangevin
from host.optim.langevin.schemes import (AdLScheme, GroupState, LangevinScheme, NaturalScheme,
                                         OverdampedScheme, Scheme)
from host.optim.langevin.steps import drift_A, thermostat_E
from host.optim.tngd import CurvatureSaturates, _within_full_scale
from protocol.regmap import REGMAP, float_to_q31, q31_full_scale_for

TEMPERATURE_MAX = 100.0     # the TEMPERATURE register's range (V²)
NOISE_GAIN_MAX = 2.0**14    # keep NOISE_GAIN well below its full-scale limit (65536)
SIGMAS = 6.0                # |p/s| + SIGMAS·(thermal size) must stay inside headroom·VMAX
_VELOCITY = REGMAP.windows["VELOCITY"].base


def pow2_above(x: float) -> float:
    """The power of two ≥ x (tiny or zero x: 2^-30), the signal scales' grid."""
    return 2.0 ** math.ceil(math.log2(max(x, 2.0**-30)))


def sample_scale(grad: np.ndarray, kappa: float, lam: float, room: float) -> float:
    """Scale s that keeps a sample of N(F⁻¹∇ℓ, κF⁻¹), F ⪰ λI, within ±room·s:
    |x| ≤ ‖F⁻¹∇ℓ‖ + SIGMAS·sqrt(κ (F⁻¹)_ii) ≤ ‖∇ℓ‖/λ + SIGMAS·sqrt(κ/λ)."""
    return pow2_above((float(np.linalg.norm(grad)) / lam + SIGMAS * math.sqrt(kappa / lam)) / room)


class MomentaSaturate(CurvatureSaturates):
    """The momenta kept reaching the rails even at the smallest signal scale (the chain has
    diverged: lower h). A CurvatureSaturates, so ``host.training`` stops cleanly and keeps the
    last checkpoint."""


def exact_ou(p: np.ndarray, friction: float, noise_rate: float, t: float, rng: np.random.Generator) -> None:
    """dp = −friction·p dt + sqrt(noise_rate) dW solved exactly over t, in place; friction may be
    zero or negative (the variance of the added noise is noise_rate·(1 − e^{−2ft})/(2f))."""
    c = math.exp(-friction * t)
    x = 2.0 * friction * t
    var = noise_rate * t * (-math.expm1(-x) / x if abs(x) > 1e-12 else 1.0 - 0.5 * x)
    p *= c
    if var > 0:
        p += math.sqrt(var) * rng.standard_normal(p.size)


class DevicePartitionedLangevin(PartitionedLangevin):
    """The partitioned integrator with every Langevin and AdL group's O-step (resp. C and D)
    done by the device's cells. Same partition, gradient order, state slots and ``info`` as the
    digital ``PartitionedLangevin``, plus per step ``device_time`` (= h), ``bytes_sent``,
    ``bytes_received``, ``device_call_s``, ``scale`` (the largest group scale) and per group
    ``<group>.scale`` and, for AdL groups, ``<group>.on_host`` (1 when ξ could not be a friction).

    ``stability``: the emulator's substep is stability / (fastest rate) (here the largest
    friction); the EM bias of the device's OU variance is ≈ stability/2 (default 0.002: 0.1 %).
    ``headroom``: |p/s| + 6 thermal widths stay within headroom·VMAX/max(1, h) (x, which
    integrates v over the run, then stays within headroom·VMAX).
    """
    uses_device = True

    def __init__(self, device: Any, h: float | Schedule, partition: Any, groups: Sequence[Any] | None = None,
                 name: str = "partitioned-device", stability: float | None = 0.002,
                 headroom: float = 0.5, natural_t: float = 50.0, natural_stability: float = 0.1) -> None:
        super().__init__(h, partition, groups, name)
        if not 0 < headroom <= 0.9:
            raise ValueError(f"headroom must be in (0, 0.9], got {headroom}")
        for label, value in (("stability", stability), ("natural_stability", natural_stability)):
            if value is not None and not 0 < value <= 1:
                raise ValueError(f"{label} must be in (0, 1], got {value}")
        if not (math.isfinite(natural_t) and natural_t > 0):
            raise ValueError(f"natural_t (the natural groups' run time) must be > 0, got {natural_t}")
        for _layers, scheme in self.partition.entries:
            if not isinstance(scheme, (LangevinScheme, AdLScheme, OverdampedScheme, NaturalScheme)):
                raise ValueError(f"{name}: scheme {scheme.describe()} has no device variant")
        self.dev, self.stability, self.headroom = device, stability, headroom
        self.natural_t, self.natural_stability = float(natural_t), natural_stability
        self._scales: dict[int, float] = {}
        self._uploaded: tuple | None = None       # (modes, friction, noise gain, temperature) on the device
        self._diag: bytes | None = None           # the DIAG (natural groups' λ) on the device
        self._dac_bits = 32

    @classmethod
    def twin(cls, device: Any, digital: PartitionedLangevin, **kwargs: Any) -> "DevicePartitionedLangevin":
        """The device variant of a digital preset: same h, partition and groups."""
        twin = cls(device, digital.h, digital.partition, digital.groups, name=f"{digital.name}-device", **kwargs)
        twin.partition_source = digital.partition_source
        return twin

    def __repr__(self) -> str:
        return f"DevicePartitionedLangevin(name={self.name!r}, partition={self.partition.describe()!r})"

    # ------------------------------------------------------------------ set-up
    def init(self, theta: np.ndarray, rng: np.random.Generator) -> State:
        P, dev = np.size(theta), self.dev
        if P > dev.n_cells:
            raise ValueError(f"the model has {P} parameters but the device only {dev.n_cells} cells "
                             "(one cell per parameter)")
        self._dac_bits = int(dev.info()["dac_bits"]["coupling"])
        with dev.batch():                       # zero coupling, zero bias, idle cells
            dev.stop()
            dev.configure(mode="underdamped", mobility=1.0, friction=0.0, noise_gain=0.0,
                          temperature=0.0, stability=self.stability)
            dev.load_lowrank(np.zeros((0, P)), np.zeros((0, 0)), np.zeros(P))
            dev.load_bias(np.zeros(P))
            dev.commit()
            dev.clear_saturation()
            dev.reset_state()
        self._uploaded = None
        self._diag = np.zeros(P).tobytes()
        self._scales = {}
        return super().init(theta, rng)

    # ------------------------------------------------------------------ scales
    def _scale(self, index: int, p: np.ndarray, thermal: float, h: float) -> float:
        """Power of two s with |p/s| + SIGMAS·thermal/s ≤ headroom·VMAX/max(1, h); kept unless
        too small or 64× too large (hysteresis: the noise gain is re-uploaded only on a change)."""
        room = self.headroom * self.dev.vmax / max(1.0, h)
        need = pow2_above((float(np.max(np.abs(p), initial=0.0)) + SIGMAS * thermal) / room)
        old = self._scales.get(index)
        s = need if old is None or need > old or need < old / 64 else old
        self._scales[index] = s
        return s

    # ------------------------------------------------------------------ the drift phase
    def _drift_phase(self, views: list[tuple[GroupState, Group, Scheme]], grad: np.ndarray, h: float,
                     n: int, gen: np.random.Generator) -> dict[str, float]:
        info: dict[str, float] = {}
        P = grad.size
        # per group: None (idle on the device) or [friction Γ, noise rate q = 2κΓ in p units]
        plan: list[list[float] | None] = []
        natural: list[tuple[GroupState, Group, NaturalScheme, np.ndarray]] = []
        for v, g, scheme in views:                      # first halves
            if isinstance(scheme, OverdampedScheme):    # digital: see the module docstring
                for key, value in scheme.drift(v, grad[g.slice], h, n, gen).items():
                    info[f"{g.name}.{key}"] = value
                plan.append(None)
            elif isinstance(scheme, NaturalScheme):     # sampled in the first packet, before the O-steps
                natural.append((v, g, scheme, grad[g.slice]))
                plan.append(None)
            elif isinstance(scheme, AdLScheme):         # A_{h/2}
                drift_A(v.theta, v.p, 0.5 * h)
                plan.append([float(v.xi[0]), scheme.sigma_a ** 2])
            else:                                       # Langevin: A_{h/2}
                assert isinstance(scheme, LangevinScheme)
                drift_A(v.theta, v.p, 0.5 * h)
                plan.append([scheme.gamma, 2.0 * scheme.gamma * scheme.tau(n)])
        adl = [(v, g, scheme, job) for (v, g, scheme), job in zip(views, plan) if isinstance(scheme, AdLScheme)]
        if not adl:                                     # O_h: one packet
            stats = self._device_o_steps(views, plan, P, h, n, gen, info, natural, h)
        else:   # (CD)_{h/2} E_h (CD)_{h/2}, the digital order: two packets (Langevin: O_{h/2} O_{h/2})
            stats = self._device_o_steps(views, plan, P, 0.5 * h, n, gen, info, natural, h)
            for v, g, scheme, job in adl:
                pp = float(v.p @ v.p)
                v.xi[0] = thermostat_E(v.xi[0], pp, v.n, scheme.tau(n), scheme.eps, h)
                job[0] = float(v.xi[0])
                info[f"{g.name}.kinetic_temperature"] = pp / v.n
                info[f"{g.name}.xi"] = float(v.xi[0])
            on_host = {k: x for k, x in info.items() if k.endswith(".on_host")}
            second = self._device_o_steps(views, plan, P, 0.5 * h, n, gen, info)
            for k, x in on_host.items():                # 1 if either half ran on the host
                info[k] = max(x, info[k])
            stats = {k: (max if k == "scale" else sum)((stats[k], second[k])) for k in stats}
        info.update(stats)
        for (v, g, scheme), job in zip(views, plan):    # second halves: A_{h/2}
            if job is not None:
                drift_A(v.theta, v.p, 0.5 * h)
            if isinstance(scheme, LangevinScheme):
                info[f"{g.name}.kinetic_temperature"] = float(v.p @ v.p) / v.n
        return info

    def _thermal(self, scheme: Scheme, n: int, h: float) -> float:
        """An upper bound on the size of the noise one step adds (and of thermal momenta)."""
        t = math.sqrt(scheme.tau(n))
        if isinstance(scheme, AdLScheme):
            t = max(t, scheme.sigma_a * math.sqrt(h))
        return t

    def _device_o_steps(self, views: list, plan: list, P: int, h: float, n: int,
                        gen: np.random.Generator, info: dict,
                        natural: list | None = None, h_step: float = 0.0) -> dict[str, float]:
        """Every non-idle group's friction-and-noise flow over time h, in ONE packet (or on the
        host for an AdL group whose ξ cannot be a friction), preceded in the same packet by the
        natural groups' sample (θ_g −= h_step·x_g); returns the packet's statistics."""
        dev = self.dev
        modes = np.zeros(P, dtype=np.int64)             # 0 overdamped, 1 underdamped
        for (v, g, scheme), job in zip(views, plan):
            modes[g.slice] = 1 if isinstance(scheme, (LangevinScheme, AdLScheme)) else 0
        fs = q31_full_scale_for(max([abs(job[0]) for job in plan if job is not None], default=0.0))
        resolution = fs * 2.0 ** (1 - min(self._dac_bits, 32))   # one friction DAC step
        # (view, group, Γ, κ·s² i.e. κ in p units, base scale) of the groups the device runs
        jobs: list[tuple[GroupState, Group, float, float, float]] = []
        for (v, g, scheme), job in zip(views, plan):
            if job is None:
                continue
            gamma, q = job
            s = self._scale(v.index, v.p, self._thermal(scheme, n, h), h)
            kp = q / (2.0 * gamma) if gamma > 0 else 0.0
            if isinstance(scheme, AdLScheme):
                on_host = gamma < 4 * resolution or kp / (s * s) > TEMPERATURE_MAX * NOISE_GAIN_MAX
                info[f"{g.name}.on_host"] = float(on_host)
                if on_host:   # ξ cannot be a (programmable) friction: this group's (CD)_h on the host
                    exact_ou(v.p, gamma, q, h, gen)
                    info[f"{g.name}.scale"] = 0.0
                    continue
            jobs.append((v, g, gamma, kp, s))
        # (view, group, ∇ℓ_g, κ = 2τ/h, λ, base scale) of the natural groups
        nat = []
        for v, g, scheme, grad_g in natural or []:
            kappa, lam = scheme.kappa(h_step, n), scheme.lam
            nat.append((v, g, grad_g, kappa, lam, sample_scale(grad_g, kappa, lam, self.headroom * dev.vmax)))
        if not jobs and not nat:                        # nothing for the device this time
            return {"device_time": 0.0, "bytes_sent": 0, "bytes_received": 0, "device_call_s": 0.0,
                    "scale": 0.0}
        sent0, recv0, t0 = dev.stats.bytes_sent, dev.stats.bytes_received, time.perf_counter()
        limit = dev.vmax * (1 - 2.0**-20)
        for attempt in range(4):
            friction, kappa, v0 = np.zeros(P), np.zeros(P), np.zeros(P)
            for v, g, gamma, kp, s in jobs:
                s *= 16.0 ** attempt
                friction[g.slice], kappa[g.slice], v0[g.slice] = gamma, kp / (s * s), v.p / s
            run = self._natural_run(nat, P, 16.0 ** attempt) if nat else None
            try:
                vals, xs = self._packet(modes, friction, kappa, v0, h if jobs else 0.0, run)
                hit = np.flatnonzero(np.abs(vals[:P]) >= limit) if jobs else np.zeros(0, int)
                if hit.size:   # the ADC clips v at ±VMAX: treat as saturation
                    raise DeviceSaturated("the momenta reached the VELOCITY full scale", hit.tolist())
                if nat and np.any(np.abs(xs[:P]) >= limit):
                    raise DeviceSaturated("a natural group's sample reached the STATE full scale",
                                          np.flatnonzero(np.abs(xs[:P]) >= limit).tolist())
                break
            except DeviceSaturated:
                self._uploaded = self._diag = None      # re-send the whole configuration
        else:
            raise MomentaSaturate(f"{self.name}: the momenta (or a natural group's sample) reached the "
                                  f"device's rails at step {n} even scaled down by 16^3 = 4096 beyond the "
                                  "chosen scales: the chain has diverged (lower the step size h)")
        scales = []
        for v, g, gamma, kp, s in jobs:
            s *= 16.0 ** attempt
            self._scales[v.index] = s
            v.p[:] = vals[g.slice] * s
            info[f"{g.name}.scale"] = s
            scales.append(s)
        for v, g, grad_g, kap, lam, s in nat:            # θ_g −= h x_g
            s *= 16.0 ** attempt
            v.theta -= h_step * (xs[g.slice] * s)
            info[f"{g.name}.scale"] = s
            scales.append(s)
        return {
            "device_time": (h if jobs else 0.0) + (self.natural_t if nat else 0.0),
            "bytes_sent": dev.stats.bytes_sent - sent0,
            "bytes_received": dev.stats.bytes_received - recv0,
            "device_call_s": time.perf_counter() - t0,
            "scale": max(scales, default=0.0),
        }

    def _natural_run(self, nat: list, P: int, factor: float) -> tuple[np.ndarray, ...]:
        """(J, λ on the natural cells, bias ∇ℓ_g/s, κ/s²) for the natural groups' run: one block
        of J rows per group (its GGN square-root columns, zeros elsewhere), so the coupling
        JᵀJ + diag(λ) is block-diagonal and every other cell is uncoupled."""
        rows, diag, bias, kappa = [], np.zeros(P), np.zeros(P), np.zeros(P)
        for v, g, grad_g, kap, lam, s in nat:
            s *= factor
            J = np.zeros((v.curvature.shape[0], P))
            J[:, g.slice] = v.curvature
            rows.append(J)
            diag[g.slice], bias[g.slice], kappa[g.slice] = lam, grad_g / s, kap / (s * s)
        J = np.vstack(rows)
        if J.shape[0] > self.dev.max_rank:
            raise ValueError(f"{self.name}: the natural groups' curvature has rank {J.shape[0]} (batch × "
                             f"outputs per natural group), above the device's MAX_RANK {self.dev.max_rank}: "
                             "use a smaller batch or fewer natural groups")
        return J, diag, bias, kappa

    def _configure(self, config: tuple, stability: float | None) -> None:
        """Stage what differs from the last configuration (MODE, FRICTION/NOISE_GAIN/TEMPERATURE)."""
        dev = self.dev
        old = self._uploaded or (None, None, None, None)
        if config[0] != old[0]:
            dev.configure(mode=["underdamped" if m else "overdamped" for m in np.frombuffer(config[0], np.int64)])
        if config[1:] != old[1:]:
            dev.configure(friction=np.frombuffer(config[1]), noise_gain=np.frombuffer(config[2]),
                          temperature=config[3])
        if stability is not None:
            dev.configure(stability=stability)
        self._uploaded = config

    def _packet(self, modes: np.ndarray, friction: np.ndarray, kappa: np.ndarray, v0: np.ndarray,
                h: float, natural: tuple[np.ndarray, ...] | None = None) -> tuple[Any, Any]:
        """ONE packet: with natural groups first (their configuration — the momentum cells'
        noise off, so those cells stay at 0 —, J, λ, bias, COMMIT, RESET_STATE, RUN natural_t,
        WAIT, STATE read); then, when h > 0, (configuration, COMMIT if it changed) RESET_STATE,
        VELOCITY ← v0, RUN h, WAIT, VELOCITY read. TEMPERATURE is the largest κ (at most its
        register range) and NOISE_GAIN_i = κ_i / TEMPERATURE. Returns (velocities, states)."""
        dev = self.dev
        kn = natural[3] if natural is not None else np.zeros_like(kappa)
        temperature = min(max(float(np.max(kappa, initial=0.0)), float(np.max(kn, initial=0.0))), TEMPERATURE_MAX)
        gain = kappa / temperature if temperature > 0 else np.zeros_like(kappa)
        gain_n = kn / temperature if temperature > 0 else np.zeros_like(kn)
        mode_b, fric_b = modes.tobytes(), friction.tobytes()
        vel = state = None
        with dev.batch():
            if natural is not None:
                J, diag, bias, _ = natural
                toggle = self.stability is not None and self.natural_stability is not None
                self._configure((mode_b, fric_b, gain_n.tobytes(), temperature),
                                self.natural_stability if toggle else None)
                same_diag = diag.tobytes() == self._diag
                dev.load_lowrank(*_within_full_scale(J, np.eye(J.shape[0])), None if same_diag else diag)
                dev.load_bias(bias)
                dev.commit()
                self._diag = diag.tobytes()
                dev.reset_state()
                dev.run(self.natural_t)
                state = dev.state()
                if h > 0:
                    self._configure((mode_b, fric_b, (gain + gain_n).tobytes(), temperature),
                                    self.stability if toggle else None)
                    dev.commit()
            elif (config := (mode_b, fric_b, gain.tobytes(), temperature)) != self._uploaded:
                self._configure(config, None)
                dev.commit()
            if h > 0:
                dev.reset_state()                           # x = 0: far from the rails
                dev.write(_VELOCITY, float_to_q31(v0, dev.vmax))
                dev.run(h)
                vel = dev.velocity()
        return (vel.value if vel is not None else None), (state.value if state is not None else None)


# ---------------------------------------------------------------------- presets
def _twin(device: Any, digital: PartitionedLangevin, stability: float | None,
          headroom: float) -> DevicePartitionedLangevin:
    return DevicePartitionedLangevin.twin(device, digital, stability=stability, headroom=headroom)


def langevin_device(device: Any, h: float | Schedule = 0.25, gamma: float = 0.1, tau: float | Schedule = 1e-4,
                    stability: float | None = 0.002, headroom: float = 0.5,
                    groups: Sequence[Any] | None = None) -> DevicePartitionedLangevin:
    """Langevin (BAOAB) with the O-step done by the device's underdamped cells."""
    from host.optim.langevin.presets import langevin
    return _twin(device, langevin(h, gamma, tau, groups), stability, headroom)


def adl_device(device: Any, h: float | Schedule = 0.25, tau: float | Schedule = 1e-4, sigma_a: float = 0.01,
               eps: float = 0.05, xi0: float = 1e-3, stability: float | None = 0.002, headroom: float = 0.5,
               groups: Sequence[Any] | None = None) -> DevicePartitionedLangevin:
    """Adaptive Langevin on every layer; friction ξ and noise σ_A act in the cells."""
    from host.optim.langevin.presets import adl
    return _twin(device, adl(h, tau, sigma_a, eps, xi0, groups), stability, headroom)


def adlala_device(device: Any, h: float | Schedule = 0.25, tau1: float | Schedule = 1e-4,
                  tau2: float | Schedule = 1e-4, gamma: float = 0.1, sigma_a: float = 0.01, eps: float = 0.05,
                  xi0: float = 1e-3, split: int = 1, stability: float | None = 0.002, headroom: float = 0.5,
                  groups: Sequence[Any] | None = None) -> DevicePartitionedLangevin:
    """AdLaLa with every group's friction and noise on the device."""
    from host.optim.langevin.presets import adlala
    return _twin(device, adlala(h, tau1, tau2, gamma, sigma_a, eps, xi0, split, groups), stability, headroom)


def lol_device(device: Any, h: float | Schedule = 0.25, tau1: float | Schedule = 1e-4,
               tau2: float | Schedule = 1e-4, gamma: float = 0.1, split: int = 1,
               stability: float | None = 0.002, headroom: float = 0.5,
               groups: Sequence[Any] | None = None) -> DevicePartitionedLangevin:
    """LOL: the Langevin layer(s) on the device, the overdamped layers digital."""
    from host.optim.langevin.presets import lol
    return _twin(device, lol(h, tau1, tau2, gamma, split, groups), stability, headroom)


def lala_device(device: Any, h: float | Schedule = 0.25, gammas: Any = 0.1, taus: Any = 1e-4,
                stability: float | None = 0.002, headroom: float = 0.5,
                groups: Sequence[Any] | None = None) -> DevicePartitionedLangevin:
    """LaLa: per-layer (γ_i, τ_i) as per-cell friction and noise gain."""
    from host.optim.langevin.presets import lala
    return _twin(device, lala(h, gammas, taus, groups), stability, headroom)


def partitioned_device(device: Any, h: float | Schedule = 0.25, partition: Any = "0:adl, *:langevin",
                       tau: float = 1e-4, gamma: float = 0.1, sigma_a: float = 0.01, eps: float = 0.05,
                       xi0: float = 1e-3, stability: float | None = 0.002, headroom: float = 0.5,
                       groups: Sequence[Any] | None = None, lam: float = 0.1, natural_t: float = 50.0,
                       natural_stability: float = 0.1) -> DevicePartitionedLangevin:
    """Any partition, device-assisted; natural groups sample on the device for a run of
    ``natural_t`` (at emulator fidelity ``natural_stability``) before the momentum cells' run."""
    from host.optim.langevin.presets import partitioned
    return DevicePartitionedLangevin.twin(device, partitioned(h, partition, tau, gamma, sigma_a, eps, xi0, groups, lam),
                                          stability=stability, headroom=headroom, natural_t=natural_t,
                                          natural_stability=natural_stability)


__all__ = ["DevicePartitionedLangevin", "MomentaSaturate", "exact_ou", "langevin_device", "adl_device",
           "adlala_device", "lol_device", "lala_device", "partitioned_device"]
