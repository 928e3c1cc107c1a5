"""What a training run trains: a data set, a model and a loss, made into an ``Objective``.

Each may be the library's own or the user's: a data set by name, ``file.py:loader`` or arrays
(``host.data.resolve``); a model as None (the built-in MLP), a host.nn model, a torch module or
a factory ``build(n_inputs, n_outputs)`` (given, or as ``file.py:build``); a loss as 'ce',
'bce', 'mse' (or, for a torch model, a torch loss). Everything is checked before a run starts,
and ``record`` says what was built, for the run's config.json.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from host import nn
from host.nn import LOSSES
from host.data import Dataset, resolve
from host.data.arrays import loss_name
from host.objective import Objective
from host.run_record import describe

#: The built-in MLP and batch per data set: the spiral network of the seed paper (2-100-1 ReLU,
#: sigmoid/BCE, batch 25), a small digits classifier; a user's data gets the last row.
MODEL_DEFAULTS = {
    "spiral": dict(hidden=(100,), batch=25),
    "digits": dict(hidden=(32,), batch=32),
}
USER_DEFAULTS = dict(hidden=(32,), batch=32)


@dataclass
class Problem:
    data: Dataset
    objective: Objective
    loss: str            # 'ce', 'bce', 'mse', or a description of a user's torch loss
    n_outputs: int
    record: dict         # the model as config.json records it

    @property
    def defaults(self) -> dict:
        return MODEL_DEFAULTS.get(self.data.name, USER_DEFAULTS)

    def initial_theta(self, rng: np.random.Generator) -> np.ndarray:
        """Where training starts: a torch module you passed trains from the weights it has (it
        may be pretrained); the built-in MLP and a factory's module are initialised from the
        run's seed."""
        model = self.objective.model
        if self.record.get("kind") == "torch" and "factory" not in self.record:
            return model.flatten()
        return model.init(rng)


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _input_size(ds: Dataset) -> int | tuple[int, ...]:
    shape = ds.X_train.shape[1:]
    return int(shape[0]) if len(shape) == 1 else tuple(int(s) for s in shape)


def _call_factory(factory: Any, name: str, ds: Dataset, n_out: int) -> Any:
    try:
        return factory(_input_size(ds), n_out)
    except Exception as e:
        raise ValueError(f"model factory {name}: calling it with (n_inputs={_input_size(ds)}, "
                         f"n_outputs={n_out}) raised {type(e).__name__}: {e}") from None


def build_model(spec: Any, ds: Dataset, n_out: int, hidden: tuple[int, ...] | None,
                activation: str) -> tuple[Any, dict]:
    """The model (torch modules wrapped as ``TorchModel``) and its record."""
    ref = None
    if spec is None:
        if ds.X_train.ndim != 2:
            raise ValueError(f"the built-in MLP takes flat feature rows; these inputs have shape "
                             f"{ds.X_train.shape[1:]}: bring a model (--model FILE.py:FACTORY)")
        widths = tuple(hidden) if hidden else MODEL_DEFAULTS.get(ds.name, USER_DEFAULTS)["hidden"]
        sizes = [ds.X_train.shape[1], *widths, n_out]
        model = nn.MLP(sizes, activation=activation)
        return model, {"kind": "mlp", "sizes": sizes, "activation": activation, "n_params": model.n_params}
    if hidden:
        raise ValueError("hidden widths shape the built-in MLP; a model of your own has its own layers")
    if isinstance(spec, str):
        from host.user_code import load_object
        ref, spec = spec, load_object(spec, "model factory")
        if not callable(spec):
            raise ValueError(f"model factory {ref}: it is an object of type {type(spec).__name__}, "
                             "not a function")
    if callable(spec) and not _is_torch_module(spec) and not hasattr(spec, "linearize"):
        name = ref or getattr(spec, "__qualname__", repr(spec))
        spec = _call_factory(spec, name, ds, n_out)
        if spec is None or not (_is_torch_module(spec) or hasattr(spec, "linearize")):
            raise ValueError(f"model factory {name} returned {type(spec).__name__}: it must return a "
                             "torch.nn.Module (or a host.nn model)")
    if _is_torch_module(spec):
        from host.torch import TorchModel
        model = TorchModel(spec)
        kind = "torch"
    elif hasattr(spec, "linearize") and hasattr(spec, "n_params"):
        model, kind = spec, "host.nn"
    else:
        raise ValueError(f"cannot train a {type(spec).__name__}: give a torch.nn.Module, a host.nn model, "
                         "a factory build(n_inputs, n_outputs) or FILE.py:FACTORY")
    module = getattr(model, "module", model)
    record = {"kind": kind, "class": f"{type(module).__module__}.{type(module).__qualname__}",
              "n_params": int(model.n_params),
              "description": type(module).__name__,
              "architecture": repr(module)[:4000], "n_inputs": _input_size(ds), "n_outputs": n_out}
    if ref:
        record["factory"] = ref
        where = ref.rpartition(":")[0]
        if where.endswith(".py"):           # load_run finds the file from anywhere
            from pathlib import Path
            record["factory_file"] = str(Path(where).resolve())
    if hasattr(model, "sizes"):
        record["sizes"] = list(model.sizes)
    return model, record


