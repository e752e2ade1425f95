"""The page's method: gradient descent on input embeddings, decoded to tokens (eqs. 1-4).

Many prompts of different lengths are optimised in one padded batch; each prompt's loss involves only its own
embedding, so the batch is the same computation as one prompt at a time, just fewer Python steps.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..batching import pad, per_item, prompt_generator
from ..decode import DECODERS, Decoder
from ..losses import distance
from ..optim import decay
from .base import Target, next_tokens, record
from .config import InvertConfig
from .registry import register_method

Transform = Callable[[torch.Tensor], torch.Tensor]


def initial_embedding(cfg: InvertConfig, e_true: torch.Tensor, gens: list[torch.Generator],
                      lengths: list[int]) -> torch.Tensor:
    """e0 per cfg.init, one generator per prompt: (B, T, d)."""
    noise = per_item(e_true, gens, lengths)  # (B, T, d) N(0, 1), zero on padding
    if cfg.init == "original":
        return noise  # N(0, 1), as the author's scripts do
    text_noise = 0.5 + noise / 20  # N(0.5, 1/20), as the page's text says
    if cfg.init == "text":
        return text_noise
    s, t = cfg.mix
    return s * text_noise + t * e_true


@torch.no_grad()
def threshold(target: Target, e_true: torch.Tensor, mask: torch.Tensor, out_true: torch.Tensor, sigma: float,
              gens: list[torch.Generator]) -> torch.Tensor:
    """Eq. 4's m = ||O(e') - O(e)||_1 with e' = e + N(0, sigma), per prompt: (B,)."""
    shift = per_item(e_true, gens, mask.sum(1).tolist())
    return distance(target(e_true + sigma * shift, mask), out_true, mask, "l1")


