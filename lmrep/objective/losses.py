"""Distances between a layer output and its target, one value per prompt, padding ignored."""
from __future__ import annotations

import torch

from ..errors import LmrepError
from .names import LOSSES


def check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise LmrepError(f"unknown loss '{loss}': choose one of {', '.join(LOSSES)}")
    return loss


def distance(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
             loss: str = "l1") -> torch.Tensor:
    """out, target: (B, T, D); mask: (B, T) with 1 on real tokens -> (B,).

    l1: sum |out - target| (the page's metric); l2: Euclidean norm of the difference;
    cosine: sum over positions of 1 - cos(out_t, target_t).
    """
    m = torch.ones(out.shape[:2], device=out.device) if mask is None else mask
    m = m.to(out.dtype)
    if loss == "l1":
        return ((out - target).abs().sum(-1) * m).sum(-1)
    if loss == "l2":
        return (((out - target) ** 2).sum(-1) * m).sum(-1).clamp_min(1e-30).sqrt()
    if loss == "cosine":
        return ((1 - torch.nn.functional.cosine_similarity(out, target, dim=-1)) * m).sum(-1)
    raise LmrepError(f"unknown loss '{loss}': choose one of {', '.join(LOSSES)}")
