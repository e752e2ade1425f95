"""The nearest-token baseline (PEZ, "Hard Prompts Made Easy"): optimise continuous embeddings, but run the model
on their projection to the nearest tokens, and apply the gradient taken there to the continuous ones.

The projection is the configured decoder's top-1 token (``--decoder cosine`` is PEZ's choice). Everything else
(start, threshold, optimiser, schedule, report) is the gradient-descent method's, so the two compare line by line.
"""
from __future__ import annotations

import torch

from ..objective.decode import Decoder
from .base import Target
from .config import InvertConfig
from .gd import optimize
from .registry import register_method


def projector(decoder: Decoder):
    """e (B, T, d) -> the embeddings of its decoded tokens in the forward pass, e itself in the backward pass
    (a straight-through estimator: the gradient at the projected point lands on the continuous one)."""
    lm = decoder.lm

    def project(e: torch.Tensor) -> torch.Tensor:
        return _StraightThrough.apply(e, lm.embed(decoder(e.detach())).to(e.dtype))  # (B, T, d)
    return project


class _StraightThrough(torch.autograd.Function):
    """Forward: the hard value exactly (``e + (hard - e).detach()`` rounds); backward: the gradient to ``e``."""

    @staticmethod
    def forward(ctx, e: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.detach().clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


@register_method("nearest")
def invert_nearest(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
                   truth: list[list[int]] | None = None):
    yield from optimize(target, outputs, cfg, progress, transform=projector(Decoder(target.lm, cfg.decoder)),
                        truth=truth)
