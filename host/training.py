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

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np

from host import data as datasets
from host.errors import DeviceError
from host.objective import Objective
from host.optim import ALGORITHMS, CurvatureSaturates, NonFiniteError
from host.optim import state_io
from host.posterior import PredictiveAverage
from host.problem import MODEL_DEFAULTS, Problem, build_problem
from host.run_record import (data_record, describe, device_record, fingerprint, library_version,
                               resolved_hyper, slug)
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

    ``out`` None writes to runs/ALGO-DATA-sSEED, as the CLI does.
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
    lease_ms: int = 30_000  # the device lease; on a declared-slow link, packets fit a third of it
    model: Any = None
    loss: Any = None
    #: keep every k-th step's θ as a sample of the chain (0: none) after ``posterior_burn_in``
    #: epochs (None: half the epochs), and report the posterior-predictive average beside the
    #: last iterate at each evaluation; the samples go to DIR/samples/.
    posterior_every: int = 0
    posterior_burn_in: int | None = None


#: A training run waits this long for another host's lease to run out (a host that crashed or
#: froze cannot release the device; the reference host's lease is 30 s).
LEASE_WAIT_S = 35.0


def say_waiting(seconds: float) -> None:
    print(f"thermohil: the device is held by another host; its lease runs out in {seconds:.1f} s, "
          "waiting", file=sys.stderr, flush=True)


class TrainingError(RuntimeError):
    """Training stopped; the last good checkpoint is kept."""


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
                     n_train: int) -> tuple[Any, Any]:
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
    url = device_url(cfg.device, model.n_params, rank, cfg.seed)
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
    if cfg.posterior_every and problem.loss not in ("ce", "bce", "mse"):
        raise ValueError(f"the posterior-predictive average needs loss ce, bce or mse, not {problem.loss}")
    out = Path(cfg.out) if cfg.out else default_out(cfg, problem)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    ckpt = out / "checkpoint.npz"
    config = _config(cfg, problem)
    saved = saved_meta = None
    if cfg.resume:
        saved, saved_meta = _check_resume(cfg, out, ckpt, config)
        config["resolved"]["posterior_burn_in"] = saved.get("resolved", {}).get(
            "posterior_burn_in", config["resolved"]["posterior_burn_in"])

    # everything that can be refused is checked (and the device connected) before the run
    # directory is touched, and the directory is only prepared once the first step has worked,
    # so a rejected command or a run that fails at once never damages an earlier run
    optimizer, dev = _build_optimizer(cfg, problem.objective, problem.n_outputs, len(problem.data.X_train))
    try:
        optimizer.check_model(problem.objective.model)   # e.g. a partition naming a layer the model lacks
        device = device_record(dev.info()) if dev is not None else None
        config["resolved"]["device"] = device

        def prepare() -> None:
            out.mkdir(parents=True, exist_ok=True)
            if saved is None:
                if (out / "metrics.jsonl").exists():
                    print(f"thermohil: note: {out} held an earlier run; it is replaced (--resume continues "
                          "a run instead)", file=sys.stderr)
                (out / "config.json").write_text(json.dumps(config, indent=1))
                ckpt.unlink(missing_ok=True)  # a stale checkpoint of an earlier run is not ours
                (out / "model.pt").unlink(missing_ok=True)
                shutil.rmtree(out / "samples", ignore_errors=True)
            else:
                _trim_metrics(out / "metrics.jsonl", saved_meta["step"])
                saved["epochs"] = cfg.epochs          # the run now aims at the new epoch count
                resolved = saved.setdefault("resolved", {})
                resolved.setdefault("sessions", [{"from_step": 0, "device": resolved.get("device")}])
                resolved["sessions"].append({"from_step": saved_meta["step"], "device": device})
                (out / "config.json").write_text(json.dumps(saved, indent=1))

        timing = dev.info().get("timing") if dev is not None else None
        startup = _calibrate(dev) if dev is not None and cfg.calibrate else 0.0
        return _loop(cfg, problem, optimizer, out, ckpt, prepare, config["resolved"]["posterior_burn_in"],
                     timing, startup, link=(lambda: _link_stats(dev)) if dev is not None else None)
    finally:
        if dev is not None:
            dev.close()


