"""Inversion methods: gd (the page's gradient descent), nearest (PEZ), exact (left-to-right search).

Importing this package registers every method in ``registry.METHODS``.
"""
from . import exact, gd, pez  # noqa: F401  (each registers its method)
from .base import invert, next_tokens, record, summarize
from .config import InvertConfig
from .registry import METHODS, register_method

__all__ = ["InvertConfig", "METHODS", "invert", "next_tokens", "record", "register_method", "summarize"]
