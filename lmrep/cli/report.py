"""`lmrep report`: rebuild the summary, figures (and report.md) of any run folder from its files alone."""
from __future__ import annotations

from ..records.folder import RunDir
from ..records.lock import hold
from ..records.rebuild import kept_unless_complete
from .args import OUT_FILE, SITE_DIR, add_wait_arg


def register(sub) -> None:
    p = sub.add_parser("report")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run folders written by lmrep invert, walk, features, reconstruct-image, reproduce or sweep")
    p.add_argument("--convert", action="store_true",
                   help="first rewrite invert folders of an earlier lmrep (metrics.jsonl, snapshots.jsonl) as "
                        "items.jsonl, keeping the old files (default: off)")
    p.add_argument("--combined", metavar="FILE", type=OUT_FILE,
                   help="also write one markdown file with every run's report in it (default: none)")
    p.add_argument("--html", metavar="DIR", type=SITE_DIR,
                   help="also write a static site to DIR: index.html, a page per run (claims, figures, a per-prompt "
                        "view of inversions); open it in any browser (default: none)")
    add_wait_arg(p)
    p.set_defaults(run=run)


def run(args) -> int:
    """Rebuild each run folder (every one checked first) and, if asked, a combined report."""
    from ..experiments import combine, rebuild_any, reporter  # here: reading the arguments needs no torch
    from ..experiments.site import write_site
    dirs = [RunDir(d) for d in args.run_dirs]
    if args.convert:
        from ..inversion.report import convert
        for d in dirs:
            print(f"converted {d.path}: {convert(d)} item(s) in items.jsonl")
    for d in dirs:
        reporter(d)  # every folder checked before any is rebuilt
    for d in dirs:
        hold(d.path)  # no run writes a folder while its summary is rebuilt
    for d in dirs:
        with kept_unless_complete(d.path):  # records that hold less than the summary: refused, nothing rewritten
            rebuild_any(d)
        print(f"rebuilt {d.path}: {', '.join(d.files())}")
    if args.combined:
        combine(dirs, args.combined)
        print(f"combined report: {args.combined}")
    if args.html:
        print(f"site: {write_site(dirs, args.html)}")
    return 0
