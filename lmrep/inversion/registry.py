"""The inversion methods by name. Each method's module registers itself here when ``lmrep.inversion`` is imported;
the config checks names against it and ``invert`` dispatches through it."""
from __future__ import annotations

from typing import Callable, Iterator

# a method: (target, token ids of each prompt, InvertConfig, progress) -> one record per prompt
Method = Callable[..., Iterator[dict]]
METHODS: dict[str, Method] = {}


def register_method(name: str):
    """Decorator: make ``fn(target, prompts_ids, cfg, progress)`` available as method ``name``."""
    def wrap(fn: Method) -> Method:
        METHODS[name] = fn
        return fn
    return wrap
