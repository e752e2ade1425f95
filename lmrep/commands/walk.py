"""`lmrep walk`: move a prompt's embedding while a layer's output stays put, and measure how far it got."""
from __future__ import annotations

import argparse
import sys

from ..decode import DECODERS
from ..errors import LmrepError
from ..runs import RunDir, dumps
from ..walk import CONVENTIONS, METHODS, WalkConfig, make_target, walk
from ..walk_plots import walk_figure
from .common import (add_layer_args, add_model_args, model_from_args, nonneg_int, positive_float, positive_int,
                     read_prompts)

# what --json leaves out of each record (kept in the run folder's metrics.jsonl)
BULKY = ("trajectory", "diagnostics", "snapshots")


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be 0 or a positive finite number")
    return v


def register(sub) -> None:
    p = sub.add_parser("walk", help="walk the input while a layer's output stays put (manifold walks)")
    p.add_argument("text", nargs="*", help="prompts to walk from")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    add_model_args(p)
    add_layer_args(p, default_layer="12")
    p.add_argument("--toy", choices=["mlp"], help="walk on the page's MLP mimic (d -> 4d -> d) over the model's "
                                                 "embeddings instead of a layer")
    d = WalkConfig()
    g = p.add_argument_group("walk")
    g.add_argument("--method", default=d.method, choices=METHODS,
                   help="tangent: the page's SVD walk; jacobian: least-gain directions of dO/de + re-projection; "
                        "clamped: noise on one side of a random split, descent on the other")
    g.add_argument("--steps", type=nonneg_int, default=d.steps, help="moves (tangent, jacobian) or rounds (clamped)")
    g.add_argument("--inner-steps", type=nonneg_int, default=None,
                   help="clamped: gradient steps per round (1); jacobian/tangent: re-projection steps per move "
                        "(1 / 0)")
    g.add_argument("--step-size", type=positive_float, default=d.step_size,
                   help="tangent/jacobian: each move is step-size * sqrt(tokens) long (the page's 0.01)")
    g.add_argument("--convention", default=d.convention, choices=CONVENTIONS,
                   help="clamped: scripts (U(0, noise) on dims >= i, descent on dims < i) or text (N(0, noise) on "
                        "dims < i, descent on dims >= i)")
    g.add_argument("--noise", type=_nonneg_float, default=d.noise, help="clamped: noise scale per round")
    g.add_argument("--lr", type=positive_float, default=d.lr, help="clamped: plain gradient step size")
    g.add_argument("--directions", type=positive_int, default=d.directions, help="jacobian: directions per block")
    g.add_argument("--krylov", type=positive_int, default=d.krylov, help="jacobian: Krylov blocks per move")
    g.add_argument("--decoder", default=d.decoder, choices=DECODERS)
    g.add_argument("--topk", type=positive_int, default=d.topk, help="decoded alternatives per snapshot")
    g.add_argument("--snapshots", type=int, nargs="*", default=[], help="steps at which to decode")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    s = p.add_argument_group("sweep (the walks experiment)")
    s.add_argument("--sweep", action="store_true",
                   help="run the walks experiment instead: inner steps 1/10/50 on untrained GPT-2, the MLP mimic "
                        "and the trained default model; TEXT (optional) replaces its prompts")
    s.add_argument("--quick", action="store_true", help="with --sweep: the few-minute profile")
    s.add_argument("--sweep-seeds", type=positive_int, default=None, help="with --sweep: seeds (3 full, 1 quick)")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default runs/walk-<config hash>)")
    o.add_argument("--json", action="store_true", help="print one JSON object per walk (JSON Lines)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.sweep:
        return run_sweep(args)
    prompts = read_prompts(args.text, args.prompts_file)
    cfg = WalkConfig(method=args.method, steps=args.steps, inner_steps=args.inner_steps, step_size=args.step_size,
                     convention=args.convention, noise=args.noise, lr=args.lr, directions=args.directions,
                     krylov=args.krylov, decoder=args.decoder, topk=args.topk, snapshots=tuple(args.snapshots),
                     batch_size=args.batch_size, seed=args.seed).check()
    if args.toy and args.head != "none":
        raise LmrepError("--head applies to a layer of the model, not to --toy mlp: leave --head out")
    lm = model_from_args(args)
    target = make_target(lm, args.layer, args.head, toy=args.toy, seed=args.seed)
    cfg.check(lm.vocab_size)
    for p in prompts:
        lm.encode(p)  # every prompt is checked before any work starts
    config = dict(model=lm.name, trained=lm.trained, untrained=args.untrained, target=target.name,
                  layer=args.layer, head=args.head, toy=args.toy, dtype=args.dtype, prompts=prompts, **cfg.to_dict())
    run_dir = RunDir.create("walk", config, args.out)
    run_dir.reset("metrics.jsonl")
    records, tensors = [], {}
    try:
        for i, res in enumerate(walk(target, prompts, cfg, progress=True)):
            rec = dict(index=i, **res.record)
            records.append(rec)
            tensors[f"{i}.start"], tensors[f"{i}.end"] = res.start, res.end
            run_dir.append_jsonl("metrics.jsonl", rec)
            if args.json:
                print(dumps({k: v for k, v in rec.items() if k not in BULKY}), flush=True)
    finally:
        if records:
            finish(run_dir, records, tensors)
    if args.json:
        print(f"run folder: {run_dir.path}", file=sys.stderr)
    else:
        print_walks(records, run_dir)
    return 0


def finish(run_dir: RunDir, records: list[dict], tensors: dict) -> None:
    """Start and end embeddings (safetensors, keys '<index>.start' / '<index>.end'), summary and figure."""
    from ..experiments.items import mean_sem
    run_dir.save_tensors("embeddings.safetensors", tensors)
    run_dir.write_json("summary.json", dict(
        walks=len(records), **{k: mean_sem(r[k] for r in records)
                               for k in ("r", "r_random", "r_over_random", "input_distance", "output_distance")}))
    r0 = records[0]
    walk_figure(records, run_dir / "walk.png", f"{r0['model']} {r0['target']}: {r0['method']} walk")


def print_walks(records: list[dict], run_dir: RunDir) -> None:
    r0 = records[0]
    print(f"\n{r0['model']} ({'trained' if r0['trained'] else 'untrained'}), {r0['target']}, {r0['method']} walk, "
          f"{r0['steps']} steps x {r0['inner_steps']} inner")
    for r in records:
        print(f"\n  prompt   {r['prompt']!r}  (seed {r['seed']})")
        for s in r["snapshots"]:
            print(f"  step {s['step']:>4}  {s['text']!r}  ({s['changed']} token(s) changed)")
        for j, text in enumerate(r["snapshots"][-1]["topk_texts"][1:] if r["snapshots"] else []):
            print(f"  top-{j + 2:<3}   {text!r}")
        print(f"  input moved {_num(r['input_distance'])} (L1), output moved {_num(r['output_distance'])} (L1): "
              f"r = {_num(r['r'])}; a random move of the same size: r = {_num(r['r_random'])}")
    print(f"\nrun folder: {run_dir.path}  (config.json, metrics.jsonl, summary.json, embeddings.safetensors, "
          "walk.png)")


def run_sweep(args) -> int:
    from ..experiments import walks
    prompts = read_prompts(args.text, args.prompts_file) if (args.text or args.prompts_file) else []
    config = dict(experiment="walks", quick=args.quick, seeds=args.sweep_seeds or 0, prompts=prompts)
    run_dir = RunDir.create("walk-sweep", config, args.out)
    walks.run(run_dir, args.quick, args.sweep_seeds or 0, prompts, progress=True)
    walks.report(run_dir)
    print(f"report: {run_dir / 'report.md'}")
    return 0


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"
