"""The inversion methods by name. Each method's module registers itself here when ``lmrep.inversion`` is imported;
the config checks names against it and ``invert`` dispatches through it."""
from __future__ import annotations

from typing import Callable, Iterator

# a method: (target, observed outputs [(T_i, D)], InvertConfig, progress, true ids or None) -> one record per
# sequence; the true ids, when known, may add diagnostics but never change what is recovered
Method = Callable[..., Iterator[dict]]
METHODS: dict[str, Method] = {}
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
