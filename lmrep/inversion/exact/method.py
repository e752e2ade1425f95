"""The exact method, registered in the methods' table: each observed output searched left to right with the
tolerance its precision allows (certificate.tolerances), and the record's verdict from the certificate (certify)."""
from __future__ import annotations

import torch

from ..base import Target, recovered
from ..config import InvertConfig
from ..registry import register_method
from .certificate import certify, elementwise_excess, relative_tolerance, tolerances
from .search import search


@register_method("exact")
def invert_exact(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
                 truth: list[list[int]] | None = None):
    """Each observed output (T, D) searched with the tolerance its precision allows; the truth is not used."""
    for h in outputs:
        tol, why, coarse = tolerances(target, h, cfg)
        found = search(target, h, cfg, tol, progress)
        excess = elementwise_excess(target, h, found["recovered_ids"], coarse) if coarse else None
        found.update(certify(found.pop("certificate"), tol, excess, relative_tolerance(target)), **why)
        yield recovered(target, cfg, found.pop("recovered_ids"), **found)
