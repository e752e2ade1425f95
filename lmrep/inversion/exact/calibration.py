"""A linear inverse of one layer, fitted once per model and layer on random ids and kept on disk.

Run the layer on random token ids and fit, by ridge regression (guess.py),
    first:  output at position 0 -> the token's embedding            (position 0 sees nothing but its token)
    later:  output at a position > 0 -> the token's embedding         (averaged over random prefixes)
    secant: output difference -> embedding difference, same prefix   (the prefix's share cancels)
``first`` or ``later`` of the target is where a position's guess starts; ``secant`` is the map its secant steps
start from. The maps are kept in memory and under ``cache_dir()/exact`` (keyed by a fingerprint of the weights),
so only the first run on a machine pays for the fit (4,096 + 1,152 rows through the layer).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ...models.layers import LayerModel
from ...models.load import cache_dir, weights_hash
from ...records.files import cached_tensors
from .guess import LinearMap, output_features, ridge

CONTEXTS = 128  # random prefixes, and below the tokens after each: 4,096 pairs (1,024 were too few: see docs)
PER_CONTEXT = 32


@dataclass
class Calibration:
    first: LinearMap  # position 0
    later: LinearMap  # positions >= 1
    secant: torch.Tensor  # (F, d): output difference -> embedding difference under one prefix
    seconds: float  # time it took to fit (paid once per model and layer; read from disk after that)
    cached: bool  # read from the disk cache in this process


def calibrate(target: LayerModel, contexts: int = CONTEXTS, per_context: int = PER_CONTEXT,
              seed: int = 0) -> Calibration:
    """The three maps for ``target``; memoised per model, layer, sizes and seed, in memory and on disk."""
    lm = target.lm
    name = f"calibration-{weights_hash(lm)}-{target.name}-c{contexts}x{per_context}-s{seed}.safetensors"
    path = cache_dir() / "exact" / name

    def make() -> Calibration:
        def build() -> dict:
            cal = _fit(target, contexts, per_context, seed)
            tensors = {f"{k}.{n}": getattr(getattr(cal, k), n) for k in ("first", "later")
                       for n in ("A", "mu", "x_mu")}
            seconds = torch.tensor(cal.seconds, dtype=torch.float64)
            return dict(tensors, **{"secant.map": cal.secant, "seconds": seconds})
        saved, cached = cached_tensors(path, build)
        t = {k: v.to(device=lm.device, dtype=lm.dtype) for k, v in saved.items()}
        return Calibration(LinearMap(t["first.A"], t["first.mu"], t["first.x_mu"]),
                           LinearMap(t["later.A"], t["later.mu"], t["later.x_mu"]), t["secant.map"],
                           float(saved["seconds"]), cached=cached)
    return lm.memo(("exact-calibration", target.name, contexts, per_context, seed), make)


@torch.no_grad()
def _fit(target: LayerModel, contexts: int, per_context: int, seed: int) -> Calibration:
    from transformers import DynamicCache  # here, not at import: reading the arguments needs no transformers
    t0 = time.perf_counter()
    lm, feat = target.lm, output_features(target)
    W, V, dev = lm.embedding_matrix.detach(), lm.vocab_size, lm.device
    gen = torch.Generator().manual_seed(seed)
    group, K = 8, per_context
    max_len = max(1, min(31, lm.max_positions - 1))
    X, F, ctx = [], [], []
    for g in range(0, contexts, group):
        T = int(torch.randint(1, max_len + 1, (1,), generator=gen))
        prefix = torch.randint(0, V, (group, T), generator=gen).to(dev)  # (G, T)
        cache = DynamicCache()
        target(lm.embed(prefix), past_key_values=cache, use_cache=True)
        rows = DynamicCache([(layer.keys.repeat_interleave(K, 0), layer.values.repeat_interleave(K, 0))
                             for layer in cache.layers[: target.spec.depth]]) if target.spec.depth else DynamicCache()
        toks = torch.randint(0, V, (group * K,), generator=gen).to(dev)
        pos = torch.full((group * K, 1), T, dtype=torch.long, device=dev)
        out = target(W[toks][:, None], past_key_values=rows, use_cache=True, position_ids=pos)[:, 0]  # (G*K, D)
        X.append(W[toks])
        F.append(feat(out))
        ctx.append(torch.arange(group, device=dev).repeat_interleave(K) + g)
    X, F, ctx = torch.cat(X), torch.cat(F), torch.cat(ctx)  # (n, d), (n, F), (n,)
    n_ctx = int(ctx.max()) + 1
    counts = torch.bincount(ctx, minlength=n_ctx)[:, None].to(X.dtype)
    Xc = X - (torch.zeros(n_ctx, X.shape[1], dtype=X.dtype, device=dev).index_add_(0, ctx, X) / counts)[ctx]
    Fc = F - (torch.zeros(n_ctx, F.shape[1], dtype=F.dtype, device=dev).index_add_(0, ctx, F) / counts)[ctx]
    toks0 = torch.randint(0, V, (max(2 * lm.d_model, 512),), generator=gen).to(dev)
    out0 = target(W[toks0][:, None])[:, 0]  # (n0, D): each token alone at position 0
    return Calibration(first=ridge(feat(out0), W[toks0]), later=ridge(F, X), secant=ridge(Fc, Xc).A,
                       seconds=time.perf_counter() - t0, cached=False)
