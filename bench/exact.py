"""Exact inversion vs gradient descent vs nearest-token projection vs brute force, measured in one run.

For each model and layer: English prompts (lmrep/data/prompts.txt) and prompts of random token ids, inverted by
gd, nearest and exact. Reported per (model, layer, method): token accuracy, exact-match rate, mean and max
candidates verified per token (exact), seconds per prompt, and the cost in forward-pass equivalents per token:
(seconds per token) / (seconds of one forward pass of the whole prompt at that depth), both timed in this run.
Brute force (every vocabulary entry in order, batched, with the same prefix cache) runs on a small subset and
gives the ratio to beat. Goals: exact 100% of tokens at every layer; <= 3 candidates per token; <= 20 forward-pass
equivalents per token. Calibration and tables (once per model and layer) are timed apart, as setup. Exact methods
search until a candidate verifies (their --max-candidates is the whole vocabulary), so a hard position costs time,
not accuracy.

    python bench/exact.py --quick        # a few prompts, layer 1 and one deep layer of each model
    python bench/exact.py                # the full run: SmolLM2 {1, 8, 15, 30}, untrained GPT-2 {1, 6, 12}

Methods: ``gd``, ``nearest``, ``exact`` (the default guided ranking) and ``table`` (exact, ranked by every token's
output after random prefixes: a one-off table per model and layer, timed apart like the calibration and shown as
``setup`` in forward-pass equivalents of the run's mean prompt).

Per-prompt records go to runs/bench-exact-<hash>/records.jsonl, the table to summary.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lmrep import InvertConfig, layer_model, load_model
from lmrep.inversion import METHODS, score
from lmrep.inversion.base import layer_outputs
from lmrep.inversion.exact.rank import calibrate
from lmrep.inversion.exact.table import TABLE_CONTEXTS, vocab_table
from lmrep.runs import RunDir

PROMPTS = Path(__file__).resolve().parent.parent / "lmrep" / "data" / "prompts.txt"
MODELS = {"smollm2-135m": (False, (1, 8, 15, 30)), "gpt2": (True, (1, 6, 12)), "gemma3-270m": (False, (1, 9, 18))}
QUICK_LAYERS = {"smollm2-135m": (1, 15), "gpt2": (1, 12), "gemma3-270m": (1, 18)}
CONFIGS = {"gd": dict(method="gd", lr=0.01, decoder="pinv"),
           "nearest": dict(method="nearest", lr=0.1, decoder="cosine"),
           "exact": dict(method="exact"),
           "table": dict(method="exact", ranking="table")}
DROP = ("certificate", "loss_curve", "snapshots", "topk_texts", "true_rank")


def prompt_sets(lm, n_english: int, n_random: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """(kind, ids) pairs: English lines of the prompts file, then random ids of 8-24 tokens."""
    lines = [line.strip() for line in PROMPTS.read_text().splitlines() if line.strip()]
    out = [("english", lm.encode(line)) for line in lines[:n_english]]
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_random):
        T = int(torch.randint(8, 25, (1,), generator=g))
        out.append(("random", torch.randint(0, lm.vocab_size, (T,), generator=g).tolist()))
    return out


@torch.no_grad()
def forward_seconds(O, ids: list[int], repeats: int = 3) -> float:
    """Median time of one forward pass of the whole prompt through the truncated model."""
    e = O.lm.embed(torch.tensor([ids]))
    O(e)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        O(e)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_method(O, method: str, prompts, cfg: InvertConfig, fwd: dict) -> list[dict]:
    """Invert every prompt alone (so seconds are per prompt) and add the cost in forward-pass equivalents."""
    recs = []
    for kind, ids in prompts:
        t = time.perf_counter()
        (rec,) = [score(O, r, ids) for r in METHODS[method](O, layer_outputs(O, [ids]), cfg, False, [ids])]
        seconds = time.perf_counter() - t
        rec = {k: v for k, v in rec.items() if k not in DROP}
        rec.update(kind=kind, wall_seconds=seconds, forward_seconds=fwd[tuple(ids)],
                   forward_equivalents_per_token=seconds / len(ids) / fwd[tuple(ids)])
        recs.append(rec)
    return recs


def setup_seconds(O, methods: list[str]) -> dict[str, float]:
    """Build what exact rankings need once per model and layer (so no prompt's time includes it); its seconds."""
    out = {}
    if "exact" in methods:
        out["exact"] = calibrate(O).seconds
    if "table" in methods:
        out["table"] = calibrate(O).seconds + vocab_table(O).seconds + vocab_table(O, TABLE_CONTEXTS).seconds
    return out


def summarize(recs: list[dict]) -> dict:
    """One table row from a group's records."""
    mean = lambda key: sum(float(r[key]) for r in recs) / len(recs)  # noqa: E731
    row = dict(prompts=len(recs), token_accuracy=mean("token_accuracy"), exact_match=mean("exact_match"),
               seconds_per_prompt=mean("wall_seconds"),
               forward_equivalents_per_token=mean("forward_equivalents_per_token"))
    if "candidates_per_token" in recs[0]:
        tokens = sum(r["n_tokens"] for r in recs)
        row.update(candidates_per_token=sum(r["candidates_per_token"] * r["n_tokens"] for r in recs) / tokens,
                   candidates_max=max(r["candidates_max"] for r in recs), verified=mean("verified"),
                   token_accuracy_with_ties=mean("token_accuracy_with_ties"))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 English + 1 random prompt, two layers per model")
    ap.add_argument("--english", type=int, default=28, help="English prompts (from the prompts file)")
    ap.add_argument("--random", type=int, default=5, help="prompts of random token ids")
    ap.add_argument("--steps", type=int, default=200, help="optimisation steps for gd and nearest")
    ap.add_argument("--methods", default="gd,nearest,exact,table", help=f"any of {', '.join(CONFIGS)}")
    ap.add_argument("--brute", type=int, default=1, help="prompts brute-forced per model (at its first layer)")
    ap.add_argument("--models", default="smollm2-135m,gpt2", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--layers", help="only these layers (comma-separated), where a model has them")
    ap.add_argument("--out", help="run folder (default runs/bench-exact-<config hash>)")
    args = ap.parse_args()
    if args.quick:
        args.english, args.random, args.steps = min(args.english, 3), min(args.random, 1), min(args.steps, 60)
    torch.manual_seed(0)
    methods = args.methods.split(",")
    run = RunDir.create("bench-exact", dict(vars(args)), args.out)
    run.reset("records.jsonl")
    rows = []
    for name in args.models.split(","):
        untrained, layers = MODELS[name]
        lm = load_model(name, untrained=untrained)
        prompts = prompt_sets(lm, args.english, args.random)
        layers = QUICK_LAYERS[name] if args.quick else layers
        if args.layers:
            layers = tuple(int(x) for x in args.layers.split(",") if int(x) <= lm.n_layers)
        for layer in layers:
            O = layer_model(lm, layer)
            fwd = {tuple(ids): forward_seconds(O, ids) for _, ids in prompts}
            setup = setup_seconds(O, methods)
            cap = dict(max_candidates=lm.vocab_size)  # search until verified: the ranking only orders the vocabulary
            groups = [(m, InvertConfig(steps=args.steps, **CONFIGS[m], **(cap if m in ("exact", "table") else {})),
                       prompts) for m in methods]
            if layer == layers[0] and args.brute:
                groups.append(("brute", InvertConfig(method="exact", ranking="vocab", candidate_batch=1024,
                                                     max_candidates=lm.vocab_size), prompts[: args.brute]))
            for label, cfg, ps in groups:
                recs = run_method(O, cfg.method, ps, cfg, fwd)
                for r in recs:
                    run.append_jsonl("records.jsonl", dict(r, label=label))
                for kind in ("english", "random", "all"):
                    sel = [r for r in recs if kind in ("all", r["kind"])]
                    if sel:
                        rows.append(dict(model=name, trained=not untrained, layer=layer, method=label, kind=kind,
                                         setup_seconds=setup.get(label), **summarize(sel)))
                        if setup.get(label) is not None:
                            fwd_mean = statistics.mean(fwd[tuple(r["target_ids"])] for r in sel)
                            rows[-1]["setup_forward_equivalents"] = setup[label] / fwd_mean
                        print_row(rows[-1])
    run.write_json("summary.json", rows)
    print_ratios(rows)
    print(f"records and summary: {run.path}")


def print_row(r: dict) -> None:
    cand = f"{r['candidates_per_token']:8.2f} {r['candidates_max']:6d}" if "candidates_per_token" in r else " " * 15
    print(f"{r['model']:13s} L{r['layer']:<3d} {r['method']:8s} {r['kind']:8s} n={r['prompts']:<3d} "
          f"acc {r['token_accuracy']:.3f} exact {r['exact_match']:.2f} cand/tok,max {cand} "
          f"{r['seconds_per_prompt']:8.2f} s/prompt {r['forward_equivalents_per_token']:8.1f} fwd-eq/token"
          + (f"  setup {r['setup_seconds']:.0f} s = {r['setup_forward_equivalents']:.0f} fwd-eq"
             if r.get("setup_seconds") is not None else ""), flush=True)


def print_ratios(rows: list[dict]) -> None:
    """Exact vs brute force on the brute-forced prompts' layer, and the goals per layer."""
    print("\ngoals: exact token accuracy 1.0, <= 3 candidates/token, <= 20 forward-pass equivalents/token")
    for r in rows:
        if r["method"] in ("exact", "table") and r["kind"] == "all":
            ok = (r["token_accuracy"] == 1.0, r["candidates_per_token"] <= 3, r["forward_equivalents_per_token"] <= 20)
            print(f"  {r['model']:13s} L{r['layer']:<3d} {r['method']:6s} accuracy {'met' if ok[0] else 'MISSED'}, "
                  f"candidates {'met' if ok[1] else 'MISSED'}, cost {'met' if ok[2] else 'MISSED'}")
    for b in (r for r in rows if r["method"] == "brute" and r["kind"] == "all"):
        for e in (r for r in rows if r["method"] in ("exact", "table") and r["kind"] == "all"
                  and r["model"] == b["model"] and r["layer"] == b["layer"]):
            print(f"  brute force {b['model']} L{b['layer']}: {b['candidates_per_token']:.0f} candidates/token, "
                  f"{b['forward_equivalents_per_token']:.1f} fwd-eq/token; {e['method']} uses "
                  f"{b['candidates_per_token'] / e['candidates_per_token']:.0f}x fewer candidates, "
                  f"{b['forward_equivalents_per_token'] / e['forward_equivalents_per_token']:.1f}x less time "
                  "(brute force on its subset, exact on all prompts)")

if __name__ == "__main__":
    main()
