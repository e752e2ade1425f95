"""An inversion run folder: the prompts (or observed states) inverted into it, resuming what an earlier run of the
same config finished, and its summary and figure rebuilt from metrics.jsonl alone (no model needed)."""
from __future__ import annotations

from typing import Callable, Iterator

from ..errors import LmrepError
from ..records.plots import loss_curves
from ..records.folder import Records, RunDir, resumed
from .states import States
from .base import Target, invert, invert_outputs, score, summarize
from .config import InvertConfig

METRICS, SNAPSHOTS = "metrics.jsonl", "snapshots.jsonl"


def run(run_dir: RunDir, target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True,
        on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Invert every prompt the run folder has not finished. Per prompt, its snapshots line is written first and
    its metrics line last (the line that marks it finished), so an interrupted run loses at most the prompts it
    was working on. ``on_record`` sees every prompt's record, those finished earlier first; returns them all in
    prompt order, with their snapshots."""
    def pending(todo: list[int]) -> Iterator[dict]:
        return invert(target, [prompts[i] for i in todo], cfg, progress)
    return _resume(run_dir, len(prompts), pending, "prompt", on_record)


def run_states(run_dir: RunDir, target: Target, states: States, cfg: InvertConfig, progress: bool = True,
               on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """The same for observed states: one record per tensor, in key order, with ``source: "states"`` and its
    ``key``, scored against the file's token ids when it has them."""
    def pending(todo: list[int]) -> Iterator[dict]:
        recs = invert_outputs(target, [states.tensors[i] for i in todo], cfg, progress)
        for i, rec in zip(todo, recs):
            rec = dict(source="states", key=states.keys[i], **rec)
            yield rec if states.ids is None else score(target, rec, states.ids[i])
    return _resume(run_dir, len(states.keys), pending, "tensor", on_record)


def _resume(run_dir: RunDir, total: int, records: Callable[[list[int]], Iterator[dict]], what: str,
            on_record: Callable[[dict], None] | None) -> list[dict]:
    """Items 0..total-1, those the folder has not finished computed by ``records(pending indices)``."""
    metrics = Records(run_dir, METRICS, key="index")
    snaps = Records(run_dir, SNAPSHOTS, key="index")
    snaps.keep(metrics.done)  # snapshots of an item whose metrics line was never written
    resumed(len(metrics.done), total, run_dir, what)

    def full(i: int) -> dict:
        return dict(metrics.done[i], snapshots=(snaps.done.get(i) or {}).get("snapshots"))
    for i in sorted(metrics.done):
        if on_record:
            on_record(full(i))
    todo = [i for i in range(total) if i not in metrics.done]
    try:
        if todo:
            for i, rec in zip(todo, records(todo)):
                snaps.add(dict(index=i, **{k: rec[k] for k in ("prompt", "key") if k in rec},
                               snapshots=rec.get("snapshots")))
                metrics.add(dict(index=i, **{k: v for k, v in rec.items() if k != "snapshots"}))
                if on_record:
                    on_record(full(i))
    finally:
        if metrics.done:
            rebuild_run(run_dir)
    return [full(i) for i in sorted(metrics.done)]


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json (rates over prompts) and, for methods with a loss curve, loss.png; returns the summary."""
    records = run_dir.read_jsonl(METRICS)
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished prompt ({METRICS} is empty or missing): nothing to "
                         "report; rerun the command to resume it")
    summary = summarize(records)
    run_dir.write_json("summary.json", summary)
    label = {id(r): r.get("prompt") or f"states key {r.get('key')}" for r in records}  # states may have no prompt
    curves = {label[id(r)]: r["loss_curve"] for r in records if r.get("loss_curve")}
    if curves:
        r0 = records[0]
        untrained = "" if r0.get("trained", True) else " (untrained)"
        loss_curves(curves, run_dir / "loss.png", title=f"{r0['model']}{untrained} {r0['layer_name']}: output "
                    "distance", ylabel="distance to the target output (dashed: eq. 4's m)",
                    thresholds={label[id(r)]: r.get("threshold") for r in records})
    return summary
