"""`lmrep invert`: read a layer's output for each prompt (or observed states from a file) and get the input back."""
from __future__ import annotations

import sys

from ..errors import LmrepError
from ..inversion.config import InvertConfig
from ..records.folder import RunDir, dumps
from ..records.health import counts_text
from ..records.inputs import check_states_file
from ..records.stats import fmt, num
from .args import (add_config, add_layer_args, add_model_args, add_output_args, add_prompt_args, config_from,
                   model_from_args, read_prompts)

BULKY = ("loss_curve", "snapshots")  # what --json drops from each record (kept in the run folder's files instead)


def register(sub) -> None:
    p = sub.add_parser("invert")
    add_prompt_args(p, "invert")
    s = p.add_argument_group("observed states (instead of prompts)")
    s.add_argument("--states", metavar="FILE", help="invert the tensors of a states file (lmrep capture's "
                                                    "safetensors, any safetensors or .npy of (T, D) / (N, T, D); "
                                                    "default: none, invert prompts)")
    s.add_argument("--key", action="append", metavar="K", help="only the tensor under key K (repeatable; default: "
                                                               "all, in key order)")
    add_model_args(p)
    add_layer_args(p, auto=True)
    add_config(p, InvertConfig, group="method")
    add_output_args(p, "invert")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.states:
        if args.text or args.prompts_file:
            raise LmrepError("give prompts or --states FILE, not both")
        check_states_file(args.states)  # a missing or empty file: one line before torch loads
    else:
        if args.layer == "auto":
            raise LmrepError("--layer auto finds the layer of observed states: use it with --states FILE")
        if args.key:
            raise LmrepError("--key picks tensors of a states file: use it with --states FILE")
        prompts = read_prompts(args.text, args.prompts_file)
    cfg = config_from(InvertConfig, args)
    from ..inversion.runs import invert_prompts, invert_states  # here, after the checks that need no torch
    if args.states:
        done = invert_states(args.states, args.key, lambda: model_from_args(args), cfg, args.layer, args.head,
                             seed=args.seed, out=args.out, new=args.new, on_record=_show(args))
    else:
        done = invert_prompts(model_from_args(args), prompts, cfg, args.layer, args.head, out=args.out, new=args.new,
                              on_record=_show(args))
    _finish(args, *done)
    return 0


def _show(args):
    return (lambda rec: print(dumps({k: v for k, v in rec.items() if k not in BULKY}), flush=True)) \
        if args.json else None


def _finish(args, records: list[dict], layer_name: str, run_dir: RunDir) -> None:
    if not args.json:
        print_table(records, layer_name, run_dir)
    else:
        print(f"run folder: {run_dir.path}", file=sys.stderr)


def print_table(records: list[dict], layer_name: str, run_dir: RunDir) -> None:
    r0 = records[0]
    print(f"\n{r0['model']} ({'trained' if r0['trained'] else 'untrained'}), {layer_name}, method {r0['method']}")
    for r in records:
        if "prompt" in r:
            print(f"\n  prompt     {r['prompt']!r}" + (f"  (states key {r['key']})" if "key" in r else ""))
        else:
            print(f"\n  states key {r['key']} ({r['n_tokens']} positions; the file has no ids to score against)")
        for s in r.get("snapshots") or []:
            acc = f"  (acc {s['token_accuracy']:.2f})" if "token_accuracy" in s else ""
            print(f"  step {s['step']:>5}  {s['text']!r}{acc}")
        within = {True: "yes", False: "no", None: "-"}[r.get("within_threshold")]
        kept = {True: "yes", False: "no", None: "-"}[r.get("next_token_match")]
        health = f"  (best step {r['best_step']}, run {r['health']})" if r.get("health") else ""
        print(f"  recovered  {r['recovered_text']!r}{health}")
        if "verified" in r:
            print(f"  verified   {'yes' if r['verified'] else 'NO'}: max residual {r['max_residual']:.2e} "
                  f"(tolerance {r['tolerance']:.2e}{', ' + r['observed_dtype'] if 'observed_dtype' in r else ''}), "
                  f"unique at {r['uniquely_verified']:.0%} of positions, {r['candidates_per_token']:.1f} "
                  f"candidates/token (max {r['candidates_max']}), {r['seconds']:.1f} s")
        eq4 = (f"m_g {num(r['output_distance'])} < m {num(r['threshold'])}: {within}  "
               if r.get("threshold") is not None else "")  # eq. 4 is a gradient method's measure
        if "token_accuracy" in r:
            print(f"  token acc {r['token_accuracy']:.2f}  exact {'yes' if r['exact_match'] else 'no'}  {eq4}"
                  f"next token kept: {kept}")
        for j, text in enumerate(r.get("topk_texts") or []):
            print(f"  top-{j + 1:<3}    {text!r}")
    from ..inversion.base import summarize
    s = summarize(records)
    print(f"\n{len(records)} {'prompt' if 'prompt' in r0 else 'tensor'}(s): token accuracy "
          f"{fmt(s.get('token_accuracy'), 3)}, exact {fmt(s.get('exact_match'))} (runs: {counts_text(s['health'])};"
          " diverged runs are left out of the rates)")
    print(f"run folder: {run_dir.path}  ({', '.join(run_dir.files())})")
