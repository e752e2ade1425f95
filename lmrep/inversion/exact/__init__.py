"""Exact inversion: left-to-right search in which every token is verified against the observed layer output.

    search.py    the verify loop and the certificate (the method itself: lmrep.inversion.precision)
    rank.py      which candidates to verify first: the model's expectation, a calibrated and refined guess
    table.py     rankings from tables of every token's output at a layer, cached on disk
    kvcache.py   a verified prefix's key/value cache, shared by a batch of candidates
"""
from .search import invert_outputs, relative_tolerance, residuals

__all__ = ["invert_outputs", "relative_tolerance", "residuals"]
