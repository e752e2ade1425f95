"""Exact inversion with a certificate: recover the tokens left to right, each one verified by a forward pass.

Causality makes this a sequence of small searches: the layer's output at position t depends only on tokens
0..t, so once tokens 0..t-1 are known, token t is the vocabulary entry whose output at t equals the target there.
For each position a ranking (rank.py) proposes candidates, and this loop verifies them in batches by one forward
pass of single positions that reuse the known prefix's key/value cache (kvcache.py), until one is within
tolerance (certificate.py) or the whole vocabulary (or the user's cap) has been tried. Nothing here knows what
a ranking does: it asks for candidates, runs them with the ranking's probes, and reports what came out. The
``exact`` method itself (observed outputs, the tolerance their precision allows) is lmrep.inversion.exact.method.
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm.auto import tqdm

from ...objective.decode import duplicate_groups
from ...errors import LmrepError
from ...models.layers import LayerModel
from .certificate import entry, relative_tolerance, residuals, summary
from .config import ExactConfig
from .guess import output_features
from .kvcache import Prefix
from .rank import RANKINGS, Expectation, Position, Setup


def batch_sizes(largest: int):
    """2 (a candidate and a runner-up), then 6, then doubling up to ``largest``: a batch of a few costs about one
    of one (the cost is per pass), and most positions end in the first batch."""
    yield min(2, largest)
    size = 6
    while True:
        yield min(size, largest)
        size = min(2 * size + 4, largest)


def _tolerances(target: LayerModel, T: int, cfg: ExactConfig, tolerance) -> torch.Tensor:
    """(T,) relative tolerances: ``tolerance`` (a float or one per position), else the config's, else derived."""
    if tolerance is None:
        tolerance = cfg.tolerance if cfg.tolerance is not None else relative_tolerance(target)
    tol = torch.as_tensor(tolerance, dtype=torch.float64).flatten().cpu()
    if tol.numel() == 1:
        tol = tol.expand(T)
    if tol.shape != (T,) or not bool(torch.isfinite(tol).all()) or bool((tol <= 0).any()):
        raise LmrepError(f"tolerance must be a positive number or one per position ({T}), got shape "
                         f"{tuple(tol.shape)}")
    return tol.clone()


@torch.no_grad()
def invert_outputs(target: LayerModel, outputs: torch.Tensor, cfg=None, progress: bool = False,
                   tolerance: float | torch.Tensor | None = None) -> dict:
    """Recover the tokens whose layer output is ``outputs`` ((T, D) or (1, T, D)), with a certificate.

    ``cfg``: an ExactConfig or InvertConfig (None: the defaults). ``tolerance``: a relative tolerance, or a (T,)
    tensor of them, overriding ``cfg.tolerance`` (for targets observed at a known precision). Returns
    ``recovered_ids``, ``verified`` (every position matched within tolerance), ``certificate`` (one entry per
    position), ``candidates_per_token`` (mean), ``candidates_max``, ``max_residual``, ``tolerance`` (the largest
    per-position one) and costs (``seconds``, ``forward_calls``, ``rows``, ``setup_seconds`` waited for setup).
    """
    cfg = ExactConfig.of(cfg).check()
    if not isinstance(target, LayerModel):
        raise LmrepError("the exact method needs a layer of a causal language model (lmrep.layer_model)")
    lm = target.lm
    h_all = outputs.detach().to(device=lm.device, dtype=lm.dtype)
    h_all = h_all[0] if h_all.dim() == 3 and h_all.shape[0] == 1 else h_all
    if h_all.dim() != 2 or h_all.shape[0] < 1:
        raise LmrepError(f"outputs must have shape (T, D) or (1, T, D), got {tuple(outputs.shape)}")
    if h_all.shape[0] > lm.max_positions:
        raise LmrepError(f"outputs have {h_all.shape[0]} positions but {lm.name} takes at most {lm.max_positions}")
    tol = _tolerances(target, h_all.shape[0], cfg, tolerance)
    t0 = time.perf_counter()
    search = _Search(target, cfg, h_all)
    for t in tqdm(range(h_all.shape[0]), disable=not progress, desc=f"exact {target.name}", unit="token",
                  file=sys.stderr, leave=False):
        search.position(t, h_all[t], float(tol[t]))
    cert, setup = search.cert, search.setup
    return dict(recovered_ids=search.tokens, **summary(cert), tolerance=float(tol.max()), certificate=cert,
                seconds=time.perf_counter() - t0, forward_calls=search.calls, rows=search.rows,
                gradient_steps=search.steps, prior_positions=search.expectation.positions,
                calibration_seconds=setup.calibration_seconds,
                table_seconds=sum(setup.table_seconds.values()) if setup.table_seconds else None,
                setup_seconds=setup.paid)


