"""The page's method: gradient descent on input embeddings, decoded to tokens (eqs. 1-4).

Many prompts of different lengths are optimised in one padded batch; each prompt's loss involves only its own
embedding, so the batch is the same computation as one prompt at a time, just fewer Python steps.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..objective.batching import output_generator, pad, per_item, prompt_generator
from ..objective.decode import Decoder
from ..objective.names import DECODERS
from ..errors import LmrepError
from ..objective.losses import distance
from ..objective.schedule import factor
from ..records.health import curve_health
from .base import Target, recovered
from .config import InvertConfig
from .registry import register_method

log = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor], torch.Tensor]


def initial_embedding(cfg: InvertConfig, like: torch.Tensor, gens: list[torch.Generator],
                      lengths: list[int], e_true: torch.Tensor | None = None) -> torch.Tensor:
    """e0 per cfg.init, one generator per prompt: (B, T, d) shaped like ``like``; ``mix`` needs the true
    embeddings ``e_true``."""
    noise = per_item(like, gens, lengths)  # (B, T, d) N(0, 1), zero on padding
    if cfg.init == "original":
        return noise  # N(0, 1), as the author's scripts do
    text_noise = 0.5 + noise / 20  # N(0.5, 1/20), as the page's text says
    if cfg.init == "text":
        return text_noise
    if e_true is None:
        raise LmrepError("--init mix starts from the true embeddings, which observed outputs do not have: use "
                         "--init text or original")
    s, t = cfg.mix
    return s * text_noise + t * e_true


@torch.no_grad()
def threshold(target: Target, e_true: torch.Tensor, mask: torch.Tensor, out_true: torch.Tensor, sigma: float,
              gens: list[torch.Generator]) -> torch.Tensor:
    """Eq. 4's m = ||O(e') - O(e)||_1 with e' = e + N(0, sigma), per prompt: (B,)."""
    shift = per_item(e_true, gens, mask.sum(1).tolist())
    return distance(target(e_true + sigma * shift, mask), out_true, mask, "l1")


