"""Inversion methods: gd (the page's gradient descent), nearest (PEZ), exact (left-to-right search).

Importing this package registers every method in ``registry.METHODS``. Every method works from observed outputs
(``invert_outputs``); ``invert`` computes them for known prompts and scores what comes back.
"""
from . import gd, pez  # noqa: F401  (each registers its method)
from .exact import method  # noqa: F401  (registers the exact method)
from .base import invert, invert_outputs, next_tokens, recovered, score, summarize
from .config import InvertConfig
from .registry import METHODS, register_method

__all__ = ["InvertConfig", "METHODS", "invert", "invert_outputs", "next_tokens", "recovered", "register_method",
           "score", "summarize"]
