"""What solve/inv/sample/logdet share: input checks, the matrix as an operator (dense or low-rank,
never formed in the low-rank case), cheap spectral estimates (Lanczos, CG) and the power-of-two
scaling into the device's ranges.

Why powers of two: A/sA and b/sb are then exact in floating point, so scaling in and out adds no
rounding of its own; only the device's DACs and ADC quantize.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from protocol.regmap import REGMAP

#: Relative asymmetry max|A − Aᵀ| / max|A| above which A is refused (the device couples each
#: pair through one element, so it can only realise symmetric matrices).
SYMMETRY_RTOL = 1e-10
#: Lanczos steps for the extreme eigenvalues (full reorthogonalisation; O(k·matvec + k²n)).
LANCZOS_STEPS = 24
#: CG steps for the cheap magnitude estimate of A⁻¹b used to scale b (only its size matters).
CG_STEPS = 12
#: The Ritz value θmin of a short Lanczos run is an UPPER bound of λmin (it converges from above),
#: so 1/θmin under-estimates the relaxation time; this factor covers that (measured: 24 steps on
#: 64×64 matrices with condition number 30 land within 1.1× of λmin) — and the transient check
#: on the batch means catches what it does not.
TAU_SAFETY = 1.5


class NotPositiveDefinite(ValueError):
    """The matrix is not (numerically) symmetric positive definite, so no equilibrium exists:
    the device's dynamics are unstable and run into the rails."""


def pow2_ceil(x: float) -> float:
    """Smallest power of two ≥ x (x > 0)."""
    if not (x > 0 and math.isfinite(x)):
        raise ValueError(f"cannot scale by {x!r}")
    return 2.0 ** math.ceil(math.log2(x))


def check_vector(v: Any, n: int, name: str) -> np.ndarray:
    if v is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a vector of length {n}, got shape {np.shape(v)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries (NaN or inf)")
    return arr


def _check_symmetric(M: np.ndarray, name: str) -> np.ndarray:
    scale = float(np.max(np.abs(M), initial=0.0))
    asym = float(np.max(np.abs(M - M.T), initial=0.0))
    if asym > SYMMETRY_RTOL * scale:
        raise ValueError(f"{name} must be symmetric: max|{name} − {name}ᵀ| = {asym:.3g} "
                         f"(relative {asym / scale:.3g}); the device realises one coupling per pair")
    return 0.5 * (M + M.T)


@dataclass
class Problem:
    """A validated SPD-candidate matrix: dense A, or A = Jᵀ H J + diag(lam) kept factored."""
    n: int
    A: np.ndarray | None = None
    J: np.ndarray | None = None
    H: np.ndarray | None = None
    lam: np.ndarray | None = None

    @classmethod
    def from_inputs(cls, A: Any, lowrank: Any, n_cells: int) -> "Problem":
        if (A is None) == (lowrank is None):
            raise ValueError("give exactly one of A (dense) and lowrank=(J, H, lam)")
        if A is not None:
            arr = np.asarray(A, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
                raise ValueError(f"A must be a square matrix, got shape {arr.shape}")
            n = arr.shape[0]
            if n == 0:
                raise ValueError("A is empty")
            if n > n_cells:
                raise ValueError(f"A is {n}×{n} but the device has only {n_cells} cells "
                                 "(one cell per unknown)")
            if not np.all(np.isfinite(arr)):
                raise ValueError("A has non-finite entries (NaN or inf)")
            return cls(n=n, A=_check_symmetric(arr, "A"))
        try:
            J, H, lam = lowrank
        except (TypeError, ValueError):
            raise ValueError("lowrank must be a tuple (J, H, lam) with A = Jᵀ H J + diag(lam)") from None
        J = np.atleast_2d(np.asarray(J, dtype=np.float64))
        H = np.atleast_2d(np.asarray(H, dtype=np.float64))
        if J.ndim != 2:
            raise ValueError(f"J must be r×n, got shape {J.shape}")
        r, n = J.shape
        if n == 0:
            raise ValueError("J has no columns")
        if n > n_cells:
            raise ValueError(f"J is {r}×{n}: {n} unknowns but the device has only {n_cells} cells")
        if H.shape != (r, r):
            raise ValueError(f"H must be {r}×{r} for J of shape {J.shape}, got {H.shape}")
        lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), (n,)).copy() \
            if np.ndim(lam) == 0 else check_vector(lam, n, "lam")
        for name, m in (("J", J), ("H", H), ("lam", lam)):
            if not np.all(np.isfinite(m)):
                raise ValueError(f"{name} has non-finite entries (NaN or inf)")
        return cls(n=n, J=J, H=_check_symmetric(H, "H"), lam=lam)

    @property
    def lowrank(self) -> bool:
        return self.A is None

    def matvec(self, v: np.ndarray) -> np.ndarray:
        if self.A is not None:
            return self.A @ v
        assert self.J is not None and self.H is not None and self.lam is not None
        return self.J.T @ (self.H @ (self.J @ v)) + self.lam * v

    def frobenius2(self) -> float:
        """‖A‖_F² without forming a low-rank A: ‖JᵀHJ‖_F² + 2 tr(JᵀHJ Λ) + ‖λ‖², O(r²n)."""
        if self.A is not None:
            return float(np.sum(self.A**2))
        assert self.J is not None and self.H is not None and self.lam is not None
        G = self.J @ self.J.T
        HG = self.H @ G
        diag_g = np.einsum("ri,rs,si->i", self.J, self.H, self.J)  # diag(JᵀHJ)
        return float(np.sum(HG * HG.T) + 2 * diag_g @ self.lam + self.lam @ self.lam)

    def dense(self) -> np.ndarray:
        """The N×N matrix (only for results that are N×N anyway, e.g. inv)."""
        if self.A is not None:
            return self.A
        assert self.J is not None and self.H is not None and self.lam is not None
        return self.J.T @ self.H @ self.J + np.diag(self.lam)

    def upload(self, dev: Any, sA: float) -> None:
        """Stage A' = A/sA on the device (dense, or as J' = J/sJ, H' = sJ²H/sA, lam/sA so each
        factor uses its own full scale). Call inside ``dev.batch()`` before ``commit``."""
        if self.A is not None:
            dev.load_coupling(self.A / sA)
            return
        assert self.J is not None and self.H is not None and self.lam is not None
        jmax = float(np.max(np.abs(self.J), initial=0.0))
        sJ = pow2_ceil(jmax) if jmax > 0 else 1.0
        dev.load_lowrank(self.J / sJ, self.H * (sJ * sJ / sA), self.lam / sA)


