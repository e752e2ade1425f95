"""Inversion methods: gd (the page's gradient descent), nearest (PEZ), exact (left-to-right search).

Every method works from observed outputs (``invert_outputs``); ``invert`` computes them for known prompts and scores
what comes back. The names below are imported on first use (PEP 562), so that ``InvertConfig`` (config.py) is read
and checked before torch loads; ``METHODS`` is the table of every method (``registry``), each module imported.
"""
from ..lazy import lazy

__all__ = ["InvertConfig", "METHODS", "invert", "invert_outputs", "next_tokens", "recovered", "register_method",
           "score", "summarize"]
_names, __dir__ = lazy(__name__, {"InvertConfig": "config", "invert": "base", "invert_outputs": "base",
                                  "next_tokens": "base", "recovered": "base", "score": "base", "summarize": "base",
                                  "register_method": "registry", "METHODS": "registry"})


def __getattr__(name: str):
    if name == "METHODS":  # the whole table: every method's module imported
        from .registry import all_methods
        return all_methods()
    return _names(name)
