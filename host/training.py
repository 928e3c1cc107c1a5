"""The training loop: data → model → optimizer (digital or on a device) → metrics, checkpoints.

``train(TrainConfig(...))`` is what ``thermohil train`` runs. Per step it appends a line to
``DIR/metrics.jsonl`` (loss, wall time, device time, bytes, projected hardware time), evaluates
at each epoch end, checkpoints at each epoch end (``--resume`` continues from there), and draws
``DIR/loss.png`` when matplotlib is installed.

Projected hardware time per iteration = digital time (measured on this host)
+ transfer (payload words as 16-bit words over a 50 Gb/s link) + analog time t·τ0 (τ0 = 1 µs);
with a delay t_d the device's t_d overlaps the host's digital work: max(digital, t_d·τ0).
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np

from host import data as datasets
from host import nn
from host.errors import DeviceError
from host.objective import Objective
from host.optim import ALGORITHMS, CurvatureSaturates, NonFiniteError
from host.optim import state_io
from host import run_dir
from host.posterior import Chain
from host.problem import Problem, build_problem
from host.run_record import device_record
from protocol.regmap import REGMAP

LOG_EVERY_S = 30.0  # without a terminal (and without --no-progress): one progress line at most this often
MAX_EMULATED_RANK = REGMAP.meta["emu_max_rank"]  # the largest MAX_RANK an emulated device offers
#: Timing of the projected hardware when the device publishes none (a protocol 2.0 device):
#: the TNGD paper's hardware model.
DEFAULT_TIMING = {"tau0_s": 1e-6, "link_bits_per_s": 50e9, "link_word_bits": 16,
                  "dac_words_per_s": 1e9, "adc_words_per_s": 1e9}


@dataclass
class TrainConfig:
    """One training run. ``dataset``, ``model`` and ``loss`` may be the library's or yours:

    - dataset: a built-in name ('digits', 'spiral'), 'file.py:loader' / 'module:loader', a
      ``host.data.Dataset``, or arrays (X, y) / (X_train, y_train, X_test, y_test);
    - model: None (the built-in MLP, ``hidden`` wide), a torch.nn.Module, a host.nn model, or a
      factory ``build(n_inputs, n_outputs)`` (also as 'file.py:build');
    - loss: None (the data set's own), 'ce', 'bce', 'mse', or a torch loss for a torch model.

    ``out`` None writes to runs/ALGO-DATA-sSEED[-TAG] (TAG: the non-default settings), as the
    CLI does.
    """
    algo: str
    dataset: Any
    device: str | None = "spawn://"
    epochs: int = 5
    batch_size: int | None = None  # None: the data set's default (host.problem.MODEL_DEFAULTS)
    seed: int = 0
    out: str | None = None
    hidden: tuple[int, ...] | None = None
    activation: str = "relu"
    hyper: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    progress: bool | None = None  # None: a bar only when stderr is a terminal
    eval_every: int = 0  # steps between evaluations besides each epoch end (0: epoch ends only)
    timeout: float | None = None  # device reply timeout (s); None: 30 s
    retries: int | None = None  # resends of an unanswered idempotent packet; None: driver default
    calibrate: bool = True  # calibrate a device whose CAL_VALID is 0 before training
    #: where a device's saved trims are looked for and kept (None: the user's cache,
    #: ``THERMOHIL_CALIBRATION_DIR``); a study gives each run its own, so no run's numbers
    #: depend on which run happened to calibrate the shared chip first
    calibration_dir: str | None = None
    lease_ms: int = 30_000  # the device lease; on a declared-slow link, packets fit a third of it
    model: Any = None
    loss: Any = None
    #: keep every k-th step's θ as a sample of the chain (0: none) after ``posterior_burn_in``
    #: epochs (None: half the epochs), and report the posterior-predictive average beside the
    #: last iterate at each evaluation; the samples go to DIR/samples/.
    posterior_every: int = 0
    posterior_burn_in: int | None = None
    #: called with every evaluation row as it is written (e.g. Ray Tune's report); not recorded
    on_evaluation: Callable[[dict], None] | None = None


#: A training run waits this long for another host's lease to run out (a host that crashed or
#: froze cannot release the device; the reference host's lease is 30 s).
LEASE_WAIT_S = 35.0


def say_waiting(seconds: float) -> None:
    print(f"thermohil: the device is held by another host; its lease runs out in {seconds:.1f} s, "
          "waiting", file=sys.stderr, flush=True)


class TrainingError(RuntimeError):
    """Training stopped; the last good checkpoint is kept."""


class DeviceFailed(TrainingError):
    """The device failed mid-run (it died, rebooted, was taken over or stopped answering): the
    run is unfinished, not a result — resume it from its checkpoint. Training stopped by the
    numbers themselves (a diverged chain, a curvature the device cannot hold) stays a plain
    ``TrainingError``."""


def session_seed(seed: int, from_step: int) -> int:
    """The seed of a spawned device for a session that starts at ``from_step``: the run's seed
    for the first, a fresh stream for a resumed one (the run's seed again would replay the
    noise its first steps already used)."""
    if from_step == 0:
        return seed
    return int(np.random.SeedSequence([seed, from_step]).generate_state(1)[0] % 2**31)


def device_url(url: str | None, n_params: int, rank: int, seed: int) -> str:
    """The embedded default spawns a device sized for the model (one cell per parameter)."""
    if url in (None, "", "none"):
        raise ValueError("this algorithm runs on a device: pass --device URL (default spawn://)")
    parsed = urlparse(url)
    if parsed.scheme != "spawn":
        return url
    q = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    q.setdefault("cells", str(n_params))
    q.setdefault("max_rank", str(rank))
    q.setdefault("seed", str(seed))
    return f"spawn://?{urlencode(q)}"


def _build_optimizer(cfg: TrainConfig, objective: Objective, out_dim: int,
                     n_train: int, from_step: int = 0) -> tuple[Any, Any]:
    spec = ALGORITHMS.get(cfg.algo)
    if spec is None:
        raise ValueError(f"unknown algorithm {cfg.algo!r}; known: {', '.join(sorted(ALGORITHMS))}")
    unknown = set(cfg.hyper) - set(spec.params)
    if unknown:
        raise ValueError(f"{cfg.algo} takes no hyperparameter(s) {', '.join(sorted(unknown))}; "
                         f"it takes: {', '.join(sorted(spec.params))}")
    if not spec.needs_device(cfg.hyper):
        return spec.build(**cfg.hyper), None
    import host
    model = objective.model
    blocks = spec.curvature_blocks(cfg.hyper, [g.layer for g in model.groups])
    rank = min(cfg.batch_size, n_train) * out_dim * blocks
    form = cfg.hyper.get("form", spec.params.get("form", (str, "lowrank"))[1])
    if form == "lowrank" and rank > MAX_EMULATED_RANK and urlparse(cfg.device or "spawn://").scheme == "spawn":
        advice = "or --form dense" if "form" in spec.params else "or form=dense in the entries"
        raise ValueError(f"the low-rank curvature of a batch has rank batch × outputs"
                         f"{' × groups' if blocks > 1 else ''} = {rank}, above the emulator's limit "
                         f"{MAX_EMULATED_RANK}: use --batch-size <= {MAX_EMULATED_RANK // (out_dim * blocks)} "
                         f"{advice}")
    url = device_url(cfg.device, model.n_params, rank, session_seed(cfg.seed, from_step))
    dev = host.connect(url, timeout=cfg.timeout or 30.0, retries=cfg.retries, lease_ms=cfg.lease_ms,
                       wait_for_lease=LEASE_WAIT_S, on_wait=say_waiting)
    try:
        return spec.build(dev, **cfg.hyper), dev
    except BaseException:
        dev.close()  # a refused hyperparameter must not leave a spawned daemon behind
        raise


def _group_info(info: dict) -> dict:
    """Per-group diagnostics (``<group>.xi``, ``<group>.kinetic_temperature``, …) as one entry."""
    groups = {k: float(v) for k, v in info.items() if "." in k and isinstance(v, (int, float))}
    return {"groups": groups} if groups else {}


def projected_hw_time(digital_s: float, info: dict, uses_device: bool,
                      timing: dict | None = None) -> float:
    """Seconds one step would take on the chip the device's timing registers describe: the
    transfers (over its link, or through its converters if they are slower), the analog time
    the host waits for, and the digital work (overlapped with a delayed run's t_d)."""
    if not uses_device:
        return digital_s
    tm = timing or DEFAULT_TIMING
    up, down = info.get("bytes_sent", 0) / 4, info.get("bytes_received", 0) / 4
    link = (up + down) * tm["link_word_bits"] / tm["link_bits_per_s"]
    transfer = max(link, up / tm["dac_words_per_s"] + down / tm["adc_words_per_s"])
    t = info.get("device_time", 0.0)
    t_delay = max((v for k, v in info.items() if k == "t_delay" or k.endswith(".t_delay")), default=0.0)
    tau0 = tm["tau0_s"]
    return transfer + (t - t_delay) * tau0 + max(digital_s, t_delay * tau0)


# ------------------------------------------------------------------------------ checkpoints
def _figures(out: Path) -> list[str]:
    """The run's figures (loss, accuracy, hardware time, Langevin diagnostics), when matplotlib
    is installed; a figure that fails to draw never fails the run it describes."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    from host.run_figures import plot_run
    try:
        return [str(p) for p in plot_run(out)]
    except Exception as e:     # noqa: BLE001 - reported, the run's numbers are already written
        print(f"thermohil: note: the figures of {out} could not be drawn: {type(e).__name__}: {e}",
              file=sys.stderr)
        return []


# ------------------------------------------------------------------------------ the loop
def train(cfg: TrainConfig) -> dict:
    """Train; returns the summary (what ``--json`` prints)."""
    if cfg.algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {cfg.algo!r}; known: {', '.join(sorted(ALGORITHMS))}")
    _check_options(cfg)
    problem = build_problem(cfg.dataset, cfg.model, cfg.loss, hidden=cfg.hidden, activation=cfg.activation)
    if cfg.batch_size is None:
        cfg = replace(cfg, batch_size=problem.defaults["batch"])
    if cfg.posterior_every and problem.loss not in nn.LOSSES:
        raise ValueError(f"the posterior-predictive average needs loss ce, bce or mse, not {problem.loss}")
    out = Path(cfg.out) if cfg.out else run_dir.default_out(cfg, problem)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    ckpt = out / "checkpoint.npz"
    config = run_dir.config_record(cfg, problem)
    saved = saved_meta = None
    if cfg.resume:
        saved, saved_meta = run_dir.check_resume(cfg, out, config)
        config["resolved"]["posterior_burn_in"] = saved.get("resolved", {}).get(
            "posterior_burn_in", config["resolved"]["posterior_burn_in"])

    # everything that can be refused is checked (and the device connected) before the run
    # directory is touched, and the directory is only prepared once the first step has worked,
    # so a rejected command or a run that fails at once never damages an earlier run
    optimizer, dev = _build_optimizer(cfg, problem.objective, problem.n_outputs, len(problem.data.X_train),
                                      saved_meta["step"] if saved_meta else 0)
    try:
        optimizer.check_model(problem.objective.model)   # e.g. a partition naming a layer the model lacks
        device = device_record(dev.info()) if dev is not None else None
        config["resolved"]["device"] = device

        def prepare() -> None:
            run_dir.prepare(out, config, saved, saved_meta, device)

        timing = dev.info().get("timing") if dev is not None else None
        startup = _calibrate(dev, cfg.calibration_dir) if dev is not None and cfg.calibrate else 0.0
        return _loop(cfg, problem, optimizer, out, ckpt, prepare, config["resolved"]["posterior_burn_in"],
                     timing, startup, link=(lambda: _link_stats(dev)) if dev is not None else None)
    finally:
        if dev is not None:
            dev.close()


def _check_options(cfg: TrainConfig) -> None:
    if cfg.epochs < 1 or (cfg.batch_size is not None and cfg.batch_size < 1):
        raise ValueError("epochs and batch size must be >= 1")
    if cfg.eval_every < 0:
        raise ValueError(f"eval_every must be >= 0, got {cfg.eval_every}")
    if cfg.timeout is not None and not (math.isfinite(cfg.timeout) and cfg.timeout > 0):
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {cfg.timeout}")
    if not (isinstance(cfg.lease_ms, int) and 300 <= cfg.lease_ms <= 3_600_000):
        raise ValueError(f"lease_ms must be an integer in 300 … 3600000 ms, got {cfg.lease_ms!r}")
    if cfg.posterior_every < 0:
        raise ValueError(f"posterior_every must be >= 0, got {cfg.posterior_every}")
    if cfg.posterior_burn_in is not None and not 0 <= cfg.posterior_burn_in < cfg.epochs:
        raise ValueError(f"posterior_burn_in must be in 0 … epochs − 1 = {cfg.epochs - 1}, "
                         f"got {cfg.posterior_burn_in}")


def _calibrate(dev: Any, where: str | None) -> float:
    """Calibrate a device whose calibration is not valid (saying so); the device time it took."""
    from host.calibration import ensure_calibrated
    report = ensure_calibrated(dev, say=lambda m: print(f"thermohil: {m}", file=sys.stderr), where=where)
    return report.device_time if report is not None else 0.0


def _link_stats(dev: Any) -> dict[str, int]:
    """The link's counters since this session connected (packets, bytes, retries, timeouts, CRC
    and link errors): a run that trained through a flaky link says so in metrics.jsonl."""
    stats = dev.stats
    return stats.as_dict() if hasattr(stats, "as_dict") else \
        {k: v for k, v in vars(stats).items() if isinstance(v, int)}


def _loop(cfg: TrainConfig, problem: Problem, optimizer: Any, out: Path, ckpt: Path,
          prepare: Callable[[], None], burn_in: int | None, timing: dict | None = None,
          calibration_time: float = 0.0, link: Callable[[], dict[str, int]] | None = None) -> dict:
    ds, objective = problem.data, problem.objective
    rng = np.random.default_rng(cfg.seed)
    state = optimizer.init(problem.initial_theta(rng), rng, groups=objective.model.groups)
    start_epoch, totals = 0, {"wall_time_s": 0.0, "device_time": 0.0, "projected_hw_time_s": 0.0,
                              "bytes_sent": 0, "bytes_received": 0, "calibration_time": 0.0,
                              "saturation_retries": 0}
    chain = Chain(cfg.posterior_every, burn_in or 0, problem, out) if cfg.posterior_every else None
    if cfg.resume:
        state, saved_meta = state_io.load(ckpt, state)
        start_epoch = saved_meta["epoch"] + 1
        totals.update(saved_meta["totals"])
        if chain is not None:
            chain.resume(saved_meta.get("posterior_samples", 0))
    totals["device_time"] += calibration_time      # this session's start-up calibration
    totals["calibration_time"] += calibration_time
    log = run_dir.MetricsLog(out / "metrics.jsonl", append=cfg.resume, prepare=prepare)
    score = "r2" if problem.loss == "mse" else "accuracy"    # regression is scored by R²
    progress = _Progress(cfg, problem.data.name, (cfg.epochs - start_epoch) * math.ceil(len(ds.X_train) / cfg.batch_size))
    links = (lambda: {"link": link()}) if link else dict

    def evaluate(epoch: int) -> dict:
        row = {"step": state.step, "epoch": epoch} | _evaluation(objective, state.theta, ds, score) \
            | (chain.scores(score) if chain else {}) | totals
        log.write(row)
        if cfg.on_evaluation is not None:
            cfg.on_evaluation(dict(row))
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["test_loss"])):   # an overflowed model
            raise NonFiniteError(f"non-finite loss at the evaluation of step {state.step}: the parameters "
                                 "have overflowed; training stopped (lower the step size?)")
        return row

    last = None
    try:
        if start_epoch == 0:
            last = evaluate(0)
        for epoch in range(start_epoch, cfg.epochs):
            batch_rng = np.random.default_rng([cfg.seed, epoch])  # resume reproduces the batches
            for X, y in datasets.minibatches(ds.X_train, ds.y_train, cfg.batch_size, batch_rng):
                t0 = time.perf_counter()
                state, info = optimizer.step(state, X, y, objective)
                wall = time.perf_counter() - t0
                log.write(_step_row(state.step, epoch + 1, info, wall, optimizer.uses_device, timing, totals)
                          | links())
                log.open()                  # the first step worked: now the directory is this run's
                if chain is not None:
                    chain.offer(epoch, state)
                progress.step(info["batch_loss"])
                if cfg.eval_every and state.step % cfg.eval_every == 0:
                    last = evaluate(epoch + 1)
            if last is None or last["step"] != state.step:   # not evaluated at this step already
                last = evaluate(epoch + 1)
            if chain is not None:
                chain.save(epoch)
            state_io.save(ckpt, state, {"epoch": epoch, "totals": totals,
                                        **({"posterior_samples": chain.average.count} if chain else {})})
            run_dir.save_module(out, objective.model, state.theta)
            progress.epoch(epoch, state.step, last, score)
    except (NonFiniteError, CurvatureSaturates) as e:
        kept = f" (checkpoint of the last completed epoch: {ckpt})" if ckpt.exists() else \
            " (no epoch was completed: no checkpoint)"
        raise TrainingError(f"{e}{kept}") from e
    except DeviceError as e:
        # never go on training on a device that rebooted, was taken over or stopped answering:
        # the steps since the last checkpoint are dropped, and --resume continues from it.
        # The last row says why, with the link's counters as they were when it failed.
        log.write({"step": state.step, "error": f"{type(e).__name__}: {e}"} | links())
        kept = (f"; the last completed epoch is checkpointed in {ckpt}: continue with --resume"
                if ckpt.exists() else "; no epoch was completed, so there is no checkpoint")
        raise DeviceFailed(f"the device failed at step {state.step}, training stopped: "
                            f"{type(e).__name__}: {e}{kept}") from e
    finally:
        progress.close()
        log.close()
    figures = _figures(out)
    if chain is not None and chain.average.count == 0:
        print(f"thermohil: note: no sample of the chain was kept (every {chain.every} steps after epoch "
              f"{chain.burn_in}, {state.step} steps in all): no posterior-predictive average", file=sys.stderr)
    assert last is not None
    return {"algo": cfg.algo, "dataset": problem.data.name, "loss": problem.loss, "epochs": cfg.epochs,
            "iterations": state.step, "n_params": int(objective.model.n_params),
            "final_train_loss": last["train_loss"], "final_test_loss": last["test_loss"],
            **{k: last[k] for k in (f"test_{score}", "posterior_test_loss", f"posterior_test_{score}",
                                    "posterior_samples") if k in last},
            **{k: totals[k] for k in ("wall_time_s", "device_time", "calibration_time", "projected_hw_time_s",
                                      "bytes_sent", "saturation_retries")},
            "seed": cfg.seed, "out": str(out), "figures": figures, "hyper": cfg.hyper, **links()}


def _evaluation(objective: Objective, theta: np.ndarray, ds: Any, score: str) -> dict:
    """Loss and score on both splits; a loss with no accuracy of its own (a generic torch loss
    on real targets) gives no score."""
    train_loss, train_score = objective.evaluate(theta, ds.X_train, ds.y_train)
    test_loss, test_score = objective.evaluate(theta, ds.X_test, ds.y_test)
    scores = {f"train_{score}": train_score, f"test_{score}": test_score} \
        if math.isfinite(train_score) and math.isfinite(test_score) else {}
    return {"train_loss": train_loss, "test_loss": test_loss, **scores}


def _step_row(step: int, epoch: int, info: dict, wall: float, uses_device: bool, timing: dict | None,
              totals: dict) -> dict:
    """The metrics row of one step; ``totals`` are brought up to date with it."""
    digital = wall - info.get("device_call_s", 0.0)
    hw = projected_hw_time(digital, info, uses_device, timing)
    totals["wall_time_s"] += wall
    totals["projected_hw_time_s"] += hw
    for key in ("device_time", "bytes_sent", "bytes_received", "calibration_time", "saturation_retries"):
        totals[key] += info.get(key, 0)
    return {"step": step, "epoch": epoch, "batch_loss": info["batch_loss"], "wall_time_s": wall,
            "digital_time_s": digital, "projected_hw_time_s": hw,
            **{k: info[k] for k in _STEP_INFO if k in info}, **_group_info(info), "cumulative": dict(totals)}


class _Progress:
    """A bar on a terminal; without one (e.g. under nohup), a plain line now and then."""

    def __init__(self, cfg: TrainConfig, name: str, total: int) -> None:
        show = sys.stderr.isatty() if cfg.progress is None else cfg.progress
        self.lines = cfg.progress is None and not show
        self.cfg, self.name, self.last_line = cfg, name, time.perf_counter()
        self.bar = None
        if show:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=f"{cfg.algo} on {name}", unit="it", file=sys.stderr)

    def step(self, loss: float) -> None:
        if self.bar:
            self.bar.update()
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def epoch(self, epoch: int, step: int, last: dict, score: str) -> None:
        cfg = self.cfg
        if self.lines and (time.perf_counter() - self.last_line >= LOG_EVERY_S or epoch + 1 == cfg.epochs):
            self.last_line = time.perf_counter()
            print(f"{cfg.algo} on {self.name}: epoch {epoch + 1}/{cfg.epochs}, step {step}, "
                  f"train loss {last['train_loss']:.4f}, test loss {last['test_loss']:.4f}, "
                  f"{score_text(score, last.get(f'test_{score}'))}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


_STEP_INFO = ("device_time", "bytes_sent", "bytes_received", "rank", "scale", "calibration_time",
              "direction_error", "xi", "kinetic_temperature", "saturation_retries")


def score_text(score: str, value: float | None) -> str:
    if value is None:
        return "no accuracy (the loss defines none)"
    return f"test R² {value:.4f}" if score == "r2" else f"test accuracy {value:.2%}"


