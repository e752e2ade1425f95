"""Exact inversion with a certificate: recover the tokens left to right, each one verified by a forward pass.

Causality makes this a sequence of small searches: the layer's output at position t depends only on tokens
0..t, so once tokens 0..t-1 are known, token t is the vocabulary entry whose output at t equals the target there.
For each position, candidates are ranked (rank.py: by default the model's own next-token expectation merged with
a continuous guess of the embedding that secant and then gradient steps refine; table.py: tables of every token's
output at the layer) and verified in batches by one forward pass of single positions that reuse the known
prefix's key/value cache (kvcache.py); the first batch with a candidate within tolerance ends the search at that
position.

Tolerance, per position t: ``residual = max_i |out_i - target_i| / max_i |target_i|`` must not exceed
``eps(dtype) * sqrt(d_model) * stages`` (stages = blocks run + 1, + 1 more for an LM head): rounding error of
d-term sums grows like sqrt(d) per stage. The scale is the target's own magnitude at t, not the tensor's.

The certificate, per position: the accepted token's residual, the runner-up (best other verified token) and its
residual, tokens tied with the accepted one (identical embedding rows: no layer can tell them apart), and the
number of candidates verified. When no candidate is within tolerance (a noisy target, the wrong layer), the
position says ``verified: false`` with the closest candidates; the search goes on from the closest one.
"""
from __future__ import annotations

import math
import sys
import time

import torch
from tqdm.auto import tqdm

from ...decode import duplicate_groups
from ...errors import LmrepError
from ...layers import LayerModel
from ..config import InvertConfig
from .kvcache import Prefix
from .rank import Descent, Guess, Guided, NextTokenPrior, VocabOrder, calibrate, output_features
from .table import TABLE_CONTEXTS, ContextTable, TableThenDescent, vocab_table

CLOSEST = 5  # candidates listed for a position that nothing matched


def relative_tolerance(target: LayerModel) -> float:
    """Largest residual (relative to the target's magnitude at the position) still counted as a match."""
    lm = target.lm
    stages = target.spec.depth + 1 + target.spec.has_lm_head
    return torch.finfo(lm.dtype).eps * math.sqrt(lm.d_model) * stages


