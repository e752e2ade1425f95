"""Throughput of the gradient-descent inversion loop, as ratios measured in one run.

1. Our loop (lmrep.inversion.gd, one prompt) vs a bare hand-written forward + backward + Adam loop on the same
   truncated model: steps per second of each. Goal: ours >= 0.95 of the bare loop. The loop is timed alone (the
   optimiser steps with what it tracks, and the N + 1-th loss), apart from what a call does once (eq. 4's
   threshold, decoding, ranks, next tokens), which the whole call's line adds.
2. Batched (B prompts in one padded batch) vs one prompt at a time, whole calls: prompt-steps per second. Goal:
   >= 6x at B = 8. The bare loop batched the same way (padded, the loss masked) says what batching can give on
   this machine at all: one prompt's step reads every weight for a few rows (memory-bound), a batch's step
   multiplies them by B times as many (compute-bound), so on a CPU the gain stops where its arithmetic does.

Every round runs each side once, the sides interleaved and their order reversed from round to round, so a machine
shared with other work (or whose clock drifts) disturbs the ratios less; each ratio is printed as the median of
--repeats rounds with its range.

    python bench/invert.py [--model gpt2 --untrained] [--layers 1 6 12] [--steps 100] [--batch 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from tqdm.auto import tqdm

from lmrep import InvertConfig, invert, layer_model, load_model
from lmrep.inversion.gd import _Batch
from lmrep.objective.decode import Decoder

PROMPTS = ["The sky is blue.", "This is a prompt sentence.", "Paris is the capital of France.",
           "A cat sat on the warm mat today.", "Rain fell softly over the quiet town.",
           "She opened the old wooden door slowly.", "Numbers can be added and multiplied.",
           "The river runs down to the sea."]


def bare_loop(O, lm, batch: list[list[int]], steps: int) -> float:
    """The smallest honest loop: Adam on the embeddings of a right-padded batch, L1 to the targets on the real
    positions, nothing else (the padding mask goes to the model only where lengths differ, as in ours). Returns
    seconds."""
    T = max(len(ids) for ids in batch)
    x = torch.tensor([ids + [0] * (T - len(ids)) for ids in batch])  # (B, T)
    mask = torch.tensor([[1] * len(ids) + [0] * (T - len(ids)) for ids in batch])  # (B, T)
    run_mask = None if mask.all() else mask
    weights = mask[..., None].float()
    with torch.no_grad():
        target = O(lm.embed(x), run_mask)
    e = (0.5 + torch.randn(len(batch), T, lm.d_model) / 20).requires_grad_(True)
    opt = torch.optim.Adam([e], lr=0.01)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        ((O(e, run_mask) - target).abs() * weights).sum().backward()
        opt.step()
    return time.perf_counter() - t


def ours_loop(O, lm, ids: list[int], steps: int) -> float:
    """Our loop alone on one prompt: the optimiser steps of an invert() call, without its once-per-call work (the
    decoding at the last step included). Returns seconds."""
    cfg = InvertConfig(steps=steps)
    with torch.no_grad():
        out = O(lm.embed(torch.tensor([ids])))[0]
    run = _Batch(O, Decoder(lm, cfg.decoder), [out], cfg, lambda e: e, [ids])
    run._snapshot = lambda n: None
    t = time.perf_counter()
    run.descend(tqdm(disable=True))
    return time.perf_counter() - t


def ours(O, prompts: list[str], steps: int, batch: int) -> float:
    """One whole invert() call: setup, the loop and the records. Returns seconds."""
    cfg = InvertConfig(steps=steps, batch_size=batch, snapshots=(steps,))
    t = time.perf_counter()
    for _ in invert(O, prompts, cfg, progress=False):
        pass
    return time.perf_counter() - t


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f} over {len(values)} rounds)"


def rounds(repeats: int, *runs) -> list[list[float]]:
    """Each callable's time in each of ``repeats`` rounds; a round runs every callable once, in the opposite order
    to the round before (so neither side always runs first on a machine whose speed drifts)."""
    times = [[] for _ in runs]
    for r in range(repeats):
        order = list(range(len(runs)))
        for i in order if r % 2 == 0 else order[::-1]:
            times[i].append(runs[i]())
    return times


def bench_layer(lm, layer: str, prompts: list[str], steps: int, batch: int, repeats: int) -> None:
    O = layer_model(lm, layer)
    ours(O, prompts[:1], 5, 1)  # warm-up: pinv, allocator
    ids = [lm.encode(p) for p in prompts]
    bare, loop, whole = rounds(repeats, lambda: bare_loop(O, lm, ids[:1], steps),
                               lambda: ours_loop(O, lm, ids[0], steps), lambda: ours(O, prompts[:1], steps, 1))
    one, many, bare_one, bare_many = rounds(repeats, lambda: sum(ours(O, [p], steps, 1) for p in prompts),
                                            lambda: ours(O, prompts, steps, batch),
                                            lambda: sum(bare_loop(O, lm, [x], steps) for x in ids),
                                            lambda: bare_loop(O, lm, ids, steps))
    gains, bare_gains = [a / b for a, b in zip(one, many)], [a / b for a, b in zip(bare_one, bare_many)]
    print(f"{lm.name} {O.name}, {len(ids[0])} tokens (batch: {len(prompts)} prompts of {min(map(len, ids))}-"
          f"{max(map(len, ids))}), {steps} steps, {torch.get_num_threads()} thread(s)")
    print(f"  lmrep gd loop / bare loop            {spread([b / o for b, o in zip(bare, loop)])}   goal >= 0.95 "
          "(ours also keeps the best result, the loss curve and eq. 4's crossing)")
    print(f"  whole call / bare loop               {spread([b / w for b, w in zip(bare, whole)])}   once per call: "
          f"{statistics.median(w - o for w, o in zip(whole, loop)):.2f} s (threshold, decoding, ranks under 3 "
          "decoders, next tokens)")
    print(f"  lmrep batched B={batch} / one at a time  {spread(gains)}   goal >= 6x")
    print(f"  bare batched B={batch} / one at a time   {spread(bare_gains)}   what batching gives on this machine")
    print(f"  lmrep's batching gain / the bare loop's   {spread([g / b for g, b in zip(gains, bare_gains)])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--layers", nargs="+", default=["1"])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model, untrained=args.untrained)
    prompts = (PROMPTS * ((args.batch + len(PROMPTS) - 1) // len(PROMPTS)))[: args.batch]
    for layer in args.layers:
        bench_layer(lm, layer, prompts, args.steps, args.batch, args.repeats)


if __name__ == "__main__":
    main()
