"""The walk methods by name. Each method's module registers its move here when it is imported; ``MODULES`` says
which module that is, so that a config names and checks its method without importing any (nor torch), and ``move``
imports one when it first runs."""
from __future__ import annotations

import importlib
from typing import Callable

Move = Callable[..., list[dict]]  # (core.WalkState, n) -> per-walk diagnostics: one step or round
MODULES = {"tangent": "lmrep.walks.page_walks", "jacobian": "lmrep.walks.jacobian", "clamped": "lmrep.walks.page_walks"}
METHODS: dict[str, Move] = {}  # filled as each method's module is imported (register_move)


def register_move(name: str):
    """Decorator: make ``move(state, n)`` available as walk method ``name``."""
    def wrap(fn: Move) -> Move:
        METHODS[name] = fn
        return fn
    return wrap


def move_names() -> list[str]:
    """Every walk method's name, none of them imported: lmrep's own and any registered since."""
    return list(MODULES) + [name for name in METHODS if name not in MODULES]


def move(name: str) -> Move:
    """The move of walk method ``name``, its module imported on first use."""
    if name not in METHODS and name in MODULES:
        importlib.import_module(MODULES[name])
    return METHODS[name]
