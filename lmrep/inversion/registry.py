"""The inversion methods by name. Each method's module registers itself here when it is imported; ``MODULES`` says
which module that is, so that a config names and checks its method without importing any (nor torch), and
``method`` imports one when it first runs."""
from __future__ import annotations

import importlib
from typing import Callable, Iterator

# a method: (target, observed outputs [(T_i, D)], InvertConfig, progress, true ids or None) -> one record per
# sequence; the true ids, when known, may add diagnostics but never change what is recovered
Method = Callable[..., Iterator[dict]]
MODULES = {"gd": "lmrep.inversion.gd", "nearest": "lmrep.inversion.pez", "exact": "lmrep.inversion.exact.method"}
METHODS: dict[str, Method] = {}  # filled as each method's module is imported (register_method)
READS_DEGRADATION: set[str] = set()  # methods that take ``degraded=`` (lmrep.inversion.degrade.Degraded per item)


def register_method(name: str, degradation: bool = False):
    """Decorator: make ``fn(target, outputs, cfg, progress, truth)`` available as method ``name``; with
    ``degradation``, it is also given what degraded each observed output (``degraded=[Degraded | None]``)."""
    def wrap(fn: Method) -> Method:
        METHODS[name] = fn
        if degradation:
            READS_DEGRADATION.add(name)
        return fn
    return wrap


def method_names() -> list[str]:
    """Every method's name, sorted, none of them imported: lmrep's own and any registered since."""
    return sorted(MODULES.keys() | METHODS.keys())


def method(name: str) -> Method:
    """The method ``name``, its module imported on first use."""
    if name not in METHODS and name in MODULES:
        importlib.import_module(MODULES[name])
    return METHODS[name]


def all_methods() -> dict[str, Method]:
    """The table of every method, each module imported."""
    for name in MODULES:
        method(name)
    return METHODS
