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
    lines = [s.strip() for s in EVAL.read_text().splitlines() if s.strip() and not s.startswith("#")]
    ids = lm.encode(" ".join(lines))
    while len(ids) < T:
        ids = ids + ids
    return ids[:T]


def one(model: str, untrained: bool, layer: int, kind: str, T: int, seed: int) -> dict:
    """One row, in this process: the prompt inverted by the exact method with its defaults."""
    import torch
    from exact import forward_seconds, run_method  # bench/exact.py: the script's folder is on the path

    from lmrep import layer_model, load_model
    lm = load_model(model, untrained=untrained)
    O = layer_model(lm, layer)
    if kind == "english":
        ids = english_ids(lm, T)
    else:
        ids = torch.randint(0, lm.vocab_size, (T,), generator=torch.Generator().manual_seed(seed)).tolist()
    # setup (calibration; on disk after a layer's first run) paid on the first 4 tokens, so the measured run is
    # the steady state; steps and sipit_steps are not used by the exact method
    (warm,) = run_method(O, "exact", [(kind, ids[:4])], steps=1, sipit_steps=1)
    (rec,) = run_method(O, "exact", [(kind, ids)], steps=1, sipit_steps=1)
    fwd = forward_seconds(O, ids)
    c = rec["candidates"]
    return dict(model=model, untrained=untrained, layer=layer, kind=kind, T=T, token_accuracy=rec["token_accuracy"],
                verified=rec["verified"], candidates_per_token=sum(c) / T, candidates_median=statistics.median(c),
                candidates_max=max(c), seconds_per_token=rec["wall_seconds"] / T,
                cpu_seconds_per_token=rec["cpu_seconds"] / T, forward_seconds=fwd,
                forward_equivalents_per_token=rec["wall_seconds"] / T / fwd, setup_seconds=warm["setup_paid"],
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def row(args, layer: int, kind: str, T: int) -> dict:
    """One row in a child process, or what stopped it."""
    cmd = [sys.executable, __file__, "--one", args.model, str(int(args.untrained)), str(layer), kind, str(T),
           str(args.seed)]
    base = dict(model=args.model, layer=layer, kind=kind, T=T)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
    except subprocess.TimeoutExpired:
        return dict(base, status=f"did not finish in {args.budget:g} s")
    if done.returncode:
        return dict(base, status="failed: " + (done.stderr.strip().splitlines() or ["?"])[-1])
    return dict(base, status="ok", **json.loads(done.stdout.strip().splitlines()[-1]))


def draw(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ok = [r for r in rows if r["status"] == "ok"]
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
    ap.add_argument("--seed", type=int, default=0, help="of the random ids")
    ap.add_argument("--budget", type=float, default=1800, help="seconds a row may take before it is stopped")
    ap.add_argument("--out", default="runs/bench-growth.jsonl", help="one JSON line per row (appended)")
    ap.add_argument("--figure", help="a PNG of the three measures against T")
    ap.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        model, untrained, layer, kind, T, seed = args.one
        print(json.dumps(one(model, untrained == "1", int(layer), kind, int(T), int(seed))))
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    rows = []
    print("layer | kind | T | tokens right | candidates / token (mean, median, max) | s / token (CPU) | "
          "fwd-eq / token | setup s | peak MB")
    for layer in args.layers:
        for kind in args.kinds:
            for T in args.lengths:
                r = row(args, layer, kind, T)
                rows.append(r)
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
                if r["status"] != "ok":
                    print(f"{layer} | {kind} | {T} | {r['status']}", flush=True)
                    continue
                print(f"{layer} | {kind} | {T} | {r['token_accuracy']:.3f} | {r['candidates_per_token']:.2f}, "
                      f"{r['candidates_median']:g}, {r['candidates_max']} | {r['seconds_per_token']:.3f} "
                      f"({r['cpu_seconds_per_token']:.3f}) | {r['forward_equivalents_per_token']:.2f} | "
                      f"{r['setup_seconds']:.1f} | {r['peak_rss_mb']:.0f}", flush=True)
    if args.figure:
        draw(rows, args.figure)


if __name__ == "__main__":
    main()
