"""Exact inversion: left-to-right search in which every token is verified against the observed layer output.

    method.py       the exact method, registered in the methods' table: observed outputs in, certified records out
    search.py       the verify loop: candidates in batches through the prefix's cache (the method itself:
                    lmrep.inversion.exact.method)
    certificate.py  what counts as a match (the tolerance, resolved once; residuals), each position's certificate
                    and the record's verdict (certify)
    config.py       the search's own options (ExactConfig) and the table of rankings (torch-free)
    proposal.py     the proposal interface (next, probes, observe) and the one combinator of two proposals
    rank.py         the rankings' factories, and what a ranking sees at a position
    guess.py        a continuous guess of the embedding, moved by secant or gradient steps
    calibration.py  the layer's linear inverse, fitted once per layer on random ids and kept on disk
    probe.py        a probe of the layer (its state -> the token there), fitted in seconds, refined as it searches
    vocab_tables.py tables of every token's output at a layer, kept on disk
    kvcache.py      a verified prefix's key/value cache, shared by a batch of candidates

The names below are imported on first use (PEP 562): the options (config.py) are read before torch loads.
"""
from ...lazy import lazy

__all__ = ["ExactConfig", "relative_tolerance", "residuals", "search", "tolerances"]
__getattr__, __dir__ = lazy(__name__, {"ExactConfig": "config", "relative_tolerance": "certificate",
                                       "residuals": "certificate", "tolerances": "certificate", "search": "search"})