class _Search:
    """The left-to-right search's state: the verified prefix, the tokens and certificate so far, and its costs."""

    def __init__(self, target: LayerModel, cfg: ExactConfig, outputs: torch.Tensor):
        lm = target.lm
        self.target, self.cfg = target, cfg
        self.W, self.feat, self.groups = lm.embedding_matrix.detach(), output_features(target), duplicate_groups(lm)
        self.sqnorm = lm.memo("sqnorm", lambda: (self.W * self.W).sum(-1))  # (V,)
        self.setup, self.expectation = Setup(target, cfg.seed), Expectation(target, outputs)
        self.prefix, self.tokens, self.cert, self.memory = Prefix(target), [], [], {}
        self.calls = self.rows = self.steps = 0

    def position(self, t: int, h: torch.Tensor, tol: float) -> None:
        """Find the token at position t whose output is h (D,): verify candidates batch by batch until one is
        within tolerance (or the cap is reached), then extend the prefix by it."""
        lm, cfg, W = self.target.lm, self.cfg, self.W
        pos = Position(self.target, t, h, self.feat(h), self.prefix, list(self.tokens), W, self.sqnorm, self.setup,
                       self.expectation, self.memory)
        order = RANKINGS[cfg.ranking_at(t)](pos)
        tried = torch.zeros(lm.vocab_size, dtype=torch.bool, device=lm.device)
        cap, n_tried, seen_ids, seen_res, hit = cfg.cap(lm.vocab_size), 0, [], [], None
        for size in batch_sizes(cfg.batch(lm.device)):
            size = min(size, cap - n_tried)
            if size <= 0:
                break
            ids = order.next(size, tried)  # (n,)
            probes = order.probes()  # (p, d) or None: points that only inform the ranking
            x = W[ids] if probes is None else torch.cat([W[ids], probes.to(W.dtype)])
            out, cache = self.prefix.step(x)  # (n + p, D)
            res = residuals(out[: len(ids)], h)  # (n,)
            tried[ids] = True
            n_tried += len(ids)
            seen_ids.append(ids)
            seen_res.append(res)
            self.calls, self.rows = self.calls + 1, self.rows + len(x)
            if bool((res <= tol).any()):
                hit = (ids, res, cache)
                break
            order.observe(ids, x, self.feat(out))
        ids_all, res_all = torch.cat(seen_ids), torch.cat(seen_res)
        if hit is not None:
            ids, res, cache = hit
            row = int(res.argmin())
            self.prefix = self.prefix.extend(cache, row)
            token = int(ids[row])
        else:  # go on from the closest candidate: never reported as verified
            token = int(ids_all[res_all.argmin()])
            out, cache = self.prefix.step(W[token][None])
            self.calls, self.rows = self.calls + 1, self.rows + 1
            self.prefix = self.prefix.extend(cache, 0)
        self.steps += getattr(order, "gradient_steps", 0)
        self.tokens.append(token)
        self.cert.append(dict(entry(lm, t, token, ids_all, res_all, tol, self.groups, verified=hit is not None),
                              tolerance=tol))
