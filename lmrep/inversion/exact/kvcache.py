"""A known prefix's key/value cache, shared read-only by a batch of candidates for the next position.

Left-to-right search asks one question many times: "with these t tokens fixed, what does the layer output at
position t for each of these B candidate embeddings?". ``Prefix.step`` answers it with one forward pass of B
single positions that attend to the cached prefix, instead of B forward passes of t + 1 positions.

The prefix tensors are never written to: each step builds a fresh cache whose rows are views of them (the model
concatenates the new position onto copies), so the same prefix serves any number of steps and batches.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...models.layers import LayerModel

if TYPE_CHECKING:
    from transformers import DynamicCache


class Prefix:
    """Keys and values of the first ``length`` positions for one sequence: one (1, heads, length, head_dim) pair
    per block that runs."""

    def __init__(self, target: LayerModel, kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                 length: int = 0):
        self.target, self.kv, self.length = target, kv or [], length

    def _cache(self, B: int) -> DynamicCache:
        from transformers import DynamicCache  # here, not at import: reading the arguments needs no transformers
        if not self.kv:
            return DynamicCache()
        return DynamicCache([(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in self.kv])

    def rows_within(self, budget: int) -> int:
        """How many candidate rows one ``step`` may take so that their copies of the cache (the prefix and the new
        position, keys and values of every block) stay within ``budget`` bytes (at least 1)."""
        per_row = sum((k[0].numel() + v[0].numel()) * k.element_size() for k, v in self.kv)
        per_row = per_row * (self.length + 1) // max(self.length, 1)
        return max(1, budget // per_row) if per_row else budget

    def step(self, embeds: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        """Candidate token embeddings (B, d) at position ``length`` -> layer outputs (B, D) and the cache of
        prefix + candidate for every row (pass it to ``extend``). Differentiable in ``embeds``."""
        B = embeds.shape[0]
        cache = self._cache(B)
        pos = torch.full((B, 1), self.length, dtype=torch.long, device=embeds.device)
        out = self.target(embeds[:, None], past_key_values=cache, use_cache=True, position_ids=pos)  # (B, 1, D)
        return out[:, 0], cache

    def extend(self, cache: DynamicCache, row: int) -> "Prefix":
        """The prefix grown by the candidate in ``row`` of a cache that ``step`` returned."""
        kv = [(layer.keys[row:row + 1].detach(), layer.values[row:row + 1].detach())
              for layer in cache.layers[: self.target.spec.depth]]  # empty at depth 0: no block, no cache
        return Prefix(self.target, kv, self.length + 1)

    @classmethod
    @torch.no_grad()
    def of(cls, target: LayerModel, ids: list[int]) -> "Prefix":
        """The cache of a whole known prefix, computed in one forward pass."""
        if not ids or target.spec.depth == 0:
            return cls(target, [], len(ids))
        from transformers import DynamicCache
        lm = target.lm
        cache = DynamicCache()
        target(lm.embed(torch.tensor([ids], device=lm.device)), past_key_values=cache, use_cache=True)
        return cls(target, [(layer.keys, layer.values) for layer in cache.layers[: target.spec.depth]], len(ids))