def residuals(out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """out (B, D), target h (D,) -> max |out - h| / max |h|, (B,)."""
    scale = h.abs().amax().clamp_min(torch.finfo(h.dtype).tiny)
    return (out - h).abs().amax(-1) / scale


def _sizes(cfg: InvertConfig):
    """Batch sizes: 2 (a candidate and a runner-up), then 6, then doubling up to cfg.candidate_batch (a batch of
    a few costs about one of one: the cost is per pass); brute force goes straight to full batches."""
    if cfg.ranking == "vocab":
        while True:
            yield cfg.candidate_batch
    size = 2
    yield min(size, cfg.candidate_batch)
    size = 6
    while True:
        yield min(size, cfg.candidate_batch)
        size = min(2 * size + 4, cfg.candidate_batch)


@torch.no_grad()
def invert_outputs(target: LayerModel, outputs: torch.Tensor, cfg: InvertConfig | None = None,
                   progress: bool = False, tolerance: float | torch.Tensor | None = None) -> dict:
    """Recover the tokens whose layer output is ``outputs`` ((T, D) or (1, T, D)), with a certificate.

    ``tolerance``: the largest relative residual accepted, one number or one per position ((T,)); None: the
    config's, else ``relative_tolerance``. Returns ``recovered_ids``, ``verified`` (every position matched within
    tolerance), ``certificate`` (one entry per position), ``candidates_per_token`` (mean), ``candidates_max``,
    ``max_residual``, ``tolerance`` (as given: a number, or a list per position) and costs (``seconds``,
    ``forward_calls``, ``rows``, ``calibration_seconds``).
    """
    cfg = cfg or InvertConfig(method="exact")
    if not isinstance(target, LayerModel):
        raise LmrepError("the exact method needs a layer of a causal language model (lmrep.layer_model)")
    lm = target.lm
    h_all = outputs.detach().to(device=lm.device, dtype=lm.dtype)
    h_all = h_all[0] if h_all.dim() == 3 and h_all.shape[0] == 1 else h_all
    if h_all.dim() != 2 or h_all.shape[0] < 1:
        raise LmrepError(f"outputs must have shape (T, D) or (1, T, D), got {tuple(outputs.shape)}")
    if h_all.shape[0] > lm.max_positions:
        raise LmrepError(f"outputs have {h_all.shape[0]} positions but {lm.name} takes at most {lm.max_positions}")
    if tolerance is None:
        tolerance = cfg.tolerance if cfg.tolerance is not None else relative_tolerance(target)
    tols = torch.as_tensor(tolerance, dtype=torch.float64).flatten().tolist()  # one per position, or one for all
    if len(tols) not in (1, h_all.shape[0]):
        raise LmrepError(f"tolerance must be one number or one per position ({h_all.shape[0]}), got {len(tols)}")
    t0 = time.perf_counter()
    cal = calibrate(target, seed=cfg.seed) if cfg.ranking != "vocab" else None
    search = _Search(target, cfg, cal, tols[0])
    table_seconds = _tables(target, cfg, progress)
    for t in tqdm(range(h_all.shape[0]), disable=not progress, desc=f"exact {target.name}", unit="token",
                  file=sys.stderr, leave=False):
        search.tol = tols[min(t, len(tols) - 1)]
        search.position(t, h_all[t])
    cert = search.cert
    counts = [c["candidates"] for c in cert]
    return dict(recovered_ids=search.tokens, verified=all(c["verified"] for c in cert),
                candidates_per_token=sum(counts) / len(counts), candidates_max=max(counts),
                max_residual=max(c["residual"] for c in cert),
                tolerance=tols if isinstance(tolerance, torch.Tensor) else float(tolerance), certificate=cert,
                seconds=time.perf_counter() - t0, forward_calls=search.calls, rows=search.rows,
                gradient_steps=search.steps, prior_positions=search.prior.positions,
                calibration_seconds=cal.seconds if cal else None, table_seconds=table_seconds)


class _Search:
    """The left-to-right search's state: the verified prefix, the tokens and certificate so far, and its costs."""

    def __init__(self, target: LayerModel, cfg: InvertConfig, cal, tol: float):
        lm = target.lm
        self.target, self.cfg, self.cal, self.tol = target, cfg, cal, tol
        self.W, self.feat, self.groups = lm.embedding_matrix.detach(), output_features(target), duplicate_groups(lm)
        self.prior = NextTokenPrior(lm)
        self.prefix, self.tokens, self.cert = Prefix(target), [], []
        self.calls = self.rows = self.steps = self.guess_hits = 0

    def position(self, t: int, h: torch.Tensor) -> None:
        """Find the token at position t whose output is h (D,): verify candidates batch by batch until one is
        within tolerance (or the cap is reached), then extend the prefix by it."""
        lm, cfg, W = self.target.lm, self.cfg, self.W
        order = _proposal(self.target, cfg, self.cal, W, self.feat(h), t, self.prefix, h,
                          lambda: self.prior(self.tokens), 2 * self.guess_hits < t)
        tried = torch.zeros(lm.vocab_size, dtype=torch.bool, device=lm.device)
        seen_ids, seen_res, hit = [], [], None
        for size in _sizes(cfg):
            size = min(size, cfg.max_candidates - int(tried.sum()), int((~tried).sum()))
            if size <= 0:
                break
            ids = order.next(size, tried)  # (n,)
            extra = order.extra_points()  # (p, d) or None: points that only inform the ranking
            x = W[ids] if extra is None else torch.cat([W[ids], extra.to(W.dtype)])
            out, cache = self.prefix.step(x)  # (n + p, D)
            res = residuals(out[: len(ids)], h)  # (n,)
            tried[ids] = True
            seen_ids.append(ids)
            seen_res.append(res)
            self.calls, self.rows = self.calls + 1, self.rows + len(x)
            if bool((res <= self.tol).any()):
                hit = (ids, res, cache)
                break
            order.observe(ids, x, self.feat(out))
        ids_all, res_all = torch.cat(seen_ids), torch.cat(seen_res)
        if hit is not None:
            ids, res, cache = hit
            row = int(res.argmin())
            self.prefix = self.prefix.extend(cache, row)
            token = int(ids[row])
        else:
            token = int(ids_all[res_all.argmin()])
            out, cache = self.prefix.step(W[token][None])
            self.calls, self.rows = self.calls + 1, self.rows + 1
            self.prefix = self.prefix.extend(cache, 0)
        self.steps += getattr(order, "gradient_steps", 0)
        self.guess_hits += hit is not None and token == getattr(order, "guess_top", None)
        self.tokens.append(token)
        self.cert.append(_entry(lm, t, token, ids_all, res_all, self.tol, self.groups, verified=hit is not None))


def _tables(target: LayerModel, cfg: InvertConfig, progress: bool) -> float | None:
    """Build (or read) the vocabulary tables the ranking needs; the seconds they took to build, or None."""
    if cfg.ranking == "table":
        return (vocab_table(target, progress=progress).seconds
                + vocab_table(target, TABLE_CONTEXTS, cfg.seed, progress=progress).seconds)
    return vocab_table(target, progress=progress).seconds if cfg.first_token == "table" else None


def _proposal(target: LayerModel, cfg: InvertConfig, cal, W: torch.Tensor, f: torch.Tensor, t: int, prefix: Prefix,
           h: torch.Tensor, prior, prior_first: bool):
    """What proposes the candidates at position t."""
    if cfg.ranking == "vocab":
        return VocabOrder()
    if t == 0 and (cfg.first_token == "table" or cfg.ranking == "table"):
        return ContextTable(vocab_table(target), f)
    sqnorm = target.lm.memo("sqnorm", lambda: (W * W).sum(-1))  # (V,)
    start = (cal.first if t == 0 else cal.later)(f)
    if cfg.ranking == "table":
        table = ContextTable(vocab_table(target, TABLE_CONTEXTS, cfg.seed), f)
        return Guided(TableThenDescent(table, lambda: Descent(prefix, W, sqnorm, h, start)), None, prior, prior_first)
    if cfg.ranking == "secant":
        return Guess(W, sqnorm, f, start, cal.secant)
    guess = Guess(W, sqnorm, f, start, cal.secant)
    return Guided(guess, lambda: Descent(prefix, W, sqnorm, h, start), prior, prior_first)


def _entry(lm, t: int, token: int, ids: torch.Tensor, res: torch.Tensor, tol: float, groups: torch.Tensor,
           verified: bool) -> dict:
    """One position's certificate."""
    res_tok = float(res[ids == token].min())
    tied = torch.nonzero(groups == groups[token]).flatten()
    ties = sorted(({int(i) for i in tied} | {int(i) for i in ids[res <= tol]}) - {token})
    others = ~torch.isin(ids, tied)  # runner-up: the best verified token that is not a duplicate of the accepted
    entry = dict(position=t, token=token, text=lm.decode([token]), verified=verified, residual=res_tok,
                 ties=ties, candidates=len(ids))
    if others.any():
        j = int(res.masked_fill(~others, float("inf")).argmin())
        entry.update(runner_up=int(ids[j]), runner_up_text=lm.decode([int(ids[j])]), runner_up_residual=float(res[j]))
    else:
        entry.update(runner_up=None, runner_up_text=None, runner_up_residual=None)
    if not verified:
        best = res.argsort()[:CLOSEST]
        entry["closest"] = [dict(token=int(ids[j]), text=lm.decode([int(ids[j])]), residual=float(res[j]))
                            for j in best]
    return entry