def default_out(cfg: TrainConfig, problem: Problem) -> Path:
    """runs/ALGO-DATA-sSEED, with a short tag of any setting that is not the default (so runs
    with other hyperparameters, models or data never land in one another's directory, and the
    same command finds its own run again for --resume)."""
    data = problem.data.name if problem.data.name != "arrays" else f"arrays-{fingerprint(problem.data)[:8]}"
    settings = {k: describe(getattr(cfg, k)) for k in ("hyper", "model", "loss", "hidden",
                                                       "posterior_every", "posterior_burn_in")
                if getattr(cfg, k) not in (None, {}, 0)}
    if cfg.batch_size not in (None, problem.defaults["batch"]):
        settings["batch_size"] = cfg.batch_size
    if cfg.activation != "relu":
        settings["activation"] = cfg.activation
    tag = "-" + hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:6] if settings else ""
    return Path("runs") / f"{cfg.algo}-{slug(data)}-s{cfg.seed}{tag}"


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


#: What a resumed run must share with the run it continues.
_RESUME_KEYS = ("algo", "dataset", "model", "loss", "seed", "batch_size", "hidden", "activation", "hyper",
                "posterior_every", "posterior_burn_in")


def _config(cfg: TrainConfig, problem: Problem) -> dict:
    """config.json: the options as given (objects by their description) and what they resolved to."""
    given = {f.name: describe(getattr(cfg, f.name)) for f in fields(cfg)}
    if not isinstance(cfg.dataset, str):
        given["dataset"] = problem.data.name if problem.data.name != "arrays" else given["dataset"]
    given["loss"] = problem.loss
    spec = ALGORITHMS[cfg.algo]
    given["resolved"] = {"hyper": resolved_hyper(spec, cfg.hyper), "data": data_record(problem.data),
                         "model": problem.record, "n_outputs": problem.n_outputs,
                         "algorithm": spec.doc or cfg.algo, "device": None,
                         "posterior_burn_in": (cfg.posterior_burn_in if cfg.posterior_burn_in is not None
                                               else cfg.epochs // 2) if cfg.posterior_every else None,
                         "library_version": library_version()}
    return given


def _check_resume(cfg: TrainConfig, out: Path, ckpt: Path, config: dict) -> tuple[dict, dict]:
    if not ckpt.exists():
        raise ValueError(f"--resume: {out} holds no checkpoint.npz (no earlier run there, or it "
                         "stopped before its first epoch ended)")
    saved = json.loads((out / "config.json").read_text())
    for key in _RESUME_KEYS:
        default = config[key] if key in ("model", "loss") else None   # runs recorded before these keys
        if saved.get(key, default) != config[key]:
            raise ValueError(f"--resume: {key} was {saved.get(key)!r} in {out}, now {config[key]!r}")
    saved_meta = _checkpoint_meta(ckpt)
    done = saved_meta["epoch"] + 1
    if done >= cfg.epochs:
        raise ValueError(f"--resume: {out} already holds {done} epoch(s); ask for more with --epochs")
    return saved, saved_meta


def _calibrate(dev: Any) -> float:
    """Calibrate a device whose calibration is not valid (saying so); the device time it took."""
    from host.calibration import ensure_calibrated
    report = ensure_calibrated(dev, say=lambda m: print(f"thermohil: {m}", file=sys.stderr))
    return report.device_time if report is not None else 0.0


def _link_stats(dev: Any) -> dict[str, int]:
    """The link's counters since this session connected (packets, bytes, retries, timeouts, CRC
    and link errors): a run that trained through a flaky link says so in metrics.jsonl."""
    stats = dev.stats
    return stats.as_dict() if hasattr(stats, "as_dict") else \
        {k: v for k, v in vars(stats).items() if isinstance(v, int)}


def _checkpoint_meta(path: Path) -> dict:
    with np.load(path) as z:
        return json.loads(str(z["meta"]))


def _trim_metrics(path: Path, step: int) -> None:
    """Drop rows written after the checkpoint's step (a run interrupted mid-epoch), so a
    resumed run does not log those steps twice."""
    if not path.exists():
        return
    rows = path.read_text().splitlines(keepends=True)
    keep = [r for r in rows if json.loads(r).get("step", 0) <= step]
    if len(keep) != len(rows):
        path.write_text("".join(keep))


def _loop(cfg: TrainConfig, problem: Problem, optimizer: Any, out: Path, ckpt: Path,
          prepare: Callable[[], None], burn_in: int | None, timing: dict | None = None,
          calibration_time: float = 0.0, link: Callable[[], dict[str, int]] | None = None) -> dict:
    ds, objective = problem.data, problem.objective
    rng = np.random.default_rng(cfg.seed)
    state = optimizer.init(objective.model.init(rng), rng, groups=objective.model.groups)
    start_epoch, totals = 0, {"wall_time_s": 0.0, "device_time": 0.0, "projected_hw_time_s": 0.0,
                              "bytes_sent": 0, "bytes_received": 0, "calibration_time": 0.0}
    chain = Chain(cfg.posterior_every, burn_in or 0, problem, out) if cfg.posterior_every else None
    if cfg.resume:
        state, saved_meta = state_io.load(ckpt, state)
        start_epoch, saved = saved_meta["epoch"] + 1, saved_meta["totals"]
        totals.update(saved)
        if chain is not None:
            chain.resume(saved_meta.get("posterior_samples", 0))
    totals["device_time"] += calibration_time      # this session's start-up calibration
    totals["calibration_time"] += calibration_time
    metrics_f = None
    pending: list[dict] = []             # rows written once the run directory is prepared
    name = problem.data.name
    score = "r2" if problem.loss == "mse" else "accuracy"    # regression is scored by R²
    n_batches = math.ceil(len(ds.X_train) / cfg.batch_size)
    show = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    log_lines = cfg.progress is None and not show   # e.g. under nohup: a plain line now and then
    last_line = time.perf_counter()
    bar = None
    if show:
        from tqdm import tqdm
        bar = tqdm(total=(cfg.epochs - start_epoch) * n_batches, desc=f"{cfg.algo} on {name}",
                   unit="it", file=sys.stderr)

    def emit(row: dict) -> None:
        if metrics_f is None:
            pending.append(row)
            return
        metrics_f.write(json.dumps(row) + "\n")
        metrics_f.flush()

    def open_directory() -> None:
        nonlocal metrics_f
        prepare()
        metrics_f = open(out / "metrics.jsonl", "a" if cfg.resume else "w")
        for row in pending:
            emit(row)

    def evaluate(epoch: int) -> dict:
        train_loss, train_score = objective.evaluate(state.theta, ds.X_train, ds.y_train)
        test_loss, test_score = objective.evaluate(state.theta, ds.X_test, ds.y_test)
        row = {"step": state.step, "epoch": epoch, "train_loss": train_loss, f"train_{score}": train_score,
               "test_loss": test_loss, f"test_{score}": test_score, **(chain.scores(score) if chain else {}),
               **totals}
        emit(row)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):   # finite steps, overflowed model
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
                digital = wall - info.get("device_call_s", 0.0)
                hw = projected_hw_time(digital, info, optimizer.uses_device, timing)
                for key, value in (("wall_time_s", wall), ("projected_hw_time_s", hw)) + tuple(
                        (k, info.get(k, 0)) for k in ("device_time", "bytes_sent", "bytes_received",
                                                       "calibration_time")):
                    totals[key] += value
                emit({"step": state.step, "epoch": epoch + 1, "batch_loss": info["batch_loss"],
                      "wall_time_s": wall, "digital_time_s": digital, "projected_hw_time_s": hw,
                      **{k: info[k] for k in _STEP_INFO if k in info},
                      **_group_info(info), "cumulative": dict(totals),
                      **({"link": link()} if link else {})})
                if metrics_f is None:
                    open_directory()
                if chain is not None:
                    chain.offer(epoch, state)
                if bar:
                    bar.update()
                    bar.set_postfix(loss=f"{info['batch_loss']:.4f}")
                if cfg.eval_every and state.step % cfg.eval_every == 0:
                    last = evaluate(epoch + 1)
            if last is None or last["step"] != state.step:   # not evaluated at this step already
                last = evaluate(epoch + 1)
            if chain is not None:
                chain.save(epoch)
            state_io.save(ckpt, state, {"epoch": epoch, "totals": totals,
                                        **({"posterior_samples": chain.average.count} if chain else {})})
            _save_module(out, objective.model, state.theta)
            if log_lines and (time.perf_counter() - last_line >= LOG_EVERY_S or epoch + 1 == cfg.epochs):
                last_line = time.perf_counter()
                print(f"{cfg.algo} on {name}: epoch {epoch + 1}/{cfg.epochs}, step {state.step}, "
                      f"train loss {last['train_loss']:.4f}, test loss {last['test_loss']:.4f}, "
                      f"test {_score_text(score, last[f'test_{score}'])}",
                      file=sys.stderr, flush=True)
    except (NonFiniteError, CurvatureSaturates) as e:
        kept = f" (checkpoint of the last completed epoch: {ckpt})" if ckpt.exists() else \
            " (no epoch was completed: no checkpoint)"
        raise TrainingError(f"{e}{kept}") from e
    except DeviceError as e:
        # never go on training on a device that rebooted, was taken over or stopped answering:
        # the steps since the last checkpoint are dropped, and --resume continues from it.
        # The last row says why, with the link's counters as they were when it failed.
        emit({"step": state.step, "error": f"{type(e).__name__}: {e}",
              **({"link": link()} if link else {})})
        kept = (f"; the last completed epoch is checkpointed in {ckpt}: continue with --resume"
                if ckpt.exists() else "; no epoch was completed, so there is no checkpoint")
        raise TrainingError(f"the device failed at step {state.step}, training stopped: "
                            f"{type(e).__name__}: {e}{kept}") from e
    finally:
        if bar:
            bar.close()
        if metrics_f is not None:
            metrics_f.close()
    figures = _figures(out)
    if chain is not None and chain.average.count == 0:
        print(f"thermohil: note: no sample of the chain was kept (every {chain.every} steps after epoch "
              f"{chain.burn_in}, {state.step} steps in all): no posterior-predictive average", file=sys.stderr)
    assert last is not None
    return {"algo": cfg.algo, "dataset": name, "loss": problem.loss, "epochs": cfg.epochs,
            "iterations": state.step, "n_params": int(objective.model.n_params),
            "final_train_loss": last["train_loss"], "final_test_loss": last["test_loss"],
            f"test_{score}": last[f"test_{score}"],
            **{k: last[k] for k in ("posterior_test_loss", f"posterior_test_{score}", "posterior_samples")
               if k in last},
            "wall_time_s": totals["wall_time_s"],
            "device_time": totals["device_time"], "calibration_time": totals["calibration_time"],
            "projected_hw_time_s": totals["projected_hw_time_s"],
            "bytes_sent": totals["bytes_sent"], "seed": cfg.seed, "out": str(out), "figures": figures,
            "hyper": cfg.hyper, **({"link": link()} if link else {})}


