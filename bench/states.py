"""Observed precision, measured: capture states of a layer in float32 / bfloat16 / float16, invert them with the
exact method from the states alone, and find their layer with --layer auto. Prints one JSON line per (layer, dtype)
and a markdown table at the end.

    python bench/states.py [--model smollm2-135m] [--layers 1 8 15 30] [--prompts 4] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from lmrep import InvertConfig, layer_model, load_model
from lmrep.inversion import invert_outputs, score
from lmrep.inversion.locate import locate
from lmrep.inversion.states import STORE_DTYPES, capture

PROMPTS = ["The sky is blue.", "Paris is the capital of France.", "A cat sat on the warm mat today.",
           "Rain fell softly over the quiet town."]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--untrained", action="store_true")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 8, 15, 30])
    ap.add_argument("--dtypes", nargs="+", default=list(STORE_DTYPES))
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(args.model, untrained=args.untrained)
    prompts = PROMPTS[: args.prompts]
    ids = [lm.encode(p) for p in prompts]
    cfg = InvertConfig(method="exact")
    rows = []
    for layer in args.layers:
        O = layer_model(lm, layer)
        for name in args.dtypes:
            states = capture(O, ids, STORE_DTYPES[name])
            t0 = time.perf_counter()
            recs = [score(O, r, x) for r, x in zip(invert_outputs(O, states, cfg), ids)]
            seconds = (time.perf_counter() - t0) / len(recs)
            found = 0
            for h in states:
                try:
                    found += locate(lm, h[0]).target.spec.depth == layer
                except Exception:  # "no layer matches" counts as not found
                    pass
            positions = sum(r["n_tokens"] for r in recs)
            row = dict(layer=layer, dtype=name, prompts=len(recs), positions=positions,
                       token_accuracy=sum(r["token_accuracy"] * r["n_tokens"] for r in recs) / positions,
                       verified=sum(sum(c["verified"] for c in r["certificate"]) for r in recs) / positions,
                       unique=sum(sum(c["unique"] for c in r["certificate"]) for r in recs) / positions,
                       false_certificates=sum(c["verified"] and c["token"] != t for r, x in zip(recs, ids)
                                              for c, t in zip(r["certificate"], x)),
                       candidates_per_token=sum(r["candidates_per_token"] * r["n_tokens"] for r in recs) / positions,
                       seconds_per_prompt=seconds, auto_found=found / len(recs),
                       tolerance=max(r["tolerance"] for r in recs))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| layer | states | token acc. | verified | uniquely verified | false cert. | candidates/token | s/prompt "
          "| auto |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layer']} | {r['dtype']} | {r['token_accuracy']:.3f} | {r['verified']:.3f} | {r['unique']:.3f} | "
              f"{r['false_certificates']} | {r['candidates_per_token']:.1f} | {r['seconds_per_prompt']:.1f} | "
              f"{r['auto_found'] * r['prompts']:.0f}/{r['prompts']} |")


if __name__ == "__main__":
    main()
