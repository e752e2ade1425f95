"""`lmrep report`: rebuild the figures and report.md of reproduction runs from their JSON alone."""
from __future__ import annotations

from pathlib import Path

from ..errors import LmrepError
from ..experiments import combine, rebuild
from ..runs import RunDir


def register(sub) -> None:
    p = sub.add_parser("report", help="rebuild figures and report.md of lmrep reproduce runs (no model needed)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by lmrep reproduce")
    p.add_argument("--combined", metavar="FILE", help="also write one markdown file with every report in it")
    p.set_defaults(run=run)


def run(args) -> int:
    """Rebuild each run folder's report (and a combined one) from its JSON."""
    dirs = []
    for d in args.run_dirs:
        if not Path(d).is_dir():
            raise LmrepError(f"run folder '{d}' not found: give a folder written by lmrep reproduce")
        dirs.append(RunDir(d))
    for d in dirs:
        rebuild(d)
        print(f"rebuilt {d / 'report.md'}")
    if args.combined:
        combine(dirs, args.combined)
        print(f"combined report: {args.combined}")
    return 0
