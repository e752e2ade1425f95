"""A walk run folder's summary and figure, rebuilt from its metrics.jsonl alone (no model needed)."""
from __future__ import annotations

from ..runs import RunDir
from ..stats import mean_sem
from .figures import walk_figure

METRICS = "metrics.jsonl"
SUMMARY_FIELDS = ("r", "r_random", "r_over_random", "input_distance", "output_distance")


def report(run_dir: RunDir) -> dict:
    """summary.json (mean and standard error of r and the distances over walks) and walk.png; the summary."""
    records = run_dir.read_jsonl(METRICS)
    summary = dict(walks=len(records), **{k: mean_sem(r.get(k) for r in records) for k in SUMMARY_FIELDS})
    run_dir.write_json("summary.json", summary)
    if records:
        r0 = records[0]
        untrained = "" if r0.get("trained", True) else " (untrained)"
        walk_figure(records, run_dir / "walk.png", f"{r0['model']}{untrained} {r0['target']}: {r0['method']} walk")
    return summary
