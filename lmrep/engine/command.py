"""A single command's run: its items planned over what the run folder has not finished, run here by the engine,
then its summary and figures rebuilt from the folder (also when it was stopped), the way every command does it."""
from __future__ import annotations

from typing import Callable, Container, Sequence

from ..records.folder import RunDir
from .items import ItemLog
from .job import Job, Task, run_here


def batches(solve: Callable, args: tuple, keys: Sequence[str], units: Sequence, size: int,
            done: Container[str]) -> list[Task]:
    """Tasks of ``size`` items each over the items not in ``done``, batched as a fresh run would batch them (an
    item's numbers must then not depend on its batch: per-item seeds)."""
    todo = [i for i, k in enumerate(keys) if k not in done]
    return [Task(solve, args, tuple(keys[i] for i in todo[j:j + size]), tuple(units[i] for i in todo[j:j + size]))
            for j in range(0, len(todo), size)]


def run_command(run_dir: RunDir, keys: Sequence[str], plan: Callable[[Container[str]], list[Task]],
                report: Callable[[RunDir], object], what: str = "item", progress: bool = True,
                on_item: Callable[[dict], None] | None = None) -> list[dict]:
    """Run ``plan(finished ids)`` (one stage) into ``run_dir``'s items.jsonl, items keyed and ordered as ``keys``;
    ``on_item`` sees every item's record, those finished earlier first. ``report(run_dir)`` runs at the end (also
    when stopped, if any item finished). Returns every finished item's record in ``keys`` order."""
    log = ItemLog(run_dir)
    log.resumed(len(keys), what)
    for rec in log.items():
        if on_item:
            on_item(rec)
    job = Job(run_dir.path.name, log, iter([plan(log.done)]), on_item=on_item,
              order={k: i for i, k in enumerate(keys)})
    try:
        run_here(job, progress, f"{what}s")
    finally:
        if log.done:
            report(run_dir)
    return log.items()
