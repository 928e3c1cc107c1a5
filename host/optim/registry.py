"""``ALGORITHMS``: what ``thermohil train --algo NAME`` can run, generated from the catalog of
transforms and the presets — hyperparameters, defaults and help all come from the builders'
signatures and docstrings (host.optim.signature), so nothing here repeats them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from host.optim.catalog import ALWAYS, NEVER, OPTIONAL, TRANSFORMS
from host.optim.optimizer import Optimizer
from host.optim.partitioned import entries_on_device, needs_device, partitioned
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
    fixed: dict | None = None          # arguments the name itself sets (e.g. everywhere=True)

    def needs_device(self, hyper: dict | None = None) -> bool:
        """Whether this run needs a device (a partition: whether an entry does)."""
        if self.builder is partitioned:
            return needs_device(self._value("partition", hyper), bool((self.fixed or {}).get("everywhere")))
        return self.uses_device

    def _value(self, name: str, hyper: dict | None) -> Any:
        return (hyper or {}).get(name, self.params[name][1])

    def build(self, device: Any = None, **hyper: Any) -> Optimizer:
        """The optimizer, with this algorithm's defaults for what ``hyper`` leaves out."""
        wrong = sorted(set(hyper) - set(self.params))
        if wrong:
            raise ValueError(f"{self.name} takes no hyperparameter(s) {', '.join(wrong)}; "
                             f"it takes: {', '.join(self.params)}")
        kwargs = {**{k: v[1] for k, v in self.params.items()}, **hyper, **(self.fixed or {})}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if self.needs_device(hyper):
            if device is None:
                raise ValueError(f"{self.name} runs on a device: give one")
            kwargs["device"] = device
        transform = self.builder(**kwargs)
        return Optimizer(self.name, every_layer(transform) if self.per_layer else transform)

    def curvature_groups(self, hyper: dict, layers: list[int]) -> int:
        """How many blocks of batch × outputs rows one step uploads as its coupling (for the
        rank a spawned device needs)."""
        if self.builder is partitioned:
            return max(1, entries_on_device(self._value("partition", hyper), layers,
                                            bool((self.fixed or {}).get("everywhere"))))
        return 1


ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register(name: str, builder: Callable, device: str, per_layer: bool = False,
             doc: str | None = None, fixed: dict | None = None) -> None:
    """``name`` (and, for a transform that may use the device, ``name-device``)."""
    text = doc or summary(builder)
    if device in (NEVER, OPTIONAL):
        ALGORITHMS[name] = AlgorithmSpec(name, builder, hyperparameters(builder, False), False, text,
                                         per_layer, fixed)
    if device in (ALWAYS, OPTIONAL):
        label = name if device == ALWAYS else f"{name}-device"
        ALGORITHMS[label] = AlgorithmSpec(label, builder, hyperparameters(builder, True), True,
                                          text if device == ALWAYS else
                                          f"{text}; momenta or samples in the device's cells",
                                          per_layer, fixed)


for _name, _entry in TRANSFORMS.items():
    register(_name, _entry.build, _entry.device, _entry.per_layer)
register("adlala", adlala, OPTIONAL)
register("lol", lol, OPTIONAL)
register("lala", lala, OPTIONAL)
register("partitioned", partitioned, NEVER)
ALGORITHMS["partitioned-device"] = AlgorithmSpec(
    "partitioned-device", partitioned, hyperparameters(partitioned, True), True,
    "any partition, every entry that can use the device on it", fixed={"everywhere": True})
ALGORITHMS["natural-langevin"] = AlgorithmSpec(
    "natural-langevin", natural := TRANSFORMS["natural"].build, hyperparameters(natural, True), True,
    summary(natural) + " (one device sample per step; = natural-device)")
