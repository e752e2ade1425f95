"""Padded batches whose items never see each other: padding, and random draws that depend on the item alone.

A prompt must get the same start (noise, split indices, directions) alone or in any batch, so every draw comes
from a generator seeded by (seed, the prompt's ids) and is made at the prompt's own length: torch's CPU randn is not
prefix-stable (a longer draw does not start with a shorter one), so drawing at the padded length would make a
prompt's noise depend on the batch it happens to be in.
"""
from __future__ import annotations

import zlib
from typing import Callable

import torch


def pad(batch: list[list[int]], pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists -> ids (B, T) and mask (B, T) with 1 on real tokens."""
    T = max(len(x) for x in batch)
    ids = torch.full((len(batch), T), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(batch), T), dtype=torch.long, device=device)
    for i, x in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return ids, mask


def prompt_generator(seed: int, ids: list[int], device) -> torch.Generator:
    """Noise that depends on (seed, prompt) only, so a prompt gets the same start alone or in any batch."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + zlib.crc32(str(ids).encode()))
    return g


def output_generator(seed: int, outputs: torch.Tensor, device) -> torch.Generator:
    """The same for an observed layer output (T, D) whose prompt is unknown: noise that depends on (seed, its
    values) only."""
    g = torch.Generator(device=device)
    data = outputs.detach().float().cpu().contiguous().numpy().tobytes()
    g.manual_seed(seed * 1_000_003 + zlib.crc32(data))
    return g


def per_item(like: torch.Tensor, gens: list[torch.Generator], lengths: list[int],
             fn: Callable = torch.randn, *trailing: int) -> torch.Tensor:
    """Per item b, ``fn((L_b, d, *trailing))`` from its own generator for its L_b real positions, zero on padding:
    (B, T, d, *trailing) shaped and typed like ``like`` (B, T, d)."""
    B, T, d = like.shape
    out = torch.zeros(B, T, d, *trailing, dtype=like.dtype, device=like.device)
    for b, (g, L) in enumerate(zip(gens, lengths)):
        out[b, :L] = fn((L, d, *trailing), generator=g, device=like.device, dtype=like.dtype)
    return out
