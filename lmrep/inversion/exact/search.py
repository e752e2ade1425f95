"""Exact inversion with a certificate: recover the tokens left to right, each one verified by a forward pass.

Causality makes this a sequence of small searches: the layer's output at position t depends only on tokens
0..t, so once tokens 0..t-1 are known, token t is the vocabulary entry whose output at t equals the target there.
For each position a ranking (rank.py) proposes candidates, and this loop verifies them in batches by one forward
pass of single positions that reuse the known prefix's key/value cache (kvcache.py), until one is within
tolerance (certificate.py) or the whole vocabulary (or the user's cap) has been tried. Nothing here knows what
a ranking does: it asks for candidates, runs them with the ranking's probes, and reports what came out. The
``exact`` method itself (observed outputs in, certified records out) is method.py.
"""
from __future__ import annotations

import itertools
import sys
import time

import torch
from tqdm.auto import tqdm

from ...objective.decode import duplicate_groups
from ...errors import LmrepError
from ...models.layers import LayerModel
from .certificate import entry, residuals
from .config import ExactConfig
from .guess import output_features
from .kvcache import Prefix
from .rank import FACTORIES, Expectation, Position, Setup

EXHAUSTIVE_BATCH = 512  # candidates per pass once the whole vocabulary is to be verified


def batch_sizes(largest: int):
    """2 (a candidate and a runner-up), then 6, then doubling up to ``largest``: a batch of a few costs about one
    of one (the cost is per pass), and most positions end in the first batch."""
    yield min(2, largest)
    size = 6
    while True:
        yield min(size, largest)
        size = min(2 * size + 4, largest)


@torch.no_grad()
def search(target: LayerModel, outputs: torch.Tensor, cfg: ExactConfig, tolerance: torch.Tensor,
           progress: bool = False, match=None, exhaustive: bool = False) -> dict:
    """The tokens whose layer output is ``outputs`` (T, D), each accepted when its residual is within
    ``tolerance`` (T,) (certificate.tolerances resolves it); ``cfg``: an ExactConfig (an InvertConfig is one).
    Returns ``recovered_ids``, ``certificate`` (one entry per position, for certificate.certify) and costs
    (``seconds``, ``forward_calls``, ``rows``, ``setup_seconds`` waited for setup, ...). ``match``: how a
    candidate's outputs (n, D) compare with the row at t, ``match(out, t) -> (n,)`` residuals against ``tolerance``
    (default: certificate.residuals). ``exhaustive``: verify the whole vocabulary at every position, so that each
    position's ties are every token that fits (its ambiguity set), not only those met before the first; a cap
    then bounds the work where something fits within it, and a position where nothing does goes on through the rest
    of the vocabulary (an empty set means no token fits at all)."""
    if not isinstance(target, LayerModel):
        raise LmrepError("the exact method needs a layer of a causal language model (lmrep.layer_model)")
    lm = target.lm
    h_all = outputs.detach().to(device=lm.device, dtype=lm.dtype)  # (T, D)
    if h_all.shape[0] > lm.max_positions:
        raise LmrepError(f"outputs have {h_all.shape[0]} positions but {lm.name} takes at most {lm.max_positions}")
    t0 = time.perf_counter()
    state = _Search(target, cfg, h_all, match, exhaustive)
    for t in tqdm(range(h_all.shape[0]), disable=not progress, desc=f"exact {target.name}", unit="token",
                  file=sys.stderr, leave=False):
        state.position(t, h_all[t], float(tolerance[t]))
    setup = state.setup
    setup.finish()
    return dict(recovered_ids=state.tokens, certificate=state.cert, seconds=time.perf_counter() - t0,
                forward_calls=state.calls, rows=state.rows, gradient_steps=state.steps,
                prior_positions=state.expectation.positions, calibration_seconds=setup.calibration_seconds,
                probe_seconds=setup.probe_seconds,
                table_seconds=sum(setup.table_seconds.values()) if setup.table_seconds else None,
                setup_seconds=setup.paid, setup_before_first_token=state.first_wait)


class _Search:
    """The left-to-right search's state: the verified prefix, the tokens and certificate so far, and its costs."""

    def __init__(self, target: LayerModel, cfg: ExactConfig, outputs: torch.Tensor, match=None,
                 exhaustive: bool = False):
        lm = target.lm
        self.target, self.cfg, self.exhaustive = target, cfg, exhaustive
        self.match = match or (lambda out, t: residuals(out, outputs[t]))
        self.W, self.feat, self.groups = lm.embedding_matrix.detach(), output_features(target), duplicate_groups(lm)
        self.sqnorm = lm.memo("sqnorm", lambda: (self.W * self.W).sum(-1))  # (V,)
        self.setup, self.expectation = Setup(target, cfg.seed), Expectation(target, outputs)
        self.prefix, self.tokens, self.cert, self.memory = Prefix(target), [], [], {}
        self.calls = self.rows = self.steps = 0
        self.first_wait = 0.0

    def position(self, t: int, h: torch.Tensor, tol: float) -> None:
        """Find the token at position t whose output is h (D,): verify candidates batch by batch until one is
        within tolerance (or the cap is reached), then extend the prefix by it."""
        lm, cfg, W = self.target.lm, self.cfg, self.W
        pos = Position(self.target, t, h, self.feat(h), self.prefix, list(self.tokens), W, self.sqnorm, self.setup,
                       self.expectation, self.memory)
        order = FACTORIES[cfg.ranking_at(t)](pos)
        if t == 0:
            self.first_wait = self.setup.paid  # what the first token's search waited for
        tried = torch.zeros(lm.vocab_size, dtype=torch.bool, device=lm.device)
        cap, n_tried, seen_ids, seen_res, hit = cfg.cap(lm.vocab_size), 0, [], [], None
        largest = min(max(cfg.batch(lm.device), EXHAUSTIVE_BATCH if self.exhaustive else 0),
                      self.prefix.rows_within(cfg.cache_bytes(lm.device)))
        # every token is verified anyway when the whole vocabulary is: no small first batches then
        whole = self.exhaustive and cap == lm.vocab_size
        for size in itertools.repeat(largest) if whole else batch_sizes(largest):
            if self.exhaustive and hit is None and n_tried >= cap:
                cap = lm.vocab_size  # nothing in the cut fits: the rest of the vocabulary, so no set is empty unlooked
            if hit is not None:  # found: the rest of the set in the ranking's order as it stands, in full passes
                size = largest
            size = min(size, cap - n_tried)
            if size <= 0:
                break
            ids = order.next(size, tried)  # (n,)
            probes = order.probes()  # (p, d) or None: points that only inform the ranking
            x = W[ids] if probes is None else torch.cat([W[ids], probes.to(W.dtype)])
            out, cache = self.prefix.step(x)  # (n + p, D)
            res = self.match(out[: len(ids)], t)  # (n,)
            tried[ids] = True
            n_tried += len(ids)
            seen_ids.append(ids)
            seen_res.append(res)
            self.calls, self.rows = self.calls + 1, self.rows + len(x)
            if bool((res <= tol).any()) and (hit is None or res.min() < hit[1].min()):
                hit = (ids, res, cache)
                if not self.exhaustive:
                    getattr(order, "settle", lambda *a: None)(ids, x, self.feat(out))  # what ended the position
                    break
            if hit is None:
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
