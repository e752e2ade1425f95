"""An inversion run folder: the prompts (or observed states) inverted into it as the engine's items, resuming what an
earlier run of the same config finished, and its summary and figure rebuilt from items.jsonl alone (no model)."""
from __future__ import annotations

from typing import Callable, Iterator

from ..engine import ITEMS, ItemLog, item_id
from ..engine.command import batches, run_command
from ..errors import LmrepError
from ..records.folder import RunDir, dumps, read_jsonl
from ..records.plots import loss_curves
from .base import Target, invert, invert_outputs, score, summarize
from .config import InvertConfig
from .states import States


def solve_prompts(pool, prompts: list[str], target: Target, cfg: InvertConfig, progress: bool) -> Iterator[dict]:
    """One task: a batch of prompts inverted together, one record each."""
    yield from invert(target, prompts, cfg, progress)


def solve_states(pool, indices: list[int], target: Target, cfg: InvertConfig, states: States,
                 progress: bool) -> Iterator[dict]:
    """One task: tensors of a states file inverted together, each record with ``source: "states"`` and its
    ``key``, scored against the file's token ids when it has them."""
    recs = invert_outputs(target, [states.observed(i) for i in indices], cfg, progress)
    for i, rec in zip(indices, recs):
        rec = dict(source="states", key=states.keys[i], **rec)
        yield rec if states.ids is None else score(target, rec, states.ids[i])


def run(run_dir: RunDir, target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True,
        on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Invert every prompt the run folder has not finished, cfg.batch_size at a time, each prompt one item of
    items.jsonl (its record whole, snapshots included), so an interrupted run loses at most the prompts it was
    working on; then summary.json and loss.png. ``on_record`` sees every prompt's record, those finished earlier
    first; returns them all in prompt order."""
    keys = [item_id(i, p) for i, p in enumerate(prompts)]
    return run_command(run_dir, keys, lambda done: batches(solve_prompts, (target, cfg, progress), keys, prompts,
                                                           cfg.batch_size, done),
                       rebuild_run, "prompt", progress, on_record)


def run_states(run_dir: RunDir, target: Target, states: States, cfg: InvertConfig, progress: bool = True,
               on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """The same for observed states: one item per tensor, in key order."""
    keys = [item_id(i, k) for i, k in enumerate(states.keys)]
    return run_command(run_dir, keys, lambda done: batches(solve_states, (target, cfg, states, progress), keys,
                                                           range(len(keys)), cfg.batch_size, done),
                       rebuild_run, "tensor", progress, on_record)


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json (rates over prompts) and, for methods with a loss curve, loss.png; returns the summary."""
    records = ItemLog(run_dir).items()
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished prompt ({ITEMS} is empty or missing): nothing to "
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


def convert(run_dir: RunDir) -> int:
    """Rewrite an invert run folder of an earlier lmrep (metrics.jsonl + snapshots.jsonl, keyed by the prompt's
    index) as items.jsonl, leaving the old files in place; returns the number of items. The records are the same,
    with each prompt's snapshots back in its record."""
    if run_dir.config()["command"] != "invert" or not (run_dir / "metrics.jsonl").exists():
        raise LmrepError(f"'{run_dir.path}' is not an invert run of an earlier lmrep (no metrics.jsonl): nothing to "
                         "convert")
    if (run_dir / ITEMS).exists():
        raise LmrepError(f"'{run_dir.path}' has {ITEMS} already: nothing to convert")
    snaps = {r["index"]: r.get("snapshots") for r in read_jsonl(run_dir / "snapshots.jsonl")}
    lines = sorted(read_jsonl(run_dir / "metrics.jsonl"), key=lambda r: r["index"])
    items = []
    for rec in lines:
        i = rec.pop("index")
        name = rec.get("prompt", rec.get("key"))
        items.append(dict(id=item_id(i, name), **rec, snapshots=snaps.get(i), order=i))
    run_dir.write_text(ITEMS, "".join(dumps(r) + "\n" for r in items))
    return len(items)