_STEP_INFO = ("device_time", "bytes_sent", "bytes_received", "rank", "scale", "calibration_time",
              "direction_error", "xi", "kinetic_temperature")


def _score_text(score: str, value: float) -> str:
    return f"R² {value:.4f}" if score == "r2" else f"accuracy {value:.2%}"


def _save_module(out: Path, model: Any, theta: np.ndarray) -> None:
    """A torch model's trained weights as DIR/model.pt (``module.load_state_dict(torch.load(...))``),
    so the run is usable with torch alone; the module holds them too."""
    if hasattr(model, "module") and hasattr(model, "load"):
        import torch
        model.load(theta)
        tmp = out / "model.pt.tmp"
        torch.save(model.module.state_dict(), tmp)
        tmp.replace(out / "model.pt")


class Chain:
    """The kept samples of a sampler's chain: their predictive average (scored at evaluations)
    and the samples themselves, one file per epoch under DIR/samples/."""

    def __init__(self, every: int, burn_in: int, problem: Problem, out: Path) -> None:
        self.every, self.burn_in = every, burn_in
        self.model = problem.objective.model
        self.average = PredictiveAverage(problem.loss, problem.data.X_test, problem.data.y_test)
        self.dir = out / "samples"
        self.pending: list[np.ndarray] = []

    def offer(self, epoch: int, state: Any) -> None:
        if epoch >= self.burn_in and state.step % self.every == 0:
            self.average.add(self.model, state.theta)
            self.pending.append(np.array(state.theta))

    def scores(self, score: str) -> dict:
        if self.average.count == 0:
            return {}
        loss, value = self.average.scores()
        return {"posterior_test_loss": loss, f"posterior_test_{score}": value,
                "posterior_samples": self.average.count}

    def save(self, epoch: int) -> None:
        """At a checkpoint: this epoch's samples and the running average (what a resume needs)."""
        self.dir.mkdir(exist_ok=True)
        if self.pending:
            np.save(self.dir / f"epoch-{epoch + 1:04d}.npy", np.stack(self.pending))
        self.pending = []
        self.average.save(self.dir / "average.npz")

    def resume(self, count: int) -> None:
        """The average as of the checkpoint, which counted ``count`` samples; anything else (a
        crash between the two writes) is refused rather than averaged twice or lost."""
        if count:
            if not (self.dir / "average.npz").exists():
                raise ValueError(f"--resume: the checkpoint counts {count} samples of the chain, but "
                                 f"{self.dir} holds no average.npz")
            self.average.load(self.dir / "average.npz")
        if self.average.count != count:
            raise ValueError(f"--resume: {self.dir}/average.npz holds {self.average.count} samples, the "
                             f"checkpoint counts {count}: they were not written together; start afresh")
