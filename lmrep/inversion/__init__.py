"""Inversion methods: gd (the page's gradient descent), nearest (PEZ), exact (left-to-right search).

Every method works from observed outputs (``invert_outputs``); ``invert`` computes them for known prompts and scores
what comes back. The names below are imported on first use (PEP 562), so that ``InvertConfig`` (config.py) is read
and checked before torch loads; ``METHODS`` is the table of every method (``registry``), each module imported.
"""
import importlib

# name -> the module of this package that defines it
_API = {"InvertConfig": "config", "invert": "base", "invert_outputs": "base", "next_tokens": "base",
        "recovered": "base", "score": "base", "summarize": "base", "register_method": "registry"}

__all__ = ["InvertConfig", "METHODS", "invert", "invert_outputs", "next_tokens", "recovered", "register_method",
           "score", "summarize"]


def __getattr__(name: str):
    if name == "METHODS":
        from .registry import all_methods
        return all_methods()
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_API[name]}", __name__), name)


def __dir__():
    return sorted(__all__)
