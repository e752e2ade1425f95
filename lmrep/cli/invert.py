"""`lmrep invert`: read a layer's output for each prompt and try to get the prompt back."""
from __future__ import annotations

import sys

from ..inversion import InvertConfig, summarize
from ..inversion.base import config_dict
from ..inversion.report import run as run_prompts
from ..layers import layer_model
from ..runs import RunDir, dumps
from ..stats import fmt, num
from .args import (add_config, add_layer_args, add_model_args, add_output_args, add_prompt_args, config_from,
                   model_from_args, read_prompts)

BULKY = ("loss_curve", "snapshots")  # what --json drops from each record (kept in the run folder's files instead)


def register(sub) -> None:
    p = sub.add_parser("invert", help="recover prompts from a layer's output")
    add_prompt_args(p, "invert")
    add_model_args(p)
    add_layer_args(p)
    add_config(p, InvertConfig, group="method")
    add_output_args(p, "invert")
    p.set_defaults(run=run)


def run(args) -> int:
    prompts = read_prompts(args.text, args.prompts_file)
    cfg = config_from(InvertConfig, args).check()
    lm = model_from_args(args)
    target = layer_model(lm, args.layer, args.head)
    cfg.check(lm.vocab_size)
    for p in prompts:
        lm.encode(p)  # every prompt is checked before any work starts
    run_dir = RunDir.create("invert", dict(config_dict(cfg, target), prompts=prompts), args.out, new=args.new)
    show = (lambda rec: print(dumps({k: v for k, v in rec.items() if k not in BULKY}), flush=True)) \
        if args.json else None
    records = run_prompts(run_dir, target, prompts, cfg, progress=True, on_record=show)
    if not args.json:
        print_table(records, target.name, run_dir)
    else:
        print(f"run folder: {run_dir.path}", file=sys.stderr)
    return 0


def print_table(records: list[dict], layer_name: str, run_dir: RunDir) -> None:
    r0 = records[0]
    print(f"\n{r0['model']} ({'trained' if r0['trained'] else 'untrained'}), {layer_name}, method {r0['method']}")
    for r in records:
        print(f"\n  prompt     {r['prompt']!r}")
        for s in r.get("snapshots") or []:
            print(f"  step {s['step']:>5}  {s['text']!r}  (acc {s['token_accuracy']:.2f})")
        within = {True: "yes", False: "no", None: "-"}[r.get("within_threshold")]
        kept = {True: "yes", False: "no", None: "-"}[r.get("next_token_match")]
        print(f"  recovered  {r['recovered_text']!r}")
        if "verified" in r:
            print(f"  verified   {'yes' if r['verified'] else 'NO'}: max residual {r['max_residual']:.2e} "
                  f"(tolerance {r['tolerance']:.2e}), {r['candidates_per_token']:.1f} candidates/token "
                  f"(max {r['candidates_max']}), {r['seconds']:.1f} s")
        eq4 = (f"m_g {num(r['output_distance'])} < m {num(r['threshold'])}: {within}  "
               if r.get("threshold") is not None else "")  # eq. 4 is a gradient method's measure
        print(f"  token acc {r['token_accuracy']:.2f}  exact {'yes' if r['exact_match'] else 'no'}  {eq4}"
              f"next token kept: {kept}")
        for j, text in enumerate(r.get("topk_texts") or []):
            print(f"  top-{j + 1:<3}    {text!r}")
    s = summarize(records)
    print(f"\n{len(records)} prompt(s): token accuracy {fmt(s.get('token_accuracy'), 3)}, "
          f"exact {fmt(s.get('exact_match'))}")
    print(f"run folder: {run_dir.path}  ({', '.join(run_dir.files())})")
