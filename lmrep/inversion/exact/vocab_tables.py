"""Ranking by tables of every token's output at a layer: what each token looks like there.

Position 0 sees nothing but its own token, so a table of every token's output there is exact: the target's
nearest row is the answer. At a later position the output depends on the prefix too; the table then holds every
token's output after a few random prefixes (averaged), and the search adds an offset for what this prefix
contributes, estimated from the candidates it has verified. On random ids at the middle layers of the default
model, where the other rankings struggle, the first batch of two holds the answer at nearly every position.

A table costs one pass over the vocabulary per prefix (tens of seconds to minutes on a CPU, per model and layer);
it is kept in memory and on disk (``cache_dir()/tables``, keyed by a fingerprint of the weights), so a layer
pays for it once.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ...models.layers import LayerModel
from ...models.load import cache_dir, weights_hash  # noqa: F401  (weights_hash: also importable from here)
from ...records.files import cached_tensors
from .kvcache import Prefix
from .guess import output_features

TABLE_CONTEXTS = 2  # random prefixes that the context table averages over
TABLE_NEIGHBOURS = 8  # verified candidates nearest the target that estimate the prefix's offset


class ContextTable:
    """Tokens in order of ``||table_v + offset - target||``. The table holds every token's output after random
    prefixes (what the token looks like at this layer), the offset what this prefix adds to it: zero at first,
    then the mean of ``output - table`` over the ``TABLE_NEIGHBOURS`` verified candidates whose outputs came
    nearest the target (so that a target in a rare regime, a massive activation, takes its offset from
    candidates in that regime)."""

    def __init__(self, table: "VocabTable", target_feat: torch.Tensor):
        self.table, self.sqnorm, self.f = table.features, table.sqnorm, target_feat  # (V, F), (V,), (F,)
        self.offset = torch.zeros_like(target_feat)
        self.near_ids = torch.zeros(0, dtype=torch.long, device=target_feat.device)  # the neighbours so far
        self.near_out = target_feat.new_zeros(0, target_feat.shape[0])
        self.dist = None

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        if self.dist is None:  # ||table_v - (f - offset)||^2 less a constant
            self.dist = self.sqnorm - 2 * (self.table @ (self.f - self.offset))  # (V,)
        return self.dist.masked_fill(tried, float("inf")).topk(n, largest=False).indices

    def probes(self) -> torch.Tensor | None:
        return None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        out = torch.cat([self.near_out, f[: len(ids)]])  # (k, F): the first len(ids) rows are the candidates
        ids = torch.cat([self.near_ids, ids])
        near = ((out - self.f) ** 2).sum(-1).topk(min(TABLE_NEIGHBOURS, len(ids)), largest=False).indices
        self.near_ids, self.near_out = ids[near], out[near]  # only the nearest are ever needed again
        self.offset, self.dist = (self.near_out - self.table[self.near_ids]).mean(0), None


@dataclass
class VocabTable:
    features: torch.Tensor  # (V, F): every token's output features
    sqnorm: torch.Tensor  # (V,): their squared norms
    seconds: float  # time it took to build (paid once per model and layer)
    cached: bool  # read from the disk cache in this process


@torch.no_grad()
def vocab_table(target: LayerModel, contexts: int = 0, seed: int = 0, batch: int = 1024,
                progress: bool = False) -> VocabTable:
    """Output features of every token alone at position 0 (``contexts=0``), or after each of ``contexts``
    random prefixes of 4-16 tokens, averaged. Kept in memory and on disk per weights, layer and sizes."""
    lm = target.lm
    path = cache_dir() / "tables" / f"{weights_hash(lm)}-{target.name}-c{contexts}-s{seed}.safetensors"

    def compute() -> dict:
        t0, feat = time.perf_counter(), output_features(target)
        W, gen = lm.embedding_matrix.detach(), torch.Generator().manual_seed(seed)
        prefixes = [Prefix(target)]
        if contexts:
            lengths = torch.randint(4, 17, (contexts,), generator=gen).clamp(max=max(0, lm.max_positions - 1))
            prefixes = [Prefix.of(target, torch.randint(0, lm.vocab_size, (int(n),), generator=gen).tolist())
                        for n in lengths]
        chunks = [(p, i) for p in prefixes for i in range(0, lm.vocab_size, batch)]
        table = None
        for p, i in tqdm(chunks, disable=not progress, desc=f"table {target.name} ({len(prefixes)} prefixes)",
                         unit="chunk", file=sys.stderr, leave=False):
            rows = feat(p.step(W[i:i + batch])[0]) / len(prefixes)  # (batch, F)
            if table is None:
                table = torch.zeros(lm.vocab_size, rows.shape[1], dtype=rows.dtype, device=rows.device)
            table[i:i + len(rows)] += rows
        return {"features": table, "seconds": torch.tensor(time.perf_counter() - t0, dtype=torch.float64)}

    def build() -> VocabTable:
        saved, cached = cached_tensors(path, compute)  # whole or absent: an interrupted write leaves no half table
        features = saved["features"].to(device=lm.device, dtype=lm.dtype)
        return VocabTable(features, (features * features).sum(-1), float(saved["seconds"]), cached=cached)
    return lm.memo(("exact-vocab-table", target.name, contexts, seed), build)
