"""``ALGORITHMS``: what ``thermohil train --algo NAME`` can run, generated from the catalog of
transforms and the presets — hyperparameters, defaults and help all come from the builders'
signatures and docstrings (host.optim.signature), so nothing here repeats them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from host.optim.catalog import ALWAYS, NEVER, OPTIONAL, TRANSFORMS, Entry
from host.optim.optimizer import Optimizer
from host.optim.partition_text import needs_device, partitioned, uploading_layers
from host.optim.presets import adlala, every_layer, lala, lol
from host.optim.signature import hyperparameters, summary


@dataclass
class AlgorithmSpec:
    name: str
    builder: Callable
    params: dict[str, tuple[type, Any, str]]
    uses_device: bool
    doc: str
    per_layer: bool = False
    uploads: bool = False                   # uploads the batch's curvature to the device
    fixed: dict = field(default_factory=dict)   # arguments the name itself sets
    text_form: bool = False                 # a partition written as text (``--partition``)

    def needs_device(self, hyper: dict | None = None) -> bool:
        """Whether this run needs a device (a partition: whether an entry does)."""
        if self.text_form:
            return needs_device(self._value("partition", hyper), self.fixed.get("everywhere", False))
        return self.uses_device

    def _value(self, name: str, hyper: dict | None) -> Any:
        return (hyper or {}).get(name, self.params[name][1])

    def build(self, device: Any = None, **hyper: Any) -> Optimizer:
        """The optimizer, with this algorithm's defaults for what ``hyper`` leaves out."""
        wrong = sorted(set(hyper) - set(self.params))
        if wrong:
            raise ValueError(f"{self.name} takes no hyperparameter(s) {', '.join(wrong)}; "
                             f"it takes: {', '.join(self.params)}")
        kwargs = {**{k: v[1] for k, v in self.params.items() if v[1] is not None}, **hyper, **self.fixed}
        if self.needs_device(hyper):
            if device is None:
                raise ValueError(f"{self.name} runs on a device: give one")
            kwargs["device"] = device
        transform = self.builder(**kwargs)
        return Optimizer(self.name, every_layer(transform) if self.per_layer else transform)

    def curvature_blocks(self, hyper: dict, layers: list[int]) -> int:
        """How many blocks of batch × outputs rows one step uploads as its coupling (the rank a
        spawned device needs is that times batch × outputs; 0: none)."""
        if self.text_form:
            return uploading_layers(self._value("partition", hyper), layers, self.fixed.get("everywhere", False))
        return int(self.uploads and self.uses_device)


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register(name: str, build: Callable, device: str = NEVER, per_layer: bool = False,
             uploads: bool = False) -> None:
    """Make a transform builder of your own available by name — to ``thermohil train --algo``
    (from a script that calls ``host.train``), ``ALGORITHMS`` and partition entries — as one
    line of ``catalog.TRANSFORMS`` does for the library's own. ``device``: NEVER, ALWAYS or
    OPTIONAL (then the builder takes ``device=``)."""
    if name in TRANSFORMS or name in ALGORITHMS:
        raise ValueError(f"{name!r} is already an algorithm; choose another name")
    if device not in (NEVER, ALWAYS, OPTIONAL):
        raise ValueError(f"device must be one of {NEVER!r}, {ALWAYS!r}, {OPTIONAL!r}, got {device!r}")
    TRANSFORMS[name] = Entry(build, device, per_layer, uploads)
    _register(name, build, device, per_layer, uploads)


def _register(name: str, builder: Callable, device: str, per_layer: bool = False, uploads: bool = False,
              doc: str | None = None, fixed: dict | None = None, text_form: bool = False) -> None:
    """``name`` (and, for a transform that may use the device, ``name-device``)."""
    text, fixed = doc or summary(builder), fixed or {}
    if device in (NEVER, OPTIONAL):
        ALGORITHMS[name] = AlgorithmSpec(name, builder, hyperparameters(builder, False), False, text,
                                         per_layer, uploads, fixed, text_form)
    if device in (ALWAYS, OPTIONAL):
        label = name if device == ALWAYS else f"{name}-device"
        ALGORITHMS[label] = AlgorithmSpec(label, builder, hyperparameters(builder, True), True,
                                          text if device == ALWAYS else
                                          f"{text}; momenta or samples in the device's cells",
                                          per_layer, uploads, fixed, text_form)


for _name, _entry in TRANSFORMS.items():
    _register(_name, _entry.build, _entry.device, _entry.per_layer, _entry.uploads)
_register("adlala", adlala, OPTIONAL)
_register("lol", lol, OPTIONAL)
_register("lala", lala, OPTIONAL)
_register("partitioned", partitioned, NEVER, text_form=True)
_register("partitioned-device", partitioned, ALWAYS, text_form=True, fixed={"everywhere": True},
          doc="any partition, every entry that can use the device on it")
_register("natural-langevin", TRANSFORMS["natural"].build, ALWAYS, uploads=True,
          doc=summary(TRANSFORMS["natural"].build) + " (one device sample per step; = natural-device)")
