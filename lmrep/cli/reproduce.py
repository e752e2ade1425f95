"""`lmrep reproduce`: rerun one of the page's language experiments as measured rates, with a report."""
from __future__ import annotations

import sys

from ..records.checks import at_least
from ..errors import LmrepError
from ..experiments import ReproduceConfig, check, experiments, get, make_executor, reproduce, reproduce_all
from ..experiments.config import DEFAULT_SETTING, SETTINGS
from ..experiments.engine import ItemsFailed
from ..models.load import DEFAULT_MODEL
from .args import DEVICE, add_executor_args, add_out_arg, read_prompts, value_type


def register(sub) -> None:
    p = sub.add_parser("reproduce",
                       description="Each experiment writes a run folder (config.json, items.jsonl, summary.json, "
                                   "figures, report.md). Rerunning the same command resumes an interrupted run.")
    p.add_argument("name", nargs="?", help="an experiment (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--quick", action="store_true", help="the small profile (a few minutes on 2 CPU cores; default: "
                                                        "the full one)")
    p.add_argument("--setting", default=DEFAULT_SETTING, choices=list(SETTINGS),
                   help="follow the page's text or the author's original scripts where they disagree "
                        f"(default: {DEFAULT_SETTING})")
    p.add_argument("--prompts-file", help="a UTF-8 text file of prompts, one per line (default: the profile's own)")
    p.add_argument("--seeds", type=value_type(int, at_least(1, 1000)),
                   help="seeds per condition: 0, 1, ... (default: 3; --quick 1)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"the trained model (stands in for trained GPT-2; default: {DEFAULT_MODEL})")
    p.add_argument("--also", nargs="+", default=[], metavar="MODEL",
                   help="more trained models to run the same way, for the experiments that take them "
                        "(sentence-reconstruction; e.g. gpt2) (default: none)")
    p.add_argument("--steps", type=value_type(int, at_least(1, 10**6)),
                   help="N for every gradient-descent run (default: the setting's N; --quick: 60-120)")
    p.add_argument("--layers", nargs="+", default=[], metavar="LAYER",
                   help="depth: the layers to invert, as block numbers (default: every one; --quick: 1 2)")
    p.add_argument("--device", default="cpu", type=DEVICE, help="cpu, cuda, cuda:N or auto (default: cpu)")
    add_out_arg(p, "reproduce-<name>")
    add_executor_args(p)
    p.set_defaults(run=run)


def run(args) -> int:
    """List the experiments, or run one (or all) and print where the report is."""
    known = experiments()
    if args.list or not args.name:
        width = max(len(n) for n in known)
        for name, exp in known.items():
            print(f"{name:<{width}}  {exp.about}")
        print(f"{'all':<{width}}  every experiment above, with one combined report")
        if not args.list:
            print("\nlmrep reproduce: give an experiment name (or --list)", file=sys.stderr)
            return 2
        return 0
    prompts = tuple(read_prompts([], args.prompts_file)) if args.prompts_file else ()
    if any(not k.isdigit() for k in args.layers):
        bad = next(k for k in args.layers if not k.isdigit())
        raise LmrepError(f"--layers: depth inverts the residual stream after k blocks; give block numbers (0, 1, "
                         f"...), got '{bad}'")
    cfg = ReproduceConfig(args.name, quick=args.quick, setting=args.setting, prompts=prompts,
                          seeds=args.seeds or 0, device=args.device, model=args.model, extra_models=tuple(args.also),
                          steps=args.steps or 0, layers=tuple(int(k) for k in args.layers))
    exps = list(known.values()) if args.name == "all" else [get(args.name)]
    check(cfg.resolved(), exps)  # bad values are one line before any worker (or Ray) starts
    executor = make_executor(args.executor, args.device, args.workers, args.address)
    go = reproduce_all if args.name == "all" else reproduce
    try:
        run_dir = go(cfg, args.out, new=args.new, executor=executor)
    except ItemsFailed as e:
        print(f"lmrep reproduce: {e}", file=sys.stderr)
        return 1
    print(f"report: {run_dir / 'report.md'}")
    return 0
