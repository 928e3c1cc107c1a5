"""Load a user's object named as ``path/to/file.py:name`` or ``package.module:name``.

How the CLI reaches a user's model factory (``--model``) or data loader (``--dataset``) without
the user registering anything in the library. Every failure is one line that names the file
and what is wrong with it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def is_reference(text: str) -> bool:
    """Whether ``text`` names user code (``file.py:name`` or ``module:name``), not a built-in name."""
    return ":" in text and not text.startswith(("spawn:", "tcp:", "ipc:"))


def load_object(ref: str, what: str) -> Any:
    """The object ``ref`` names; ``what`` ('model factory', 'data set') is for the messages."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise ValueError(f"{what} {ref!r}: give FILE.py:NAME or MODULE:NAME, e.g. models.py:build_model")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where), what)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise ValueError(f"{what} {ref!r}: cannot import module {where!r}: {e}") from None
    if not hasattr(module, name):
        public = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ValueError(f"{what} {ref!r}: {where} defines no {name!r}"
                         f"{'; it defines: ' + ', '.join(public[:12]) if public else ''}")
    return getattr(module, name)


def _load_file(path: Path, what: str) -> Any:
    if not path.exists():
        raise ValueError(f"{what}: no such file {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"{what}: {str(path)!r} is a directory, not a .py file")
    name = f"thermohil_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{what}: {str(path)!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module           # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise ValueError(f"{what}: {path} failed to import: {type(e).__name__}: {e}") from None
    return module
