"""An inversion run folder: the prompts inverted into it (resuming what an earlier run of the same config
finished), and its summary and figure rebuilt from metrics.jsonl alone (no model needed)."""
from __future__ import annotations

from typing import Callable

from ..errors import LmrepError
from ..plots import loss_curves
from ..runs import Records, RunDir, resumed
from .base import Target, invert, summarize
from .config import InvertConfig

METRICS, SNAPSHOTS = "metrics.jsonl", "snapshots.jsonl"


def run(run_dir: RunDir, target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True,
        on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Invert every prompt the run folder has not finished. Per prompt, its snapshots line is written first and
    its metrics line last (the line that marks it finished), so an interrupted run loses at most the prompts it
    was working on. ``on_record`` sees every prompt's record, those finished earlier first; returns them all in
    prompt order, with their snapshots."""
    metrics = Records(run_dir, METRICS, key="index")
    snaps = Records(run_dir, SNAPSHOTS, key="index")
    snaps.keep(metrics.done)  # snapshots of a prompt whose metrics line was never written
    resumed(len(metrics.done), len(prompts), run_dir, "prompt")

    def full(i: int) -> dict:
        return dict(metrics.done[i], snapshots=(snaps.done.get(i) or {}).get("snapshots"))
    for i in sorted(metrics.done):
        if on_record:
            on_record(full(i))
    pending = [i for i in range(len(prompts)) if i not in metrics.done]
    try:
        if pending:
            for i, rec in zip(pending, invert(target, [prompts[i] for i in pending], cfg, progress)):
                snaps.add(dict(index=i, prompt=rec["prompt"], snapshots=rec.get("snapshots")))
                metrics.add(dict(index=i, **{k: v for k, v in rec.items() if k != "snapshots"}))
                if on_record:
                    on_record(full(i))
    finally:
        if metrics.done:
            report(run_dir)
    return [full(i) for i in sorted(metrics.done)]


def report(run_dir: RunDir) -> dict:
    """summary.json (rates over prompts) and, for methods with a loss curve, loss.png; returns the summary."""
    records = run_dir.read_jsonl(METRICS)
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished prompt ({METRICS} is empty or missing): nothing to "
                         "report; rerun the command to resume it")
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
