"""An inversion run folder's summary and figure, rebuilt from its metrics.jsonl alone (no model needed)."""
from __future__ import annotations

from ..plots import loss_curves
from ..runs import RunDir
from .base import summarize

METRICS, SNAPSHOTS = "metrics.jsonl", "snapshots.jsonl"


def report(run_dir: RunDir) -> dict:
    """summary.json (rates over prompts) and, for methods with a loss curve, loss.png; returns the summary."""
    records = run_dir.read_jsonl(METRICS)
    summary = summarize(records)
    run_dir.write_json("summary.json", summary)
    curves = {r["prompt"]: r["loss_curve"] for r in records if r.get("loss_curve")}
    if curves:
        r0 = records[0]
        untrained = "" if r0.get("trained", True) else " (untrained)"
        loss_curves(curves, run_dir / "loss.png", title=f"{r0['model']}{untrained} {r0['layer_name']}: output "
                    "distance", ylabel="distance to the target output (dashed: eq. 4's m)",
                    thresholds={r["prompt"]: r.get("threshold") for r in records})
    return summary
