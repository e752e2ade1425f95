"""Throughput of the gradient-descent inversion loop, as ratios measured in one run.

1. Our loop (lmrep.inversion.gd, one prompt) vs a bare hand-written forward + backward + Adam loop on the same
   truncated model: steps per second of each. Goal: ours within 10% (ratio >= 0.9).
2. Batched (B prompts in one padded batch) vs one prompt at a time: prompt-steps per second. Goal: >= 4x at B = 8.

    python bench/invert.py [--model gpt2 --untrained] [--layer 1] [--steps 100] [--batch 8]
"""
from __future__ import annotations

import argparse
import time

import torch

from lmrep import InvertConfig, invert, layer_model, load_model

PROMPTS = ["The sky is blue.", "This is a prompt sentence.", "Paris is the capital of France.",
           "A cat sat on the warm mat today.", "Rain fell softly over the quiet town.",
           "She opened the old wooden door slowly.", "Numbers can be added and multiplied.",
           "The river runs down to the sea."]


def bare_loop(O, lm, ids: list[int], steps: int) -> float:
    """The smallest honest loop: Adam on the embedding, L1 to the target, nothing else. Returns seconds."""
    x = torch.tensor([ids])
    with torch.no_grad():
        target = O(lm.embed(x))
    e = (0.5 + torch.randn(1, len(ids), lm.d_model) / 20).requires_grad_(True)
    opt = torch.optim.Adam([e], lr=0.01)
    t = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        (O(e) - target).abs().sum().backward()
        opt.step()
    return time.perf_counter() - t


def ours(O, prompts: list[str], steps: int, batch: int) -> float:
    cfg = InvertConfig(steps=steps, batch_size=batch, snapshots=(steps,))
    t = time.perf_counter()
    for _ in invert(O, prompts, cfg, progress=False):
        pass
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--layer", default="1")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model, untrained=args.untrained)
    O = layer_model(lm, args.layer)
    prompts = (PROMPTS * ((args.batch + len(PROMPTS) - 1) // len(PROMPTS)))[: args.batch]
    ours(O, prompts[:1], 5, 1)  # warm-up: pinv, allocator
    ids = lm.encode(prompts[0])

    bare = bare_loop(O, lm, ids, args.steps)
    mine = ours(O, prompts[:1], args.steps, 1)
    print(f"{lm.name} {O.name}, {len(ids)} tokens, {args.steps} steps")
    print(f"  bare loop      {args.steps / bare:8.1f} steps/s")
    print(f"  lmrep gd       {args.steps / mine:8.1f} steps/s   ratio ours/bare = {bare / mine:.2f} (goal >= 0.90; "
          "ours also tracks the best result, eq. 4's threshold, snapshots and the final report)")

    one = sum(ours(O, [p], args.steps, 1) for p in prompts)
    many = ours(O, prompts, args.steps, args.batch)
    print(f"  one at a time  {len(prompts) * args.steps / one:8.1f} prompt-steps/s")
    print(f"  batched B={args.batch:<3} {len(prompts) * args.steps / many:8.1f} prompt-steps/s   "
          f"speed-up = {one / many:.2f}x (goal >= 4x)")


if __name__ == "__main__":
    main()
