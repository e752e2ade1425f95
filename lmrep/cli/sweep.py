"""`lmrep sweep`: grids of inversions and the page's experiments from one TOML spec, on local workers or Ray."""
from __future__ import annotations

import sys

from ..engine import ItemsFailed
from .args import DEVICE, add_executor_args, add_out_arg


def register(sub) -> None:
    p = sub.add_parser("sweep",
                       description="Every cell of the spec becomes independent items, run by local worker "
                                   "processes or by Ray; the same command again resumes an interrupted sweep. "
                                   "The spec format: docs/sweep.md.")
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep spec")
    add_out_arg(p, "sweep")
    p.add_argument("--device", type=DEVICE, help="cpu, cuda or cuda:N (default: the spec's device, else cpu)")
    p.add_argument("--allow", action="append", metavar="FILE",
                   help="a file outside the spec's folder that the spec may read (repeatable; default: only files "
                        "beside the spec)")
    add_executor_args(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from ..experiments.sweep import load_spec, run_sweep  # here: reading the arguments needs no torch
    # the whole spec is checked before anything runs
    sweep = load_spec(args.spec, args.out, args.device, allow=tuple(args.allow or ()))
    try:
        top = run_sweep(sweep, args.executor, args.workers, args.address, new=args.new)
    except ItemsFailed as e:
        print(f"lmrep sweep: {e}", file=sys.stderr)
        return 1
    for name, _ in sweep.runs:
        print(f"report: {top / name / 'report.md'}")
    print(f"sweep folder: {top.path} (lmrep report {top.path} --html SITE for a browsable report)")
    return 0
