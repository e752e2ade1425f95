"""The exact method, registered in the methods' table: each observed output searched left to right with the
tolerance its precision allows (certificate.tolerances), and the record's verdict from the certificate (certify).
Quantised or noisy states (lmrep.inversion.degrade) are tested against their degradation's own bound instead, over
the whole vocabulary, so that each position reports its ambiguity set."""
from __future__ import annotations

import torch

from ..base import Target, recovered
from ..config import InvertConfig
from ..degrade import Degraded
from ..registry import register_method
from .certificate import certify, elementwise_excess, relative_tolerance, tolerances
from .search import search


@register_method("exact", degradation=True)
def invert_exact(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
                 truth: list[list[int]] | None = None, degraded: list[Degraded | None] | None = None):
    """Each observed output (T, D) searched with the tolerance its precision allows (or its degradation's bound);
    the truth is not used."""
    for h, worse in zip(outputs, degraded or [None] * len(outputs)):
        if worse is not None:
            yield _invert_degraded(target, worse, cfg, progress)
            continue
        tol, why, coarse = tolerances(target, h, cfg)
        found = search(target, h, cfg, tol, progress)
        excess = elementwise_excess(target, h, found["recovered_ids"], coarse) if coarse else None
        found.update(certify(found.pop("certificate"), tol, excess, relative_tolerance(target)), **why)
        yield recovered(target, cfg, found.pop("recovered_ids"), **found)


def _invert_degraded(target: Target, worse: Degraded, cfg: InvertConfig, progress: bool) -> dict:
    """Every position's whole vocabulary tested against the degradation's bound: the accepted token and every other
    that fits make the position's ambiguity set; a set of one is certified."""
    match, tol = worse.match(relative_tolerance(target))
    found = search(target, worse.values, cfg, tol, progress, match=match, exhaustive=True)
    found.update(certify(found.pop("certificate"), tol))
    sizes = []
    for c in found["certificate"]:
        c["ambiguity"] = [c["token"], *c["ties"]] if c["verified"] else []
        sizes.append(len(c["ambiguity"]))
    return recovered(target, cfg, found.pop("recovered_ids"), **found, degradation=worse.about,
                     tolerance_from=f"{worse.about or 'degraded states'}: each candidate tested against its bound",
                     certified_positions=sum(c["unique"] for c in found["certificate"]), ambiguity_sizes=sizes,
                     ambiguous_positions=sum(n > 1 for n in sizes), mean_ambiguity=sum(sizes) / len(sizes))
