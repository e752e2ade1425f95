"""The inversion methods by name. Each method's module registers itself here when ``lmrep.inversion`` is imported;
the config checks names against it and ``invert`` dispatches through it."""
from __future__ import annotations

from typing import Callable, Iterator

# a method: (target, observed outputs [(T_i, D)], InvertConfig, progress, true ids or None) -> one record per
# sequence; the true ids, when known, may add diagnostics but never change what is recovered
Method = Callable[..., Iterator[dict]]
METHODS: dict[str, Method] = {}


def register_method(name: str):
    """Decorator: make ``fn(target, outputs, cfg, progress, truth)`` available as method ``name``."""
    def wrap(fn: Method) -> Method:
        METHODS[name] = fn
        return fn
    return wrap
