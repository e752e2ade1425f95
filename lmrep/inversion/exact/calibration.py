"""A linear inverse of one layer, fitted once per model and layer on random ids and kept on disk.

Run the layer on random token ids and fit, by ridge regression (guess.py),
    first:  output at position 0 -> the token's embedding            (position 0 sees nothing but its token)
    later:  output at a position > 0 -> the token's embedding         (averaged over random prefixes)
    secant: output difference -> embedding difference, same prefix   (the prefix's share cancels)
    forward: embedding difference -> output difference, same prefix  (the layer's mean slope between tokens)
``first`` or ``later`` of the target is where a position's guess starts; ``secant`` is the map its secant steps
start from; ``forward`` predicts every token's output from one point's (guess.Predicted). The maps are kept in
memory and under ``cache_dir()/exact`` (keyed by a fingerprint of the weights), so only the first run on a machine
pays for the fit (4,096 + 1,152 rows through the layer). A first run does not wait for all of it: ``Fitter`` fits a
group of prefixes at a time, the search's first position starts after a quarter of them, each later position adds
more (rank.Setup), and what is left is fitted when the search ends, then kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ...models.layers import LayerModel
from ...models.load import cache_dir, weights_hash
from ...records.files import cached_tensors
from .guess import LinearMap, output_features, predicted_sqnorm, ridge

CONTEXTS = 128  # random prefixes, and below the tokens after each: 4,096 pairs (1,024 were too few: see docs)
PER_CONTEXT = 32
GROUP = 8  # prefixes run together
FIRST_GROUPS = 4  # a first run's first position waits for these (1,024 pairs) and position 0's sample only
GROUPS_PER_POSITION = 2  # each later position adds these until the fit is whole (then it is kept on disk)


@dataclass
class Calibration:
    first: LinearMap  # position 0
    later: LinearMap  # positions >= 1
    secant: torch.Tensor  # (F, d): output difference -> embedding difference under one prefix
    forward: torch.Tensor  # (d, F): embedding difference -> output difference under one prefix
    seconds: float  # time it took to fit (paid once per model and layer; read from disk after that)
    cached: bool  # read from the disk cache in this process
    _pred_sqnorm: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def pred_sqnorm(self, W: torch.Tensor) -> torch.Tensor:
        """(V,): every row's predicted output's squared norm (guess.Predicted), computed once per calibration."""
        if self._pred_sqnorm is None:
            self._pred_sqnorm = predicted_sqnorm(W, self.forward)
        return self._pred_sqnorm


def _key(target: LayerModel, contexts: int, per_context: int, seed: int) -> tuple:
    return ("exact-calibration", target.name, contexts, per_context, seed)


def _path(target: LayerModel, contexts: int, per_context: int, seed: int):
    name = f"calibration-{weights_hash(target.lm)}-{target.name}-c{contexts}x{per_context}-s{seed}-v4.safetensors"
    return cache_dir() / "exact" / name


def calibrate(target: LayerModel, contexts: int = CONTEXTS, per_context: int = PER_CONTEXT,
              seed: int = 0, fitter: "Fitter | None" = None) -> Calibration:
    """The four maps for ``target``; memoised per model, layer, sizes and seed, in memory and on disk. ``fitter``:
    one already under way (Fitter), finished here instead of starting afresh."""
    lm = target.lm
    path = _path(target, contexts, per_context, seed)

    def make() -> Calibration:
        def build() -> dict:
            cal = (fitter or Fitter(target, contexts, per_context, seed)).finish()
            tensors = {f"{k}.{n}": getattr(getattr(cal, k), n) for k in ("first", "later")
                       for n in ("A", "mu", "x_mu")}
            seconds = torch.tensor(cal.seconds, dtype=torch.float64)
            maps = {"secant.map": cal.secant, "forward.map": cal.forward}
            return dict(tensors, **maps, seconds=seconds)
        saved, cached = cached_tensors(path, build)
        t = {k: v.to(device=lm.device, dtype=lm.dtype) for k, v in saved.items()}
        return Calibration(LinearMap(t["first.A"], t["first.mu"], t["first.x_mu"]),
                           LinearMap(t["later.A"], t["later.mu"], t["later.x_mu"]), t["secant.map"],
                           t["forward.map"], float(saved["seconds"]), cached=cached)
    return lm.memo(_key(target, contexts, per_context, seed), make)


def ready(target: LayerModel, contexts: int = CONTEXTS, per_context: int = PER_CONTEXT, seed: int = 0) -> bool:
    """Whether the calibration is in memory or on disk (so ``calibrate`` returns at once)."""
    return target.lm.memo_has(_key(target, contexts, per_context, seed)) or \
        _path(target, contexts, per_context, seed).exists()


class Fitter:
    """The calibration fitted a group of prefixes at a time, so that a first run's search starts after a quarter
    of the pairs and the rest joins as it goes (``grow``); the random draws are the same however it is split, so
    the whole fit is the one ``calibrate`` keeps."""

    def __init__(self, target: LayerModel, contexts: int = CONTEXTS, per_context: int = PER_CONTEXT,
                 seed: int = 0):
        self.target, self.per_context, self.groups = target, per_context, contexts // GROUP
        self.feat = output_features(target)
        self.gen, self.seconds, self.done = torch.Generator().manual_seed(seed), 0.0, 0
        self.X, self.F, self.ctx = [], [], []
        self.first = self._timed(self._first)

    def _timed(self, work):
        t0 = time.perf_counter()
        out = work()
        self.seconds += time.perf_counter() - t0
        return out

    @torch.no_grad()
    def _first(self) -> LinearMap:
        """Position 0's map, from tokens alone (position 0 sees nothing else)."""
        lm, W = self.target.lm, self.target.lm.embedding_matrix.detach()
        toks0 = torch.randint(0, lm.vocab_size, (max(2 * lm.d_model, 512),), generator=self.gen).to(lm.device)
        out0 = self.target(W[toks0][:, None])[:, 0]  # (n0, D): each token alone at position 0
        return ridge(self.feat(out0), W[toks0])

    def grow(self, groups: int) -> "Fitter":
        """``groups`` more groups of prefixes (fewer if that is all that is left)."""
        for _ in range(min(groups, self.groups - self.done)):
            self._timed(self._group)
            self.done += 1
        return self

    @torch.no_grad()
    def _group(self) -> None:
        from transformers import DynamicCache  # here, not at import: reading the arguments needs no transformers
        target, lm, K = self.target, self.target.lm, self.per_context
        W, V, dev = lm.embedding_matrix.detach(), lm.vocab_size, lm.device
        max_len = max(1, min(31, lm.max_positions - 1))
        T = int(torch.randint(1, max_len + 1, (1,), generator=self.gen))
        prefix = torch.randint(0, V, (GROUP, T), generator=self.gen).to(dev)  # (G, T)
        cache = DynamicCache()
        target(lm.embed(prefix), past_key_values=cache, use_cache=True)
        rows = DynamicCache([(layer.keys.repeat_interleave(K, 0), layer.values.repeat_interleave(K, 0))
                             for layer in cache.layers[: target.spec.depth]]) if target.spec.depth else DynamicCache()
        toks = torch.randint(0, V, (GROUP * K,), generator=self.gen).to(dev)
        pos = torch.full((GROUP * K, 1), T, dtype=torch.long, device=dev)
        out = target(W[toks][:, None], past_key_values=rows, use_cache=True, position_ids=pos)[:, 0]  # (G*K, D)
        self.X.append(W[toks])
        self.F.append(self.feat(out))
        self.ctx.append(torch.arange(GROUP, device=dev).repeat_interleave(K) + self.done * GROUP)

    def calibration(self) -> Calibration:
        """The maps from the groups so far."""
        return self._timed(self._solve)

    def _solve(self) -> Calibration:
        X, F, ctx = torch.cat(self.X), torch.cat(self.F), torch.cat(self.ctx)  # (n, d), (n, F), (n,)
        n_ctx, dev = int(ctx.max()) + 1, X.device
        counts = torch.bincount(ctx, minlength=n_ctx)[:, None].to(X.dtype)
        Xc = X - (torch.zeros(n_ctx, X.shape[1], dtype=X.dtype, device=dev).index_add_(0, ctx, X) / counts)[ctx]
        Fc = F - (torch.zeros(n_ctx, F.shape[1], dtype=F.dtype, device=dev).index_add_(0, ctx, F) / counts)[ctx]
        return Calibration(first=self.first, later=ridge(F, X), secant=ridge(Fc, Xc).A, forward=ridge(Xc, Fc).A,
                           seconds=self.seconds, cached=False)

    def finish(self) -> Calibration:
        """The whole fit."""
        cal = self.grow(self.groups).calibration()
        cal.seconds = self.seconds
        return cal
