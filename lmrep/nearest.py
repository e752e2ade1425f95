"""The nearest-token baseline (PEZ, "Hard Prompts Made Easy"): optimise continuous embeddings, but run the model
on their projection to the nearest tokens, and apply the gradient taken there to the continuous ones.

The projection is the configured decoder's top-1 token (``--decoder cosine`` is PEZ's choice). Everything else
(start, threshold, optimiser, schedule, report) is the gradient-descent method's, so the two compare line by line.
"""
from __future__ import annotations

import torch

from .decode import Decoder
from .gd import optimize
from .invert import InvertConfig, Target, register_method


def projector(decoder: Decoder):
    """e (B, T, d) -> the embeddings of its decoded tokens in the forward pass, e itself in the backward pass
    (a straight-through estimator: the gradient at the projected point lands on the continuous one)."""
    lm = decoder.lm

    def project(e: torch.Tensor) -> torch.Tensor:
        hard = lm.embed(decoder(e)).to(e.dtype)  # (B, T, d)
        return e + (hard - e).detach()
    return project


@register_method("nearest")
def invert_nearest(target: Target, prompts: list[list[int]], cfg: InvertConfig, progress: bool = True):
    yield from optimize(target, prompts, cfg, progress, transform=projector(Decoder(target.lm, cfg.decoder)))
