"""`lmrep invert`: read a layer's output for each prompt and try to get the prompt back."""
from __future__ import annotations

import sys

from ..decode import DECODERS
from ..invert import FIRST_TOKEN, INITS, METHODS, OPTIMIZERS, RANKINGS, InvertConfig, config_dict, invert, load_methods, summarize
from ..layers import layer_model
from ..losses import LOSSES
from ..plots import loss_curves
from ..runs import RunDir, dumps
from .common import (add_layer_args, add_model_args, model_from_args, positive_float, positive_int, read_prompts)

# what --json drops from each record (kept in the run folder's files instead)
BULKY = ("loss_curve", "snapshots")


def register(sub) -> None:
    load_methods()
    p = sub.add_parser("invert", help="recover prompts from a layer's output")
    p.add_argument("text", nargs="*", help="prompts to invert")
    p.add_argument("--prompts-file", help="a text file with one prompt per line")
    add_model_args(p)
    add_layer_args(p)
    d = InvertConfig()
    g = p.add_argument_group("method")
    g.add_argument("--method", default=d.method, choices=sorted(METHODS))
    g.add_argument("--steps", type=positive_int, default=d.steps)
    g.add_argument("--lr", type=positive_float, default=d.lr, help="eta, falling linearly to eta/10")
    g.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS, help="sgd: the seed's plain steps")
    g.add_argument("--init", default=d.init, choices=INITS,
                   help="text: N(0.5, 1/20); original: N(0, 1); mix: s*noise + t*e (see --mix)")
    g.add_argument("--mix", type=float, nargs=2, default=list(d.mix), metavar=("S", "T"))
    g.add_argument("--loss", default=d.loss, choices=LOSSES)
    g.add_argument("--decoder", default=d.decoder, choices=DECODERS)
    g.add_argument("--topk", type=positive_int, default=d.topk)
    g.add_argument("--sigma", type=positive_float, default=d.sigma, help="eq. 4: e' = e + N(0, sigma)")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    g.add_argument("--snapshots", type=int, nargs="*", default=[], help="steps at which to decode")
    x = p.add_argument_group("exact method (docs/exact.md)")
    x.add_argument("--ranking", default=d.ranking, choices=RANKINGS,
                   help="which candidates to verify first: guided (model's expectation + refined guess), table "
                        "(every token's output at the layer, built once per layer and cached), secant, vocab "
                        "(brute force in vocabulary order)")
    x.add_argument("--tolerance", type=positive_float, default=None,
                   help="largest relative residual counted as a match (default: from dtype and depth)")
    x.add_argument("--candidate-batch", type=positive_int, default=d.candidate_batch)
    x.add_argument("--max-candidates", type=positive_int, default=d.max_candidates,
                   help="candidates verified at one position before it is reported unverified")
    x.add_argument("--first-token", default=d.first_token, choices=FIRST_TOKEN,
                   help="table: every token's output at position 0, computed once per layer")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="run folder (default runs/invert-<config hash>)")
    o.add_argument("--json", action="store_true", help="print one JSON object per prompt (JSON Lines)")
    p.set_defaults(run=run)


def run(args) -> int:
    prompts = read_prompts(args.text, args.prompts_file)
    cfg = InvertConfig(method=args.method, steps=args.steps, lr=args.lr, optimizer=args.optimizer, init=args.init,
                       mix=tuple(args.mix), loss=args.loss, decoder=args.decoder, topk=args.topk, sigma=args.sigma,
                       batch_size=args.batch_size, snapshots=tuple(args.snapshots), seed=args.seed,
                       ranking=args.ranking, tolerance=args.tolerance, candidate_batch=args.candidate_batch,
                       max_candidates=args.max_candidates, first_token=args.first_token)
    cfg.check()
    lm = model_from_args(args)
    target = layer_model(lm, args.layer, args.head)
    cfg.check(lm.vocab_size)
    for p in prompts:
        lm.encode(p)  # every prompt is checked before any work starts
    run_dir = RunDir.create("invert", dict(config_dict(cfg, target), prompts=prompts), args.out)
    run_dir.reset("metrics.jsonl")
    run_dir.reset("snapshots.jsonl")
    records = []
    try:
        for rec in invert(target, prompts, cfg, progress=True):
            records.append(rec)
            run_dir.append_jsonl("metrics.jsonl", {k: v for k, v in rec.items() if k != "snapshots"})
            run_dir.append_jsonl("snapshots.jsonl", dict(prompt=rec["prompt"], snapshots=rec.get("snapshots")))
            if args.json:
                print(dumps({k: v for k, v in rec.items() if k not in BULKY}), flush=True)
    finally:
        if records:
            finish(run_dir, records, target.name)
    if not args.json:
        print_table(records, target.name, run_dir)
    else:
        print(f"run folder: {run_dir.path}", file=sys.stderr)
    return 0


def finish(run_dir: RunDir, records: list[dict], layer_name: str) -> None:
    run_dir.write_json("summary.json", summarize(records))
    curves = {r["prompt"]: r["loss_curve"] for r in records if r.get("loss_curve")}
    if curves:
        loss_curves(curves, run_dir / "loss.png", title=f"{records[0]['model']} {layer_name}: output distance",
                    ylabel="distance to the target output (dashed: eq. 4's m)",
                    thresholds={r["prompt"]: r.get("threshold") for r in records})


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
        print(f"  token acc {r['token_accuracy']:.2f}  exact {'yes' if r['exact_match'] else 'no'}  "
              f"m_g {_num(r.get('output_distance'))} < m {_num(r.get('threshold'))}: {within}  "
              f"next token kept: {kept}")
        for j, text in enumerate(r.get("topk_texts") or []):
            print(f"  top-{j + 1:<3}    {text!r}")
    s = summarize(records)
    acc, ex = s["token_accuracy"], s["exact_match"]
    print(f"\n{len(records)} prompt(s): token accuracy {acc['mean']:.3f} ± {acc['sem']:.3f}, "
          f"exact {ex['mean']:.2f} ± {ex['sem']:.2f}")
    print(f"run folder: {run_dir.path}  (config.json, metrics.jsonl, snapshots.jsonl, summary.json, loss.png)")


def _num(x) -> str:
    return "-" if x is None else f"{x:.4g}"
