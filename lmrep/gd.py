"""The seed's method: gradient descent on input embeddings, decoded to tokens (eqs. 1-4).

Many prompts of different lengths are optimised in one padded batch; each prompt's loss involves only its own
embedding, so the batch is the same computation as one prompt at a time, just fewer Python steps.
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import torch
from tqdm.auto import tqdm

from .decode import DECODERS, Decoder
from .invert import InvertConfig, Target, next_tokens, pad, prompt_generator, record, register_method
from .losses import distance


def prompt_noise(e_true: torch.Tensor, gens: list[torch.Generator], lengths: list[int] | None = None
                 ) -> torch.Tensor:
    """N(0, 1) noise (B, T, d), each prompt's drawn at its own length from its own generator, zero on padding.

    torch's CPU randn is not prefix-stable (a longer draw does not start with a shorter one), so drawing at the
    padded length would make a prompt's noise depend on the batch it happens to be in."""
    B, T, d = e_true.shape
    lengths = [T] * B if lengths is None else lengths
    out = torch.zeros_like(e_true)
    for b, (g, L) in enumerate(zip(gens, lengths)):
        out[b, :L] = torch.randn(L, d, generator=g, device=e_true.device, dtype=e_true.dtype)
    return out


def initial_embedding(cfg: InvertConfig, e_true: torch.Tensor, gens: list[torch.Generator],
                      lengths: list[int] | None = None) -> torch.Tensor:
    """e0 per cfg.init, one generator per prompt: (B, T, d)."""
    noise = prompt_noise(e_true, gens, lengths)  # (B, T, d)
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
    shift = prompt_noise(e_true, gens, mask.sum(1).tolist())
    return distance(target(e_true + sigma * shift, mask), out_true, mask, "l1")


