"""Running walks: batches of (prompt, seed) items, each step a move of its method, with the trajectory of input
and output distances, decoded snapshots and the random-move baseline recorded per walk."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

from ..objective.batching import pad, prompt_generator
from ..objective.decode import Decoder
from ..objective.targets import depth_of
from .config import WalkConfig
from .core import WalkState, l1, l2, ratio
from .registry import move


@dataclass
class WalkResult:
    """One walk: a JSON-ready record and its start and end embeddings (T, d), real positions only."""
    record: dict
    start: torch.Tensor
    end: torch.Tensor


def walk(target, prompts: list[str], cfg: WalkConfig, seeds: tuple[int, ...] | None = None,
         progress: bool = False) -> Iterator[WalkResult]:
    """Walk from each prompt under each seed (default: cfg.seed); yields one WalkResult per (prompt, seed)."""
    items = [(target.lm.encode(p), s) for s in (seeds if seeds is not None else (cfg.seed,)) for p in prompts]
    yield from walk_items(target, items, cfg, progress)


def walk_items(target, items: list[tuple[list[int], int]], cfg: WalkConfig,
               progress: bool = False) -> Iterator[WalkResult]:
    """Walk from each (token ids, seed) item, cfg.batch_size at a time; yields one WalkResult per item, in order."""
    cfg.check(target.lm.vocab_size)
    decoder = Decoder(target.lm, cfg.decoder)
    for i in range(0, len(items), cfg.batch_size):
        yield from _walk_batch(target, items[i:i + cfg.batch_size], cfg, decoder, progress)


def _walk_batch(target, items: list[tuple[list[int], int]], cfg: WalkConfig, decoder: Decoder,
                progress: bool) -> Iterator[WalkResult]:
    lm, t0 = target.lm, time.perf_counter()
    ids, mask = pad([x for x, _ in items], device=lm.device)  # (B, T)
    e0 = lm.embed(ids).detach().clone()  # (B, T, d)
    with torch.no_grad():
        out0 = target(e0, mask)  # (B, T, D)
    state = WalkState(target, cfg, e0.clone(), e0, out0, mask,
                      [prompt_generator(s, x, lm.device) for x, s in items])
    take, B, snaps = move(cfg.method), len(items), set(cfg.snapshot_steps())
    traj = [[dict(step=0, input_l1=0.0, output_l1=0.0, r=None, input_l2=0.0, output_l2=0.0)] for _ in range(B)]
    diags, shots = [[] for _ in range(B)], [[] for _ in range(B)]
    bar = tqdm(total=cfg.steps, disable=not progress, desc=f"{cfg.method} walk {target.name}", unit="step",
               file=sys.stderr, leave=False)
    alive, first_change = torch.ones(B, dtype=torch.bool, device=e0.device), [None] * B
    try:
        _snapshot(state, decoder, items, shots, 0)  # always: the reference for 'changed'
        start = decoder(e0) if cfg.until_change else None  # (B, T)
        for n in range(1, cfg.steps + 1):
            held, now = state.e, alive.tolist()
            for b, d in enumerate(take(state, n)):
                if now[b]:
                    diags[b].append(dict(step=n, **d))
            if not all(now):  # a stopped walk stays where it changed
                state.e = torch.where(alive[:, None, None], state.e, held)
            with torch.no_grad():
                out = state.output(state.e)
            d_in, d_out = l1(state.e - e0, mask), l1(out - out0, mask)
            e_in, e_out = l2(state.e - e0, mask), l2(out - out0, mask)  # the same in L2, for cross-checks
            r = ratio(e0, state.e, out0, out, mask)
            for b in (b for b in range(B) if now[b]):
                traj[b].append(dict(step=n, input_l1=d_in[b].item(), output_l1=d_out[b].item(), r=r[b].item(),
                                    input_l2=e_in[b].item(), output_l2=e_out[b].item()))
            changed = _stop_changed(decoder, state, start, alive, first_change, n) if cfg.until_change else set()
            shoot = [b for b in range(B) if now[b] and (n in snaps or b in changed)]  # scheduled, and each change
            if shoot:
                _snapshot(state, decoder, items, shots, n, shoot)
            bar.update(1)
            bar.set_postfix(r=f"{r.nanmean().item():.3g}")
            if not alive.any():
                break
    finally:
        bar.close()
    r_random, out_norm = _random_ratio(state, l1(state.e - e0, mask)), l1(out0, mask)
    seconds = (time.perf_counter() - t0) / B
    for b, (x, seed) in enumerate(items):
        L, last = len(x), traj[b][-1]
        rec = dict(model=lm.name, trained=lm.trained, target=target.name, layer=depth_of(target), **cfg.to_dict())
        rec.update(seed=seed, prompt=lm.decode(x), ids=x, n_tokens=L, input_distance=last["input_l1"],
                   output_distance=last["output_l1"], r=last["r"],
                   output_relative=last["output_l1"] / out_norm[b].item() if out_norm[b] > 0 else None,
                   r_random=r_random[b].item(),
                   r_over_random=last["r"] / r_random[b].item() if last["r"] and r_random[b] > 0 else None,
                   final_text=shots[b][-1]["text"] if shots[b] else None, steps_walked=last["step"],
                   first_change=first_change[b], trajectory=traj[b],
                   diagnostics=diags[b], snapshots=shots[b], seconds=seconds)
        yield WalkResult(rec, e0[b, :L].detach().clone(), state.e[b, :L].detach().clone())


def _stop_changed(decoder: Decoder, state: WalkState, start: torch.Tensor, alive: torch.Tensor,
                  first_change: list, n: int) -> set[int]:
    """The walks still going whose decode now differs from their start's (``start``: (B, T)) at a real position:
    marked stopped in ``alive``, their step n recorded in ``first_change``; returns them."""
    diff = ((decoder(state.e) != start) & state.mask.bool()).any(1) & alive  # (B,)
    changed = set(diff.nonzero().flatten().tolist())
    for b in changed:
        first_change[b] = n
    alive &= ~diff
    return changed


def _snapshot(state: WalkState, decoder: Decoder, items: list[tuple[list[int], int]], shots: list[list[dict]],
              n: int, which: list[int] | None = None) -> None:
    """Decode the walks ``which`` (default: all) at step n. ``changed``: positions that decode differently from the
    start's decode (the decoder may miss a token even at its exact embedding, e.g. pinv; ``start_misses`` counts
    those, against the true ids)."""
    lm, k = state.target.lm, state.cfg.topk
    top = decoder.topk(state.e, k)  # (B, T, k)
    for b, (x, _) in enumerate(items):
        if which is not None and b not in which:
            continue
        rows = top[b, : len(x)].tolist()
        first = [row[0] for row in rows]
        ref = shots[b][0]["ids"] if shots[b] else first
        shots[b].append(dict(step=n, text=lm.decode(first), ids=first,
                             changed=sum(int(a != c) for a, c in zip(first, ref)),
                             start_misses=sum(int(a != c) for a, c in zip(ref, x)),
                             topk_texts=[lm.decode([row[j] for row in rows]) for j in range(k)]))


@torch.no_grad()
def _random_ratio(state: WalkState, size: torch.Tensor) -> torch.Tensor:
    """r of a random Gaussian displacement with the walk's own L1 size, (B,): the baseline a walk must beat
    (r alone depends on the model's scale: a net that shrinks everything gives r > 1 in every direction)."""
    noise = state.draw()  # (B, T, d)
    scale = (size / l1(noise, state.mask).clamp_min(1e-300)).to(state.e.dtype)
    e = state.e0 + noise * scale[:, None, None]
    return ratio(state.e0, e, state.out0, state.output(e), state.mask)


@torch.no_grad()
def ratio_between(target, start: torch.Tensor, end: torch.Tensor) -> float:
    """r recomputed from saved embeddings: start, end (T, d) -> ||start - end||_1 / ||O(start) - O(end)||_1."""
    mask = torch.ones(1, start.shape[0], dtype=torch.long, device=start.device)
    e0, e = start[None], end[None]
    return ratio(e0, e, target(e0, mask), target(e, mask), mask).item()

