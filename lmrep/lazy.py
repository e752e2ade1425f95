"""Packages whose names are imported on first use (PEP 562), so that importing one of their torch-free modules (a
config, a table of names) does not import the rest: the command line reads and checks its arguments before torch
loads."""
from __future__ import annotations

import importlib
import sys


def lazy(package: str, names: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each name it offers to the module (relative to
    the package) that defines it."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{names[name]}", package), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))
    return __getattr__, __dir__
