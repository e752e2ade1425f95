"""How exact inversion's cost grows with the prompt's length: seconds, candidates and forward-pass equivalents per
token, and peak memory, for T = 8 ... 512 tokens at chosen layers (default: SmolLM2-135M, layers 1, 15 and 30).

Each (layer, kind, T) runs in a child process of its own, so that its peak memory (the child's maximum resident
set) is its own and a row that runs past ``--budget`` seconds is stopped and reported as "did not finish". English:
the evaluation set's public-domain sentences (lmrep/data/eval.txt) joined into one text, its first T tokens (joined
again while it is shorter); random: T token ids drawn under ``--seed``. The search runs with its defaults. Setup
(the calibration, kept on disk after a layer's first run) is paid on the prompt's first 4 tokens and reported apart;
forward-pass equivalents per token are the search's seconds per token over one forward pass of the whole prompt
to that layer, timed in the same child. A cached search should grow about as T (a constant per token) where a
search that reruns the prefix for each candidate grows as T^2.

    python bench/growth.py                                       # SmolLM2 1/15/30, T = 8, 32, 128, 512, both kinds
    python bench/growth.py --layers 1 --lengths 8 64 --kinds english --figure growth.png
    python bench/growth.py --model gpt2 --untrained --layers 1 6 12 --lengths 8 20 128 --methods exact sipit \\
        --first-run --budget 600                                 # side by side with SipIt, setup included
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

EVAL = Path(__file__).resolve().parent.parent / "lmrep" / "data" / "eval.txt"


def english_ids(lm, T: int) -> list[int]:
    from lmrep.experiments.config import read_prompt_file
    ids = lm.encode(" ".join(read_prompt_file(EVAL)))
    while len(ids) < T:
        ids = ids + ids
    return ids[:T]


def one(model: str, untrained: bool, layer: int, kind: str, T: int, seed: int, method: str, first_run: bool,
        sipit_steps: int) -> dict:
    """One row, in this process: the prompt inverted by the exact method with its defaults, or by SipIt."""
    import torch
    from exact import first_run_cache, forward_seconds, run_method  # bench/exact.py: on the path with this script

    from lmrep import layer_model, load_model
    if first_run:
        first_run_cache()  # calibrations and probes start empty: setup is what a first run pays
    lm = load_model(model, untrained=untrained)
    O = layer_model(lm, layer)
    if kind == "english":
        ids = english_ids(lm, T)
    else:
        ids = torch.randint(0, lm.vocab_size, (T,), generator=torch.Generator().manual_seed(seed)).tolist()
    setup = 0.0
    if method == "exact" and not first_run:
        # setup (the calibration; on disk after a layer's first run) paid on the first 4 tokens, so that the
        # measured run is the steady state; steps and sipit_steps are not used by the exact method
        setup = run_method(O, "exact", [(kind, ids[:4])], steps=1, sipit_steps=1)[0]["setup_paid"]
    (rec,) = run_method(O, method, [(kind, ids)], steps=1, sipit_steps=sipit_steps)
    setup = setup or float(rec.get("setup_paid", 0.0))
    fwd = forward_seconds(O, ids)
    c = rec["candidates"] or [rec["candidates_per_token"]]  # SipIt keeps no certificate: its mean alone
    return dict(model=model, untrained=untrained, layer=layer, kind=kind, T=T, method=method, first_run=first_run,
                token_accuracy=rec["token_accuracy"], verified=rec["verified"],
                candidates_per_token=rec["candidates_per_token"], candidates_median=statistics.median(c),
                candidates_max=rec["candidates_max"], seconds=rec["wall_seconds"],
                seconds_per_token=rec["wall_seconds"] / T, cpu_seconds_per_token=rec["cpu_seconds"] / T,
                forward_seconds=fwd, forward_equivalents_per_token=rec["wall_seconds"] / T / fwd,
                setup_seconds=setup, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def row(args, layer: int, kind: str, T: int, method: str) -> dict:
    """One row in a child process, or what stopped it."""
    cmd = [sys.executable, __file__, "--one", args.model, str(int(args.untrained)), str(layer), kind, str(T),
           str(args.seed), method, str(int(args.first_run)), str(args.sipit_steps)]
    base = dict(model=args.model, layer=layer, kind=kind, T=T, method=method)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
    except subprocess.TimeoutExpired:
        return dict(base, status=f"did not finish in {args.budget:g} s")
    if done.returncode:
        return dict(base, status="failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return dict(base, status="ok", **json.loads(done.stdout.strip().splitlines()[-1]))


def ratio(rows: list[dict], layer: int, kind: str, T: int, budget: float) -> str:
    """SipIt's seconds over lmrep's (setup included) on the same prompt, or a lower bound where SipIt was stopped."""
    got = {r["method"]: r for r in rows if (r["layer"], r["kind"], r["T"]) == (layer, kind, T)}
    ours, theirs = got.get("exact"), got.get("sipit")
    if not ours or not theirs or ours["status"] != "ok":
        return ""
    total = ours["seconds"] + ours["setup_seconds"]
    if theirs["status"] == "ok":
        return f"SipIt / lmrep = {theirs['seconds'] / total:.1f}x (ceiling 2T / candidates = " \
               f"{2 * T / ours['candidates_per_token']:.1f}x)"
    return f"SipIt did not finish in {budget:g} s: ratio > {budget / total:.1f}x"


def draw(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ok = [r for r in rows if r["status"] == "ok" and r["method"] == "exact"]
    for (layer, kind) in sorted({(r["layer"], r["kind"]) for r in ok}):
        line = sorted((r for r in ok if (r["layer"], r["kind"]) == (layer, kind)), key=lambda r: r["T"])
        style = "-" if kind == "english" else "--"
        for ax, key in zip(axes, ("cpu_seconds_per_token", "forward_equivalents_per_token", "peak_rss_mb")):
            ax.plot([r["T"] for r in line], [r[key] for r in line], style, marker="o",
                    label=f"layer {layer}, {kind}")
    for ax, title in zip(axes, ("CPU seconds per token", "forward-pass equivalents per token", "peak memory (MB)")):
        ax.set(xscale="log", yscale="log", xlabel="prompt length T (tokens)", title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--untrained", action="store_true", help="the architecture with weights drawn from its config")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 15, 30])
    ap.add_argument("--lengths", type=int, nargs="+", default=[8, 32, 128, 512])
    ap.add_argument("--kinds", nargs="+", default=["english", "random"], choices=["english", "random"])
    ap.add_argument("--seed", type=int, default=1, help="of the random ids (not 0: SipIt draws its starting rows "
                    "under 0, and the same draw would start it at the true token)")
    ap.add_argument("--budget", type=float, default=1800, help="seconds a row may take before it is stopped")
    ap.add_argument("--out", default="runs/bench-growth.jsonl", help="one JSON line per row (appended)")
    ap.add_argument("--figure", help="a PNG of the three measures against T")
    ap.add_argument("--methods", nargs="+", default=["exact"], choices=["exact", "sipit"],
                    help="sipit: SipIt's search as published (bench/sipit.py) on the same prompts, and the ratio")
    ap.add_argument("--sipit-steps", type=int, default=300, help="SipIt's cap on candidates per position")
    ap.add_argument("--first-run", action="store_true", help="calibrations and probes start empty (setup is a "
                    "first run's, counted in the ratio to SipIt)")
    ap.add_argument("--one", nargs=9, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        model, untrained, layer, kind, T, seed, method, first, steps = args.one
        print(json.dumps(one(model, untrained == "1", int(layer), kind, int(T), int(seed), method, first == "1",
                             int(steps))))
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    print("layer | kind | T | method | tokens right | candidates / token (mean, median, max) | s / token (CPU) | "
          "fwd-eq / token | setup s | peak MB")
    for layer in args.layers:
        for kind in args.kinds:
            for T in args.lengths:
                for method in args.methods:
                    r = row(args, layer, kind, T, method)
                    rows.append(r)
                    with open(args.out, "a") as f:
                        f.write(json.dumps(r) + "\n")
                    head = f"{layer} | {kind} | {T} | {method}"
                    if r["status"] != "ok":
                        print(f"{head} | {r['status']}", flush=True)
                        continue
                    print(f"{head} | {r['token_accuracy']:.3f} | {r['candidates_per_token']:.2f}, "
                          f"{r['candidates_median']:g}, {r['candidates_max']} | {r['seconds_per_token']:.3f} "
                          f"({r['cpu_seconds_per_token']:.3f}) | {r['forward_equivalents_per_token']:.2f} | "
                          f"{r['setup_seconds']:.1f} | {r['peak_rss_mb']:.0f}", flush=True)
                if len(args.methods) > 1:
                    print(f"{layer} | {kind} | {T} | {ratio(rows, layer, kind, T, args.budget)}", flush=True)
    if args.figure:
        draw(rows, args.figure)


if __name__ == "__main__":
    main()
