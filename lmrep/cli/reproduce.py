"""`lmrep reproduce`: rerun one of the page's language experiments as measured rates, with a report."""
from __future__ import annotations

import sys

from ..experiments.config import ReproduceConfig
from .args import add_config, add_executor_args, add_out_arg, config_from, read_prompts


def register(sub) -> None:
    p = sub.add_parser("reproduce",
                       description="Each experiment writes a run folder (config.json, items.jsonl, summary.json, "
                                   "figures, report.md). Rerunning the same command resumes an interrupted run.")
    p.add_argument("name", nargs="?", help="an experiment (see --list), or 'all'")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--prompts-file", help="a UTF-8 text file of prompts, one per line (default: the profile's own)")
    add_config(p, ReproduceConfig)
    add_out_arg(p, "reproduce-<name>")
    add_executor_args(p)
    p.set_defaults(run=run)


def config_of(args) -> ReproduceConfig:
    """The run's config from the parsed flags (checked by its fields, as a spec's [reproduce] table is)."""
    prompts = tuple(read_prompts([], args.prompts_file)) if args.prompts_file else ()
    return config_from(ReproduceConfig, args, experiment=args.name, prompts=prompts)


def list_experiments(asked: bool) -> int:
    """The experiments and what each does; without ``asked`` (no name given), exit code 2 and what to give."""
    from ..experiments import experiments
    known, listed = experiments(), experiments(audits=True)
    width = max(len(n) for n in listed)
    for name, exp in known.items():
        print(f"{name:<{width}}  {exp.about}")
    print(f"{'all':<{width}}  every experiment above, with one combined report")
    for name, exp in listed.items():
        if name not in known:  # lmrep's own audits: run by name, not by 'all'
            print(f"{name:<{width}}  {exp.about} (not in 'all')")
    if not asked:
        print("\nlmrep reproduce: give an experiment name (or --list)", file=sys.stderr)
        return 2
    return 0


def run(args) -> int:
    """List the experiments, or run one (or all) and print where the report is."""
    if args.list or not args.name:
        return list_experiments(args.list)
    from ..experiments.registry import known
    known(args.name)  # an unknown name is one line before any experiment (or torch) is imported
    cfg = config_of(args)
    from ..engine import ItemsFailed  # here, after the checks that need no torch
    from ..experiments import check, experiments, get, make_executor, reproduce, reproduce_all
    exps = list(experiments().values()) if args.name == "all" else [get(args.name)]
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
