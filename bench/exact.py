"""Exact inversion at its default settings against SipIt's per-position search, measured in one run.

For each model and layer: English prompts of 8-32 tokens (lmrep/data/prompts.txt) and prompts of random token ids,
inverted by ``lmrep`` (``--method exact`` with no other option: it searches until a candidate verifies) and, on a
subset, by SipIt (bench/sipit.py). Per (model, layer, method, prompt kind): token accuracy, exact-match rate, mean
and max candidates verified per token, forward-pass equivalents per token ((seconds per token) / (seconds of one
forward pass of the whole prompt at that depth), both timed in this run), seconds per prompt, and setup seconds
(calibration or tables, once per model and layer: what the first prompt waited, kept apart from its seconds), and of
it what came before the first token (a first run's calibration is fitted as the search goes). Then, per layer,
SipIt's seconds per prompt over lmrep's on the same prompts.

Goals: 100% of tokens everywhere; <= 3 candidates per token; <= 2 forward-pass equivalents per token (reading the
prompt is 1); >= 100x faster than SipIt at every layer.

    python bench/exact.py --quick        # 3 English + 1 random prompt, two layers per model
    python bench/exact.py                # SmolLM2 {1, 8, 15, 30}, untrained GPT-2 {1, 6, 12}, 20 + 5 prompts
    python bench/exact.py --device cuda  # the same on a GPU (candidate batches sized for it)

Other methods (``--methods``): ``table`` (exact with ``--ranking table``), ``brute`` (exact with ``--ranking
vocab``), ``guided``, ``probe``, ``fused`` (exact with that ranking, to compare rankings), ``gd``, ``nearest``.
``--first-run`` starts the calibrations, probes and tables empty, so that setup is a first run's. Per-prompt
records go to runs/bench-exact-<hash>/records.jsonl, the table to summary.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from sipit import sipit  # bench/sipit.py: the script's folder is on the path

from lmrep import InvertConfig, layer_model, load_model
from lmrep.inversion import METHODS, score
from lmrep.inversion.base import layer_outputs
from lmrep.records.folder import RunDir

PROMPTS = Path(__file__).resolve().parent.parent / "lmrep" / "data" / "prompts.txt"
MODELS = {"smollm2-135m": (False, (1, 8, 15, 30)), "gpt2": (True, (1, 6, 12)), "gemma3-270m": (False, (1, 9, 18))}
QUICK_LAYERS = {"smollm2-135m": (1, 15), "gpt2": (1, 12), "gemma3-270m": (1, 18)}
CONFIGS = {"exact": dict(method="exact"), "table": dict(method="exact", ranking="table"),
           "brute": dict(method="exact", ranking="vocab"), "guided": dict(method="exact", ranking="guided"),
           "probe": dict(method="exact", ranking="probe"), "fused": dict(method="exact", ranking="fused"),
           "gd": dict(method="gd", lr=0.01, decoder="pinv"),
           "nearest": dict(method="nearest", lr=0.1, decoder="cosine")}
DROP = ("certificate", "loss_curve", "snapshots", "topk_texts", "true_rank")


def prompt_sets(lm, n_english: int, n_random: int, seed: int = 0,
                longest: int | None = None) -> list[tuple[str, list[int]]]:
    """(kind, ids) pairs: English lines of the prompts file of 8-32 tokens, then random ids of 8-24 tokens (both
    8-``longest`` when given)."""
    lines = [line.strip() for line in PROMPTS.read_text().splitlines() if line.strip()]
    english = [ids for ids in map(lm.encode, lines) if 8 <= len(ids) <= (longest or 32)]
    out = [("english", ids) for ids in english[:n_english]]
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_random):
        T = int(torch.randint(8, (longest or 24) + 1, (1,), generator=g))
        out.append(("random", torch.randint(0, lm.vocab_size, (T,), generator=g).tolist()))
    return out


@torch.no_grad()
def forward_seconds(O, ids: list[int], repeats: int = 3) -> float:
    """Median time of one forward pass of the whole prompt through the truncated model."""
    e = O.lm.embed(torch.tensor([ids], device=O.lm.device))
    O(e)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        O(e)
        if e.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def scan_seconds(lm, repeats: int = 5) -> float:
    """Median time of one scan of the vocabulary: every row's distance to a point, then the nearest 64 (what a
    ranking that scores every token does at least once per position)."""
    W = lm.embedding_matrix.detach()
    sqnorm = lm.memo("sqnorm", lambda: (W * W).sum(-1))  # the search's own, computed once per model
    x = torch.randn(W.shape[1], device=W.device, dtype=W.dtype)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        (sqnorm - 2 * (W @ x)).topk(64, largest=False)
        if W.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def run_method(O, label: str, prompts, steps: int, sipit_steps: int, keep=lambda rec: None) -> list[dict]:
    """Invert every prompt alone (so seconds are per prompt; setup waited for is kept apart); ``keep`` gets each
    record as soon as its prompt is done (so a layer stopped part way leaves the prompts it finished)."""
    recs = []
    for kind, ids in prompts:
        t, cpu = time.perf_counter(), time.process_time()
        if label == "sipit":
            rec = sipit(O, ids, sipit_steps)
        else:
            cfg = InvertConfig(steps=steps, **CONFIGS[label])
            (rec,) = [score(O, r, ids) for r in METHODS[cfg.method](O, layer_outputs(O, [ids]), cfg, False, [ids])]
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        per_position = [c["candidates"] for c in rec.get("certificate", ())]
        rec = {k: v for k, v in rec.items() if k not in DROP}
        setup = float(rec.get("setup_seconds") or 0.0)
        # the search's own seconds (not the record's extras, such as the full model's next token), less setup;
        # CPU seconds of the whole call (this process, setup included): what a shared machine does not inflate
        rec.update(kind=kind, wall_seconds=float(rec.get("seconds", wall)) - setup, setup_paid=setup,
                   first_wait=float(rec.get("setup_before_first_token") or 0.0), cpu_seconds=cpu,
                   candidates=per_position)
        keep(rec)
        recs.append(rec)
    return recs


def forget_refinements(lm) -> None:
    """Drop the probes held in memory (what a search refines them with stays in its process): each method starts
    from the fit on disk, not from a probe that has learnt these very prompts under another method."""
    for key in [k for k in lm._memo if isinstance(k, tuple) and k[0] == "exact-probe"]:
        del lm._memo[key]


def first_run_cache() -> Path:
    """A cache folder in which everything lmrep derives from weights (calibrations, probes, tables) starts empty
    and the converted weights are the user's, linked: setup is what a first run on a machine pays."""
    from lmrep.models.load import cache_dir
    user, fresh = cache_dir(), Path(tempfile.mkdtemp(prefix="lmrep-first-run-"))
    for entry in user.iterdir() if user.is_dir() else ():
        if entry.name not in ("exact", "tables") and not entry.name.startswith("."):
            (fresh / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    os.environ["LMREP_CACHE"] = str(fresh)
    return fresh


def summarize(recs: list[dict], fwd: dict) -> dict:
    """One table row from a group's records."""
    mean = lambda key: sum(float(r[key]) for r in recs) / len(recs)  # noqa: E731
    tokens = sum(r["n_tokens"] for r in recs)
    row = dict(prompts=len(recs), tokens=tokens, token_accuracy=mean("token_accuracy"),
               exact_match=mean("exact_match"), seconds_per_prompt=mean("wall_seconds"),
               setup_seconds=sum(r["setup_paid"] for r in recs), first_wait=max(r["first_wait"] for r in recs),
               forward_equivalents_per_token=statistics.mean(
                   r["wall_seconds"] / r["n_tokens"] / fwd[tuple(r["target_ids"])] for r in recs))
    row.update(cpu_seconds_per_prompt=mean("cpu_seconds"))
    if "candidates_per_token" in recs[0]:
        row.update(candidates_per_token=sum(r["candidates_per_token"] * r["n_tokens"] for r in recs) / tokens,
                   candidates_median=statistics.median(c for r in recs for c in r["candidates"]),
                   candidates_max=max(r["candidates_max"] for r in recs), verified=mean("verified"))
    return row


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 English + 1 random prompt, two layers per model")
    ap.add_argument("--english", type=int, default=20, help="English prompts of 8-32 tokens (from the prompts file)")
    ap.add_argument("--random", type=int, default=5, help="prompts of random token ids")
    ap.add_argument("--methods", default="exact,sipit", help=f"any of {', '.join(CONFIGS)}, sipit")
    ap.add_argument("--sipit-english", type=int, default=2, help="English prompts SipIt runs on (the first ones)")
    ap.add_argument("--sipit-random", type=int, default=1, help="random-id prompts SipIt runs on")
    ap.add_argument("--sipit-steps", type=int, default=300, help="SipIt's cap on candidates per position")
    ap.add_argument("--steps", type=int, default=200, help="optimisation steps for gd and nearest")
    ap.add_argument("--models", default="smollm2-135m,gpt2", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--layers", help="only these layers (comma-separated), where a model has them")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--out", help="run folder (default runs/bench-exact-<config hash>)")
    ap.add_argument("--max-tokens", type=int, help="prompts of 8 to this many tokens (default: English 8-32, "
                    "random 8-24)")
    ap.add_argument("--first-run", action="store_true", help="calibrations, probes and tables start empty (in a "
                    "temporary cache folder): setup is a first run's")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.first_run:
        print(f"derived caches start empty in {first_run_cache()}")
    if args.quick:
        args.english, args.random = min(args.english, 3), min(args.random, 1)
    torch.manual_seed(0)
    methods = args.methods.split(",")
    run = RunDir.create("bench-exact", dict(vars(args)), args.out)
    (run / "records.jsonl").unlink(missing_ok=True)  # a rerun measures afresh
    rows = []
    for name in args.models.split(","):
        untrained, layers = MODELS[name]
        lm = load_model(name, untrained=untrained, device=args.device)
        prompts = prompt_sets(lm, args.english, args.random, longest=args.max_tokens)
        layers = QUICK_LAYERS[name] if args.quick else layers
        if args.layers:
            layers = tuple(int(x) for x in args.layers.split(",") if int(x) <= lm.n_layers)
        english, rand = [p for p in prompts if p[0] == "english"], [p for p in prompts if p[0] == "random"]
        subset = english[: args.sipit_english] + rand[: args.sipit_random]
        for layer in layers:
            O, done = layer_model(lm, layer), {}
            fwd = {tuple(ids): forward_seconds(O, ids) for _, ids in prompts}
            scan, one = scan_seconds(lm), statistics.median(fwd.values())
            print(f"{name} L{layer}: one scan of the vocabulary ({lm.vocab_size:,} rows) takes {scan * 1e3:.1f} ms, "
                  f"{scan / one:.1f} forward passes of a prompt here ({one * 1e3:.1f} ms): a ranking that scores "
                  "every token costs at least that per token", flush=True)
            for label in methods:
                forget_refinements(lm)
                recs = run_method(O, label, subset if label == "sipit" else prompts, args.steps, args.sipit_steps,
                                  keep=lambda r: run.append_jsonl("records.jsonl",
                                                                  dict(r, label=label, model=name, layer=layer)))
                done[label] = recs
                for kind in ("english", "random", "all"):
                    sel = [r for r in recs if kind in ("all", r["kind"])]
                    if sel:
                        rows.append(dict(model=name, trained=not untrained, layer=layer, method=label, kind=kind,
                                         scan_forward_equivalents=scan / one, **summarize(sel, fwd)))
                        print_row(rows[-1])
                if label == "sipit" and "exact" in done:  # the same prompts, side by side
                    same = {tuple(r["target_ids"]) for r in recs}
                    mine = [r for r in done["exact"] if tuple(r["target_ids"]) in same]
                    rows.append(dict(model=name, trained=not untrained, layer=layer, method="exact",
                                     kind="sipit-subset", **summarize(mine, fwd)))
                    print_row(rows[-1])
    run.write_json("summary.json", rows)
    print_goals(rows)
    print(f"records and summary: {run.path}")


def print_row(r: dict) -> None:
    cand = f"{r['candidates_per_token']:8.2f} {r['candidates_median']:5.0f} {r['candidates_max']:6d}" \
        if "candidates_per_token" in r else " " * 21
    print(f"{r['model']:13s} L{r['layer']:<3d} {r['method']:7s} {r['kind']:12s} n={r['prompts']:<3d} "
          f"acc {r['token_accuracy']:.3f} exact {r['exact_match']:.2f} cand/tok mean,median,max {cand} "
          f"{r['forward_equivalents_per_token']:8.1f} fwd-eq/tok {r['seconds_per_prompt']:8.2f} s/prompt "
          f"{r['cpu_seconds_per_prompt']:8.2f} cpu-s/prompt setup {r['setup_seconds']:.1f} s "
          f"(before the first token {r['first_wait']:.1f} s)", flush=True)


def print_goals(rows: list[dict]) -> None:
    """The goals per layer, and SipIt's time over lmrep's on the same prompts."""
    print("\ngoals: token accuracy 1.0, <= 3 candidates/token, <= 2 fwd-eq/token, >= 100x SipIt's time")
    for r in rows:
        if r["method"] == "exact" and r["kind"] == "all":
            ok = (r["token_accuracy"] == 1.0, r["candidates_per_token"] <= 3, r["forward_equivalents_per_token"] <= 2)
            print(f"  {r['model']:13s} L{r['layer']:<3d} accuracy {'met' if ok[0] else 'MISSED'}, "
                  f"candidates {'met' if ok[1] else 'MISSED'}, cost {'met' if ok[2] else 'MISSED'}")
    for s in (r for r in rows if r["method"] == "sipit" and r["kind"] == "all"):
        for e in (r for r in rows if r["method"] == "exact" and r["kind"] == "sipit-subset"
                  and r["model"] == s["model"] and r["layer"] == s["layer"]):
            print(f"  SipIt vs lmrep, {s['model']} L{s['layer']} ({s['prompts']} prompts): accuracy "
                  f"{s['token_accuracy']:.3f} vs {e['token_accuracy']:.3f}, candidates/token "
                  f"{s['candidates_per_token']:.1f} vs {e['candidates_per_token']:.1f}, s/prompt "
                  f"{s['seconds_per_prompt']:.2f} vs {e['seconds_per_prompt']:.2f}: lmrep "
                  f"{s['seconds_per_prompt'] / e['seconds_per_prompt']:.1f}x faster")


if __name__ == "__main__":
    main()
