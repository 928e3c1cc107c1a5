"""An algorithm's hyperparameters read from its builder: names and defaults from the signature,
what each means from the docstring's ``Args:`` block — so both are written once, and the CLI,
``--help`` and partition entries are generated from them."""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable

HIDDEN = ("device", "headroom", "everywhere")     # given by the caller, not hyperparameters
DEVICE_ONLY = ("stability",)        # meaningful only with a device (a builder may list more)


def default(builder: Callable, name: str) -> Any:
    """The default of one of ``builder``'s parameters (so a preset can reuse it, not copy it)."""
    return inspect.signature(builder).parameters[name].default


def summary(builder: Callable) -> str:
    doc = inspect.getdoc(builder) or builder.__name__
    return doc.split("\n\n")[0].strip().rstrip(":").replace("\n", " ")


def arg_help(builder: Callable) -> dict[str, str]:
    """name -> help from the docstring's ``Args:`` block (and from ``builder.help_from``'s,
    for the arguments it shares with another builder)."""
    base = arg_help(builder.help_from) if hasattr(builder, "help_from") else {}
    doc = inspect.getdoc(builder) or ""
    block = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    out: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        m = re.match(r"^    (\w+): (.*)$", line)
        if m:
            name = m.group(1)
            out[name] = m.group(2).strip()
        elif name and line.startswith("        "):
            out[name] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            break
    return {**base, **out}


def _type(param: inspect.Parameter) -> type:
    d = param.default
    if isinstance(d, bool) or d is None or d is inspect.Parameter.empty:
        text = str(param.annotation)
        return int if text.startswith("int") else float if "float" in text else str
    return type(d) if isinstance(d, (int, float, str)) else str


def hyperparameters(builder: Callable, with_device: bool) -> dict[str, tuple[type, Any, str]]:
    """name -> (type, default, help) of the builder's hyperparameters."""
    helps = arg_help(builder)
    device_only = (*DEVICE_ONLY, *getattr(builder, "device_only", ()))
    out = {}
    for name, p in inspect.signature(builder).parameters.items():
        if name in HIDDEN or (not with_device and name in device_only) or p.kind is p.VAR_KEYWORD:
            continue
        out[name] = (_type(p), None if p.default is inspect.Parameter.empty else p.default,
                     helps.get(name, name))
    return out


def convert(value: Any, typ: type, name: str, where: str) -> Any:
    """A value from text (a CLI option, a partition entry) as its parameter's type."""
    if not isinstance(value, str) or typ is str:
        return value
    try:
        return int(float(value)) if typ is int and float(value).is_integer() else typ(value)
    except ValueError:
        raise ValueError(f"{name} in {where!r} must be a {typ.__name__}, got {value!r}") from None