def rank_of(s: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rank of each true token given a decoder's scores s (B, T, V) (1 = the highest): -> (B, T)."""
    return (s > s.gather(-1, ids[..., None])).sum(-1) + 1


@register_method("gd")
def invert_gd(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
              truth: list[list[int]] | None = None):
    yield from optimize(target, outputs, cfg, progress, truth=truth)


def optimize(target: Target, outputs: list[torch.Tensor], cfg: InvertConfig, progress: bool = True,
             transform: Transform | None = None, truth: list[list[int]] | None = None):
    """Gradient descent on input embeddings towards each observed output (T_i, D), batch by batch.
    ``transform`` maps the optimised embeddings (B, T, d) to what the model is run on (None: themselves); the
    gradient flows back through it. ``truth`` (the true ids, when known) adds diagnostics only: eq. 4's threshold,
    the true tokens' ranks, snapshot accuracies; the noise is then seeded by the ids, as a prompt's always was."""
    decoder = Decoder(target.lm, cfg.decoder)
    starts = range(0, len(outputs), cfg.batch_size)
    bar = tqdm(total=len(starts) * cfg.steps, disable=not progress, desc=f"{cfg.method} {target.name}",
               unit="step", file=sys.stderr, leave=False)
    try:
        for i in starts:
            batch = outputs[i:i + cfg.batch_size]
            ids = truth[i:i + cfg.batch_size] if truth is not None else None
            yield from _run_batch(target, decoder, batch, cfg, bar, transform or (lambda e: e), ids)
    finally:
        bar.close()


def _run_batch(target: Target, decoder: Decoder, batch: list[torch.Tensor], cfg: InvertConfig, bar,
               transform: Transform, truth: list[list[int]] | None = None):
    """Optimise one padded batch and yield its records."""
    run = _Batch(target, decoder, batch, cfg, transform, truth)
    run.descend(bar)
    yield from run.records()


POSTFIX_EVERY = 50  # steps between updates of the progress bar's best loss (an update waits for the device)


@dataclass
class _Batch:
    """One padded batch of observed outputs optimised together, and what is tracked for each of them.

    What is tracked per step stays a tensor on the model's device, and as little of it as a step needs: which
    prompts are alive, the loss curve (and the L1 curve, when the loss is another), the best loss and its
    embedding, and the step a gradient became non-finite. Why a prompt stopped, the best step (the curve's health),
    the L1 distance there and eq. 4's first crossing are read off the curves at the end. A stopped prompt's gradient is
    zeroed from then on, and it reports its best. So a step never waits for the device but once and
    costs no Python per sequence: the batch runs at the speed of the model's forward and backward.
    """
    target: Target
    decoder: Decoder
    batch: list[torch.Tensor]  # observed outputs, (T_i, D) each
    cfg: InvertConfig
    transform: Transform
    truth: list[list[int]] | None = None  # the true ids, for diagnostics only
    snaps: list = field(init=False)

    def __post_init__(self):
        lm, B, cfg = self.target.lm, len(self.batch), self.cfg
        dev = lm.device
        self.t0 = time.perf_counter()
        self.lengths = [len(h) for h in self.batch]
        T, D = max(self.lengths), self.batch[0].shape[1]
        self.mask = pad([[1] * L for L in self.lengths], device=dev)[1]  # (B, T)
        self.weights = self.mask.to(lm.dtype)  # (B, T): the loss's mask, in the outputs' dtype once
        # no padding (one sequence, or sequences of one length): the model needs only its causal mask, cheaper
        self.run_mask = None if min(self.lengths) == max(self.lengths) else self.mask
        self.out_true = torch.zeros(B, T, D, device=dev, dtype=lm.dtype)  # (B, T, D), zero on padding
        for b, h in enumerate(self.batch):
            self.out_true[b, : len(h)] = h.detach().to(device=dev, dtype=lm.dtype)
        like = torch.zeros(B, T, lm.d_model, device=dev, dtype=lm.dtype)  # (B, T, d): what embeddings look like
        if self.truth is not None:
            self.ids = pad(self.truth, device=dev)[0]  # (B, T)
            self.e_true = lm.embed(self.ids).detach()  # (B, T, d)
            gens = [prompt_generator(cfg.seed, x, dev) for x in self.truth]
            self.m = threshold(self.target, self.e_true, self.mask, self.out_true, cfg.sigma, gens)  # (B,)
        else:
            self.ids = self.e_true = None
            gens = [output_generator(cfg.seed, h, dev) for h in self.batch]
            self.m = torch.full((B,), float("nan"), device=dev)  # eq. 4's m needs the true input
        self.e = initial_embedding(cfg, like, gens, self.lengths, self.e_true).requires_grad_(True)
        self.alive = torch.ones(B, dtype=torch.bool, device=dev)
        kept = torch.promote_types(lm.dtype, torch.float32)  # curves keep float64 losses whole
        self.best = torch.full((B,), float("inf"), device=dev, dtype=kept)
        self.best_e = self.e.detach().clone()
        self.curve = torch.full((cfg.steps + 1, B), float("nan"), device=dev, dtype=kept)  # (N + 1, B) per step
        self.l1_curve = self.curve if cfg.loss == "l1" else self.curve.clone()  # eq. 4's distance per step
        self.grad_stop = torch.full((B,), -1, dtype=torch.long, device=dev)  # (B,) step its gradient broke
        self.snaps = [[] for _ in range(B)]
        self.steps = 0

    def descend(self, bar) -> None:
        """Up to cfg.steps optimiser steps, tracking each prompt's best embedding; NaN stops only that prompt."""
        cfg = self.cfg
        opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)([self.e], lr=cfg.lr)
        snaps = set(cfg.snapshot_steps())
        for n in range(cfg.steps + 1):
            loss = self._track(n)
            if n in snaps:
                self._snapshot(n)
            if n == cfg.steps or not self.alive.any():  # one look at the device per step
                break
            for group in opt.param_groups:
                group["lr"] = cfg.lr * factor(cfg.schedule, n, cfg.steps)
            opt.zero_grad()
            torch.where(self.alive, loss, 0).sum().backward()  # a stopped prompt's loss gets no gradient
            with torch.no_grad():
                grad = self.e.grad
                # a float64 sum is non-finite exactly when an element is (float32 values cannot overflow it)
                broke = self.alive & ~torch.isfinite(grad.sum((1, 2), dtype=torch.float64))  # (B,)
                self.grad_stop = torch.where(broke, n, self.grad_stop)
                self.alive = self.alive & ~broke
                grad.masked_fill_(~self.alive[:, None, None], 0)  # a stopped prompt stays put but for momentum
                opt.step()
            bar.update(1)
            if not bar.disable and n % POSTFIX_EVERY == 0:
                bar.set_postfix(loss=f"{self.best.min().item():.3g}")
        self.steps = n
        bar.update(cfg.steps - n)

    def _track(self, n: int) -> torch.Tensor:
        """The loss at step n (B,), with the curves, best-so-far and who is alive updated on the device."""
        out = self.target(self.transform(self.e), self.run_mask)  # (B, T, D)
        loss = distance(out, self.out_true, self.weights, self.cfg.loss)  # (B,)
        with torch.no_grad():
            value = loss.detach()
            self.curve[n] = value  # as it came: stops() masks what follows a stop
            if self.l1_curve is not self.curve:
                self.l1_curve[n] = distance(out, self.out_true, self.weights, "l1")
            self.alive = self.alive & (value.abs() < math.inf)  # a non-finite loss stops its prompt here
            improved = self.alive & (value < self.best)  # (B,)
            self.best = torch.where(improved, value, self.best)
            self.best_e = torch.where(improved[:, None, None], self.e, self.best_e)  # (B, T, d)
        return loss

    def stops(self) -> list[tuple[int, str] | None]:
        """Why each prompt stopped early: (step, what happened), or None where it ran every step. A loss that became
        non-finite is in the curve at its step; a gradient that did is in ``grad_stop``; whichever came first."""
        out = []
        for values, broke in zip(self.curve[: self.steps + 1].T.tolist(), self.grad_stop.tolist()):
            seen = values if broke < 0 else values[: broke + 1]
            bad = next((n for n, x in enumerate(seen) if not math.isfinite(x)), None)
            out.append((bad, f"loss became {values[bad]}") if bad is not None else
                       (broke, "gradient became non-finite") if broke >= 0 else None)
        return out

    def masked(self, curve: torch.Tensor, stops: list[tuple[int, str] | None]) -> list[list[float]]:
        """Per prompt, ``curve``'s values up to the last step run, NaN from the step after its stop (``stops``) and
        at a non-finite loss's own step."""
        rows = curve[: self.steps + 1].T.tolist()  # (B, n + 1)
        for row, stop in zip(rows, stops):
            if stop is not None:
                row[stop[0] + 1:] = [math.nan] * (len(row) - stop[0] - 1)
            row[:] = [x if math.isfinite(x) else math.nan for x in row]
        return rows

    def _snapshot(self, step: int) -> None:
        e = torch.where(self.alive[:, None, None], self.e.detach(), self.best_e)  # a stopped prompt: its best
        got_all = self.decoder(e, allowed=None).tolist()  # (B, T)
        for b, L in enumerate(self.lengths):
            got = got_all[b][:L]
            snap = dict(step=step, text=self.target.lm.decode(got))
            if self.truth is not None:
                snap["token_accuracy"] = sum(int(x == y) for x, y in zip(got, self.truth[b])) / L
            self.snaps[b].append(snap)

    def records(self):
        """One record per sequence of the batch, decoded from its best embedding (the step of lowest loss), with
        its loss curve's health (start, best, end, best step; ok / stalled / diverged)."""
        lm, cfg, mask = self.target.lm, self.cfg, self.mask
        known = self.truth is not None
        with torch.no_grad():
            scores = {name: (self.decoder if name == cfg.decoder else Decoder(lm, name)).scores(self.best_e)
                      for name in (DECODERS if known else [cfg.decoder])}  # (B, T, V) each: top-k and ranks
            final = scores[cfg.decoder].topk(cfg.topk, dim=-1).indices  # (B, T, k)
            rec_ids = [final[b, :L, 0].tolist() for b, L in enumerate(self.lengths)]
            rec_pad, _ = pad(rec_ids, device=lm.device)
            tok_dist = distance(self.target(lm.embed(rec_pad), self.run_mask), self.out_true, mask, "l1")
            if known:
                cos = torch.nn.functional.cosine_similarity(self.best_e, self.e_true, dim=-1)  # (B, T)
                ranks = {name: rank_of(s, self.ids) for name, s in scores.items()}  # (B, T) each
            del scores
        seconds = (time.perf_counter() - self.t0) / len(self.batch)
        stops = self.stops()
        curves = self.masked(self.curve, stops)  # (B, n + 1), NaN where it had stopped
        l1 = curves if self.l1_curve is self.curve else self.masked(self.l1_curve, stops)  # eq. 4's distance
        m = self.m.tolist()
        for b, L in enumerate(self.lengths):
            topk_ids = final[b, :L].tolist()
            note = None if stops[b] is None else \
                f"{stops[b][1]} at step {stops[b][0]}; stopped this prompt and kept its best so far"
            if note:
                log.warning(f"{lm.decode(rec_ids[b])!r} (recovered): {note}")
            health = curve_health(curves[b], cfg.diverge_factor)
            best_l1 = math.inf if health["best_step"] is None else l1[b][health["best_step"]]
            truth = {}
            if known:
                first = next((n for n, x in enumerate(l1[b]) if x < m[b]), None)  # eq. 4 first met
                truth = dict(threshold=m[b], within_threshold=bool(best_l1 < m[b]), first_within_step=first,
                             tokens_within_threshold=bool(tok_dist[b] < m[b]),
                             embedding_cosine=cos[b, :L].mean().item(),
                             true_in_topk=sum(int(t in row) for t, row in zip(self.truth[b], topk_ids)) / L,
                             true_rank={name: r[b, :L].tolist() for name, r in ranks.items()})
            yield recovered(
                self.target, cfg, rec_ids[b], output_distance=best_l1, token_output_distance=tok_dist[b].item(),
                final_loss=self.best[b].item(), steps=self.steps, seconds=seconds,
                topk_texts=[lm.decode([row[j] for row in topk_ids]) for j in range(cfg.topk)] if cfg.topk > 1 else None,
                snapshots=self.snaps[b], loss_curve=curves[b], stopped=note, **health, **truth)