def check_outputs(model: Any, ds: Dataset, n_out: int, loss: str, where: str) -> None:
    """A model whose output size does not fit the data set and loss, refused in one line."""
    theta = _start(model)
    try:
        out = np.asarray(model.apply(theta, ds.X_train[:2]))
    except Exception as e:
        raise ValueError(f"{where}: it fails on the data set's inputs (shape {ds.X_train.shape[1:]}): "
                         f"{type(e).__name__}: {e}") from None
    got = out.reshape(out.shape[0], -1).shape[1] if out.ndim else 0
    if out.ndim == 0 or out.shape[0] != 2 or got != n_out:
        need = {"ce": f"one logit per class ({ds.n_classes})", "bce": "one logit",
                "mse": f"one per target column ({n_out})"}.get(loss, f"{n_out}")
        raise ValueError(f"{where} gives {got} output(s) per example; {ds.name} under loss {loss} "
                         f"needs {need}")


#: The closed-form losses by their ``name``: what decides the score (accuracy or R²), the
#: outputs the data need and the posterior-predictive average, however the loss was given.
_CANONICAL = {"softmax_cross_entropy": "ce", "sigmoid_bce": "bce", "mse": "mse"}


def build_problem(dataset: Any, model: Any = None, loss: Any = None, *, hidden: tuple[int, ...] | None = None,
                  activation: str = "relu") -> Problem:
    """Data, model and loss, each checked against the others. A split the data set does not
    bring is seeded with 0, whatever the run's seed, so a seed sweep keeps one split."""
    named = loss is None or isinstance(loss, str)
    ds = resolve(dataset, loss=loss if named else None, seed=0)
    if named:
        name = ds.loss if loss is None else loss_name(loss)
    else:                    # a loss object: its closed form when it has one (MSELoss → 'mse')
        name = _CANONICAL.get(getattr(_library_loss(loss), "name", ""), "") or describe(loss)
    n_out = ds.n_outputs(name if name in LOSSES else None)
    m, record = build_model(model, ds, n_out, hidden, activation)
    where = f"model {record.get('factory') or record.get('class', 'MLP')}"
    check_outputs(m, ds, n_out, name if name in LOSSES else ds.loss, where)
    if record["kind"] == "torch":
        from host.torch import TorchObjective
        objective = TorchObjective(m, name if named else loss)
    elif named:
        objective = Objective(m, LOSSES[name]())
    elif hasattr(loss, "hessian") and hasattr(loss, "value"):
        objective = Objective(m, loss)
    else:
        raise ValueError("a host.nn model trains with 'ce', 'bce', 'mse' or a host.nn loss object")
    try:                                  # the loss must accept the model's outputs and these targets
        objective.evaluate(_start(m), ds.X_train[:2], ds.y_train[:2])
    except Exception as e:
        raise ValueError(f"the loss {name} does not fit {ds.name}'s targets (shape {ds.y_train.shape[1:] or '(n,)'}, "
                         f"{ds.y_train.dtype}) and the model's outputs: {type(e).__name__}: {e}") from None
    return Problem(ds, objective, name, n_out, record)


def _library_loss(loss: Any) -> Any:
    """The host.nn form of a loss object (a torch loss module maps to its closed form)."""
    if hasattr(loss, "hessian") and hasattr(loss, "value"):
        return loss
    if _is_torch_module(loss) or callable(loss):
        try:
            from host.torch.objective import loss_of
        except ImportError:
            return None
        try:
            return loss_of(loss)
        except ValueError:
            return None
    return None


def _start(model: Any) -> np.ndarray:
    """Parameters to probe a model with: a module's own (a check must not re-initialise it)."""
    return model.flatten() if hasattr(model, "flatten") else model.init(np.random.default_rng(0))
