"""Packages whose names are imported on first use (PEP 562), so that importing one of their torch-free modules (a
config, a table of names) does not import the rest: the command line reads and checks its arguments before torch
loads."""
from __future__ import annotations

import importlib
import sys
import types


class _Package(types.ModuleType):
    """A lazy package whose offered names win over its submodules of the same name: ``lmrep.experiments.reproduce``
    is the function, not reproduce.py, as an eager ``from .reproduce import reproduce`` made it. (Importing a
    submodule sets the package's attribute of that name to the module; here that is skipped for offered names.)"""

    def __setattr__(self, name: str, value) -> None:
        if not (name in self.__dict__.get("_offered", ()) and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


def lazy(package: str, names: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each name it offers to the module (relative to
    the package) that defines it."""
    module = sys.modules[package]
    module._offered = frozenset(names)
    module.__class__ = _Package

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f".{names[name]}", package), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(names))
    return __getattr__, __dir__