@dataclass(frozen=True)
class Spectrum:
    """Ritz values of a short Lanczos run: lmin ≥ λmin(A) and lmax ≤ λmax(A), both close for
    the extreme eigenvalues (Lanczos converges fastest there)."""
    lmin: float
    lmax: float
    steps: int


def lanczos(op: Callable[[np.ndarray], np.ndarray], n: int, k: int = LANCZOS_STEPS,
            seed: int = 0x7E51) -> Spectrum:
    """k Lanczos steps from a fixed random start, fully reorthogonalised (k ≤ n is small).

    Raises NotPositiveDefinite if a Ritz value is ≤ 0: its Ritz vector y has yᵀAy ≤ 0, a
    certificate that A is not positive definite."""
    k = max(1, min(k, n))
    q = np.random.default_rng(seed).standard_normal(n)
    q /= np.linalg.norm(q)
    Q = np.zeros((k, n))
    alpha: list[float] = []
    beta: list[float] = []
    for j in range(k):
        Q[j] = q
        w = op(q)
        alpha.append(float(q @ w))
        for _ in range(2):  # twice is enough (Kahan–Parlett)
            w -= Q[: j + 1].T @ (Q[: j + 1] @ w)
        bnorm = float(np.linalg.norm(w))
        scale = max(abs(a) for a in alpha) or 1.0
        if j == k - 1 or bnorm <= 1e-12 * scale:
            break  # done, or an invariant subspace: its Ritz values are exact eigenvalues
        beta.append(bnorm)
        q = w / bnorm
    m = len(alpha)
    T = np.diag(alpha) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    theta = np.linalg.eigvalsh(T)
    lmin, lmax = float(theta[0]), float(theta[-1])
    if lmax <= 0 or lmin <= 1e-14 * abs(lmax):
        raise NotPositiveDefinite(
            f"the matrix is not positive definite: Lanczos found a direction y with "
            f"yᵀAy/yᵀy = {lmin:.3g} ≤ 0 (largest {lmax:.3g}); the device would run into its rails")
    return Spectrum(lmin=lmin, lmax=lmax, steps=m)