@torch.no_grad()
def true_rank(decoder: Decoder, e: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rank of each true token among all tokens under ``decoder`` (1 = the decoded one): e (B, T, d) -> (B, T)."""
    s = decoder.scores(e)  # (B, T, V)
    return (s > s.gather(-1, ids[..., None])).sum(-1) + 1


@register_method("gd")
def invert_gd(target: Target, prompts: list[list[int]], cfg: InvertConfig, progress: bool = True):
    yield from optimize(target, prompts, cfg, progress)


def optimize(target: Target, prompts: list[list[int]], cfg: InvertConfig, progress: bool = True,
             transform: Transform | None = None):
    """Gradient descent on input embeddings, batch by batch. ``transform`` maps the optimised embeddings
    (B, T, d) to what the model is run on (None: themselves); the gradient flows back through it."""
    decoder = Decoder(target.lm, cfg.decoder)
    batches = [prompts[i:i + cfg.batch_size] for i in range(0, len(prompts), cfg.batch_size)]
    bar = tqdm(total=len(batches) * cfg.steps, disable=not progress, desc=f"{cfg.method} {target.name}",
               unit="step", file=sys.stderr, leave=False)
    try:
        for batch in batches:
            yield from _run_batch(target, decoder, batch, cfg, bar, transform or (lambda e: e))
    finally:
        bar.close()


def _run_batch(target: Target, decoder: Decoder, batch: list[list[int]], cfg: InvertConfig, bar,
               transform: Transform):
    """Optimise one padded batch and yield its records."""
    run = _Batch(target, decoder, batch, cfg, transform)
    run.descend(bar)
    yield from run.records()


@dataclass
class _Batch:
    """One padded batch of prompts optimised together, and what is tracked for each of them."""
    target: Target
    decoder: Decoder
    batch: list[list[int]]
    cfg: InvertConfig
    transform: Transform
    notes: list = field(init=False)

    def __post_init__(self):
        lm, B = self.target.lm, len(self.batch)
        self.t0 = time.perf_counter()
        self.ids, self.mask = pad(self.batch, device=lm.device)  # (B, T)
        self.lengths = self.mask.sum(1).tolist()
        self.e_true = lm.embed(self.ids).detach()  # (B, T, d)
        with torch.no_grad():
            self.out_true = self.target(self.e_true, self.mask)  # (B, T, D)
        gens = [prompt_generator(self.cfg.seed, x, lm.device) for x in self.batch]
        self.m = threshold(self.target, self.e_true, self.mask, self.out_true, self.cfg.sigma, gens)  # (B,)
        self.e = initial_embedding(self.cfg, self.e_true, gens, self.lengths).requires_grad_(True)
        self.alive = torch.ones(B, dtype=torch.bool, device=lm.device)
        self.best = torch.full((B,), float("inf"), device=lm.device, dtype=torch.float64)
        self.best_l1 = self.best.clone()
        self.best_e = self.e.detach().clone()
        self.first_within, self.notes = [None] * B, [None] * B
        self.curves, self.snaps = [[] for _ in range(B)], [[] for _ in range(B)]
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
            if n == cfg.steps or not self.alive.any():
                break
            for group in opt.param_groups:
                group["lr"] = cfg.lr * decay(n, cfg.steps)
            opt.zero_grad(set_to_none=False)
            loss[self.alive].sum().backward()
            self._stop(self.alive & ~torch.isfinite(self.e.grad).flatten(1).all(1), f"gradient became non-finite "
                       f"at step {n}")
            self.e.grad[~self.alive] = 0
            opt.step()
            with torch.no_grad():
                self.e[~self.alive] = self.best_e[~self.alive]  # frozen prompts stay at their best
            bar.update(1)
            bar.set_postfix(loss=f"{self.best.min().item():.3g}")
        self.steps = n
        bar.update(cfg.steps - n)

    def _track(self, n: int) -> torch.Tensor:
        """The loss at step n (B,), with best-so-far, curves and eq. 4's first crossing updated."""
        out = self.target(self.transform(self.e), self.mask)  # (B, T, D)
        loss = distance(out, self.out_true, self.mask, self.cfg.loss)  # (B,)
        value = loss.detach()
        l1 = value if self.cfg.loss == "l1" else distance(out.detach(), self.out_true, self.mask, "l1")
        for b in torch.nonzero(self.alive & ~torch.isfinite(value)).flatten().tolist():
            self._stop_one(b, f"loss became {value[b].item()} at step {n}")
        improved = self.alive & (value.double() < self.best)
        self.best = torch.where(improved, value.double(), self.best)
        self.best_l1 = torch.where(improved, l1.double(), self.best_l1)
        self.best_e[improved] = self.e.detach()[improved]
        for b in range(len(self.batch)):
            self.curves[b].append(value[b].item() if self.alive[b] else float("nan"))
            if self.first_within[b] is None and self.alive[b] and l1[b] < self.m[b]:
                self.first_within[b] = n
        return loss

    def _stop(self, which: torch.Tensor, why: str) -> None:
        for b in torch.nonzero(which).flatten().tolist():
            self._stop_one(b, why)

    def _stop_one(self, b: int, why: str) -> None:
        self.notes[b] = f"{why}; stopped this prompt and kept its best so far"
        self.alive[b] = False

    def _snapshot(self, step: int) -> None:
        got_all = self.decoder(self.e.detach(), allowed=None)  # (B, T)
        for b, want in enumerate(self.batch):
            got = got_all[b, : self.lengths[b]].tolist()
            acc = sum(int(x == y) for x, y in zip(got, want)) / len(got)
            self.snaps[b].append(dict(step=step, text=self.target.lm.decode(got), token_accuracy=acc))

    def records(self):
        """One record per prompt of the batch, from its best embedding."""
        lm, cfg, mask = self.target.lm, self.cfg, self.mask
        with torch.no_grad():
            final = self.decoder.topk(self.best_e, cfg.topk)  # (B, T, k)
            rec_ids = [final[b, :L, 0].tolist() for b, L in enumerate(self.lengths)]
            rec_pad, _ = pad(rec_ids, device=lm.device)
            tok_dist = distance(self.target(lm.embed(rec_pad), mask), self.out_true, mask, "l1")
            cos = torch.nn.functional.cosine_similarity(self.best_e, self.e_true, dim=-1)  # (B, T)
            ranks = {name: true_rank(self.decoder if name == cfg.decoder else Decoder(lm, name), self.best_e,
                                     self.ids) for name in DECODERS}  # (B, T) each
        nxt_true, nxt_rec = next_tokens(self.target, self.batch), next_tokens(self.target, rec_ids)
        seconds = (time.perf_counter() - self.t0) / len(self.batch)
        for b, L in enumerate(self.lengths):
            topk_ids = final[b, :L].tolist()
            if self.notes[b]:
                print(f"lmrep: prompt {lm.decode(self.batch[b])!r}: {self.notes[b]}", file=sys.stderr)
            yield record(
                self.target, cfg, self.batch[b], rec_ids[b], output_distance=self.best_l1[b].item(),
                threshold=self.m[b].item(), within_threshold=bool(self.best_l1[b] < self.m[b]),
                first_within_step=self.first_within[b], token_output_distance=tok_dist[b].item(),
                tokens_within_threshold=bool(tok_dist[b] < self.m[b]), next_token_match=nxt_true[b] == nxt_rec[b],
                next_token=lm.decode([nxt_true[b]]), recovered_next_token=lm.decode([nxt_rec[b]]),
                embedding_cosine=cos[b, :L].mean().item(), final_loss=self.best[b].item(), steps=self.steps,
                seconds=seconds, true_in_topk=sum(int(t in row) for t, row in zip(self.batch[b], topk_ids)) / L,
                topk_texts=[lm.decode([row[j] for row in topk_ids]) for j in range(cfg.topk)] if cfg.topk > 1 else None,
                true_rank={name: r[b, :L].tolist() for name, r in ranks.items()},
                snapshots=self.snaps[b], loss_curve=self.curves[b], stopped=self.notes[b])
