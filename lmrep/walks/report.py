"""A walk run folder: the walks run into it (resuming what an earlier run of the same config finished), and its
summary and figure rebuilt from metrics.jsonl alone (no model needed)."""
from __future__ import annotations

from typing import Callable

from ..errors import LmrepError
from ..records.folder import Records, RunDir, resumed
from ..records.stats import mean_sem
from .core import WalkConfig
from .driver import walk_items
from .figures import walk_figure

METRICS, EMBEDDINGS = "metrics.jsonl", "embeddings.safetensors"
SUMMARY_FIELDS = ("r", "r_random", "r_over_random", "input_distance", "output_distance")


def run(run_dir: RunDir, target, prompts: list[str], cfg: WalkConfig, seeds: tuple[int, ...],
        progress: bool = True, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Walk from every (prompt, seed) the run folder has not finished (walk i is prompt i % P under seed
    i // P). Per walk, its start and end embeddings go into embeddings.safetensors (keys ``i.start``, ``i.end``)
    first and its metrics line last, so a walk counts as finished only with both. ``on_record`` sees every walk's
    record, those finished earlier first; returns them all in order."""
    items = [(target.lm.encode(p), s) for s in seeds for p in prompts]
    metrics = Records(run_dir, METRICS, key="index")
    have = run_dir.load_tensors(EMBEDDINGS)
    metrics.keep(i for i in metrics.done if f"{i}.start" in have and f"{i}.end" in have)
    resumed(len(metrics.done), len(items), run_dir, "walk")
    for i in sorted(metrics.done):
        if on_record:
            on_record(metrics.done[i])
    pending = [i for i in range(len(items)) if i not in metrics.done]
    try:
        if pending:
            for i, res in zip(pending, walk_items(target, [items[i] for i in pending], cfg, progress)):
                run_dir.add_tensors(EMBEDDINGS, {f"{i}.start": res.start, f"{i}.end": res.end})
                metrics.add(dict(index=i, **res.record))
                if on_record:
                    on_record(metrics.done[i])
    finally:
        if metrics.done:
            rebuild_run(run_dir)
    return [metrics.done[i] for i in sorted(metrics.done)]


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json (mean and standard error of r and the distances over walks) and walk.png; the summary."""
    records = run_dir.read_jsonl(METRICS)
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished walk ({METRICS} is empty or missing): nothing to "
                         "report; rerun the command to resume it")
    summary = dict(walks=len(records), **{k: mean_sem(r.get(k) for r in records) for k in SUMMARY_FIELDS})
    run_dir.write_json("summary.json", summary)
    r0 = records[0]
    untrained = "" if r0.get("trained", True) else " (untrained)"
    walk_figure(records, run_dir / "walk.png", f"{r0['model']}{untrained} {r0['target']}: {r0['method']} walk")
    return summary