def cg_estimate(op: Callable[[np.ndarray], np.ndarray], b: np.ndarray, k: int = CG_STEPS) -> np.ndarray:
    """k plain CG steps on A x = b: a cheap estimate of A⁻¹b whose SIZE sets the bias scale.
    A non-positive curvature pᵀAp ≤ 0 proves A is not positive definite."""
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rr = float(r @ r)
    for _ in range(max(1, min(k, b.size))):
        Ap = op(p)
        pAp = float(p @ Ap)
        if pAp <= 0:
            raise NotPositiveDefinite(
                f"the matrix is not positive definite: CG found pᵀAp = {pAp:.3g} ≤ 0")
        a = rr / pAp
        x += a * p
        r -= a * Ap
        rr_new = float(r @ r)
        if rr_new <= 1e-30 * float(b @ b):
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


@dataclass(frozen=True)
class DeviceFacts:
    """Converter facts the error model needs, read once per connection."""
    vmax: float
    adc_bits: int
    dac_bits_coupling: int
    dac_bits_bias: int
    profile: str | None  # emulator profile name; None on hardware
    boot_id: int
    lease_s: float       # ownership lease: a packet (runs included) must end well inside it

    @property
    def adc_lsb(self) -> float:
        """One ADC step in volts (full scale ±vmax)."""
        return 2.0 * self.vmax / 2.0 ** self.adc_bits

    @property
    def ideal(self) -> bool:
        return self.profile == "ideal"


_FACTS: "weakref.WeakKeyDictionary[Any, DeviceFacts]" = weakref.WeakKeyDictionary()


def device_facts(dev: Any) -> DeviceFacts:
    facts = _FACTS.get(dev)
    if facts is None:
        info = dev.info()
        emu = info.get("emulator")
        facts = DeviceFacts(vmax=float(info["vmax"]), adc_bits=int(info["adc_bits"]),
                            dac_bits_coupling=int(info["dac_bits"]["coupling"]),
                            dac_bits_bias=int(info["dac_bits"]["bias"]),
                            profile=str(emu["profile"]) if emu else None,
                            boot_id=int(info["boot_id"]),
                            lease_s=float(dev.read("LEASE_MS")) / 1000.0)
        _FACTS[dev] = facts
    return facts


def calibration_notes(dev: Any) -> tuple[str, ...]:
    """Calibrate a device whose calibration is not valid; say what was done."""
    from host.calibration import ensure_calibrated
    said: list[str] = []
    ensure_calibrated(dev, say=said.append)
    return tuple(said)


def systematic_notes(dev: Any, facts: DeviceFacts) -> tuple[str, ...]:
    """What shifts the equilibrium itself, said out loud (the residual check then measures it)."""
    if facts.ideal:
        return ()
    status = int(dev.read("STATUS"))
    calibrated = bool(status & REGMAP.registers["STATUS"].bit("CAL_VALID"))
    where = f"profile {facts.profile!r}" if facts.profile else "hardware"
    return (f"{where}{'' if calibrated else ', not calibrated (CAL_VALID = 0)'}: bias offsets, "
            "coupling gain mismatch, DAC quantisation and drift shift the equilibrium itself; "
            "the residual check bounds that systematic error",)


def prepare(dev: Any, temperature: float) -> None:
    """Overdamped cells, unit mobility and noise gain (the error model assumes them), the given
    temperature, no FIFO sampling left over from ``samples()`` (SAMPLE_PERIOD is sticky), no
    leftover saturation flag. Staged; the caller commits."""
    dev.stop()
    dev.configure(mode="overdamped", temperature=temperature, mobility=1.0, noise_gain=1.0,
                  sample_period=0.0)
    dev.clear_saturation()


def check_temperature(value: Any, name: str = "temperature", upper: float = 100.0) -> float:
    t = float(value)
    if not (math.isfinite(t) and 0.0 <= t <= upper):
        raise ValueError(f"{name} must be finite and in [0, {upper:g}], got {value!r}")
    return t