@torch.no_grad()
def true_rank(decoder: Decoder, e: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rank of each true token among all tokens under ``decoder`` (1 = the decoded one): e (B, T, d) -> (B, T)."""
    s = decoder.scores(e)  # (B, T, V)
    return (s > s.gather(-1, ids[..., None])).sum(-1) + 1


def _lr_at(cfg: InvertConfig, n: int) -> float:
    """eta falling linearly to eta/10 over the run."""
    return cfg.lr * (1 - 0.9 * n / max(1, cfg.steps - 1))


@register_method("gd")
def invert_gd(target: Target, prompts: list[list[int]], cfg: InvertConfig, progress: bool = True):
    yield from optimize(target, prompts, cfg, progress)


Transform = Callable[[torch.Tensor], torch.Tensor]


def optimize(target: Target, prompts: list[list[int]], cfg: InvertConfig, progress: bool = True,
             transform: Transform | None = None):
    """Gradient descent on input embeddings, batch by batch. ``transform`` maps the optimised embeddings
    (B, T, d) to what the model is run on (None: themselves); the gradient flows back through it."""
    lm = target.lm
    decoder = Decoder(lm, cfg.decoder)
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
    lm, t0 = target.lm, time.perf_counter()
    ids, mask = pad(batch, device=lm.device)  # (B, T)
    B, lengths = len(batch), mask.sum(1)
    e_true = lm.embed(ids).detach()  # (B, T, d)
    with torch.no_grad():
        out_true = target(e_true, mask)  # (B, T, D)
    gens = [prompt_generator(cfg.seed, x, lm.device) for x in batch]
    m = threshold(target, e_true, mask, out_true, cfg.sigma, gens)  # (B,)
    e = initial_embedding(cfg, e_true, gens, lengths.tolist()).requires_grad_(True)
    opt = (torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD)([e], lr=cfg.lr)

    alive = torch.ones(B, dtype=torch.bool, device=lm.device)
    best = torch.full((B,), float("inf"), device=lm.device, dtype=torch.float64)
    best_l1 = torch.full((B,), float("inf"), device=lm.device, dtype=torch.float64)
    best_e = e.detach().clone()
    first_within = [None] * B
    curves = [[] for _ in range(B)]
    notes = [None] * B
    snaps = set(cfg.snapshot_steps())
    snaps_by_prompt = [[] for _ in range(B)]

    def snapshot(step: int, emb: torch.Tensor):
        rec = decoder(emb, allowed=None)  # (B, T)
        for b in range(B):
            got = rec[b, : lengths[b]].tolist()
            acc = sum(int(x == y) for x, y in zip(got, batch[b])) / len(got)
            snaps_by_prompt[b].append(dict(step=step, text=lm.decode(got), token_accuracy=acc))

    for n in range(cfg.steps + 1):
        out = target(transform(e), mask)  # (B, T, D)
        loss = distance(out, out_true, mask, cfg.loss)  # (B,)
        l1 = loss.detach() if cfg.loss == "l1" else distance(out.detach(), out_true, mask, "l1")
        finite = torch.isfinite(loss.detach())
        for b in torch.nonzero(alive & ~finite).flatten().tolist():
            notes[b] = f"loss became {loss[b].item()} at step {n}; stopped this prompt and kept its best so far"
        alive &= finite
        improved = alive & (loss.detach().double() < best)
        best = torch.where(improved, loss.detach().double(), best)
        best_l1 = torch.where(improved, l1.double(), best_l1)
        best_e[improved] = e.detach()[improved]
        for b in range(B):
            curves[b].append(loss[b].item() if alive[b] else float("nan"))
            if first_within[b] is None and alive[b] and l1[b] < m[b]:
                first_within[b] = n
        if n in snaps:
            snapshot(n, e.detach())
        if n == cfg.steps or not alive.any():
            break
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, n)
        opt.zero_grad(set_to_none=False)
        loss[alive].sum().backward()
        grad_ok = torch.isfinite(e.grad).flatten(1).all(1)  # (B,)
        for b in torch.nonzero(alive & ~grad_ok).flatten().tolist():
            notes[b] = f"gradient became non-finite at step {n}; stopped this prompt and kept its best so far"
        alive &= grad_ok
        e.grad[~alive] = 0
        opt.step()
        with torch.no_grad():
            e[~alive] = best_e[~alive]  # frozen prompts stay at their best
        bar.update(1)
        bar.set_postfix(loss=f"{best.min().item():.3g}")
    bar.update(cfg.steps - n)

    with torch.no_grad():
        final = decoder.topk(best_e, cfg.topk)  # (B, T, k)
        rec_ids = [final[b, : lengths[b], 0].tolist() for b in range(B)]
        rec_pad, _ = pad(rec_ids, device=lm.device)
        tok_dist = distance(target(lm.embed(rec_pad), mask), out_true, mask, "l1")
        cos = torch.nn.functional.cosine_similarity(best_e, e_true, dim=-1)  # (B, T)
        ranks = {kind: true_rank(decoder if kind == cfg.decoder else Decoder(lm, kind), best_e, ids)
                 for kind in DECODERS}  # (B, T) each
    nxt_true, nxt_rec = next_tokens(target, batch), next_tokens(target, rec_ids)
    seconds = (time.perf_counter() - t0) / B
    for b in range(B):
        L = int(lengths[b])
        topk_ids = final[b, :L].tolist()
        if notes[b]:
            print(f"lmrep: prompt {lm.decode(batch[b])!r}: {notes[b]}", file=sys.stderr)
        yield record(
            target, cfg, batch[b], rec_ids[b],
            output_distance=best_l1[b].item(), threshold=m[b].item(), within_threshold=bool(best_l1[b] < m[b]),
            first_within_step=first_within[b], token_output_distance=tok_dist[b].item(),
            tokens_within_threshold=bool(tok_dist[b] < m[b]), next_token_match=nxt_true[b] == nxt_rec[b],
            next_token=lm.decode([nxt_true[b]]), recovered_next_token=lm.decode([nxt_rec[b]]),
            embedding_cosine=cos[b, :L].mean().item(), final_loss=best[b].item(), steps=n, seconds=seconds,
            topk_texts=[lm.decode([row[j] for row in topk_ids]) for j in range(cfg.topk)] if cfg.topk > 1 else None,
            true_in_topk=sum(int(t in row) for t, row in zip(batch[b], topk_ids)) / L,
            true_rank={kind: r[b, :L].tolist() for kind, r in ranks.items()},
            snapshots=snaps_by_prompt[b], loss_curve=curves[b], stopped=notes[b])
