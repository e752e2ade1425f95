"""`lmrep walk`: move a prompt's embedding while a layer's output stays put, and measure how far it got."""
from __future__ import annotations

import sys

from ..records.checks import at_least
from ..errors import LmrepError
from ..records.folder import RunDir, dumps
from ..records.stats import num
from ..walks.config import WalkConfig
from .args import (add_config, add_layer_args, add_model_args, add_output_args, add_prompt_args, config_from,
                   defaults_of, model_from_args, read_prompts, refuse_unused, value_type)

BULKY = ("trajectory", "diagnostics", "snapshots")  # what --json leaves out (kept in the run folder's items.jsonl)


def register(sub) -> None:
    p = sub.add_parser("walk")
    add_prompt_args(p, "walk from")
    add_model_args(p)
    add_layer_args(p, default_layer="12")
    p.add_argument("--toy", choices=["mlp"], help="walk on the page's MLP mimic (d -> 4d -> d) over the model's "
                                                 "embeddings instead of a layer (default: none, the layer)")
    add_config(p, WalkConfig, shown={"inner_steps": "1 for clamped and jacobian, 0 for tangent"})
    p.add_argument("--seeds", type=value_type(int, at_least(1, 1000)), default=None,
                   help="walks per prompt, under seeds --seed, --seed+1, ... (default: 1; with --sweep: 3, "
                        "--quick 1)")
    s = p.add_argument_group("sweep (the walks experiment)")
    s.add_argument("--sweep", action="store_true",
                   help="run the walks experiment instead (lmrep reproduce walks): inner steps 1/10/50 on untrained "
                        "GPT-2, the MLP mimic and the trained default model; TEXT (optional) replaces its prompts")
    s.add_argument("--quick", action="store_true", help="with --sweep: the few-minute profile")
    add_output_args(p, "walk")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.sweep:
        return run_sweep(args)
    refuse_unused(args, {"quick": "without --sweep"})
    prompts = read_prompts(args.text, args.prompts_file)
    cfg = config_from(WalkConfig, args).check()
    if args.toy and args.head != "none":
        raise LmrepError("--head applies to a layer of the model, not to --toy mlp: leave --head out")
    from ..walks.report import walk_prompts  # here, after the checks: reading the arguments needs no torch
    show = (lambda rec: print(dumps({k: v for k, v in rec.items() if k not in BULKY}), flush=True)) \
        if args.json else None
    records, run_dir = walk_prompts(model_from_args(args), prompts, cfg, args.layer, args.head, toy=args.toy,
                                    seed=args.seed, seeds=tuple(range(args.seed, args.seed + (args.seeds or 1))),
                                    untrained=args.untrained, dtype=args.dtype, out=args.out, new=args.new,
                                    on_record=show)
    if args.json:
        print(f"run folder: {run_dir.path}", file=sys.stderr)
    else:
        print_walks(records, run_dir)
    return 0


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
        if r.get("until_change"):
            print(f"  first token changed at step {r['first_change']}" if r["first_change"] is not None else
                  f"  no token changed within {r['steps']} steps")
        print(f"  input moved {num(r['input_distance'])} (L1), output moved {num(r['output_distance'])} (L1): "
              f"r = {num(r['r'])}; a random move of the same size: r = {num(r['r_random'])}")
    print(f"\nrun folder: {run_dir.path}  ({', '.join(run_dir.files())})")


SWEEP_KEEPS = {"text", "prompts_file", "quick", "seeds", "device", "out", "new", "sweep", "run", "_parser", "command"}


def run_sweep(args) -> int:
    """The walks experiment, exactly as ``lmrep reproduce walks`` runs it; the walk's own options do nothing
    there (the experiment sets its models and settings), so they are refused."""
    refuse_unused(args, {dest: "with --sweep (the walks experiment picks its own models and settings)"
                         for dest in defaults_of(args) if dest not in SWEEP_KEEPS})
    prompts = read_prompts(args.text, args.prompts_file) if (args.text or args.prompts_file) else []
    from ..experiments import ReproduceConfig, reproduce
    cfg = ReproduceConfig("walks", quick=args.quick, seeds=args.seeds or 0, prompts=tuple(prompts),
                          device=args.device)
    run_dir = reproduce(cfg, args.out, new=args.new)
    print(f"report: {run_dir / 'report.md'}")
    return 0
