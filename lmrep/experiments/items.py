"""Per-item results keyed by a stable id, so an interrupted run picks up where it stopped.

Every experiment writes one JSON line per finished item to ``items.jsonl`` with an ``id`` built from what the item
is (condition, seed, prompt), never from when it ran. On a restart the finished ids are skipped, so nothing is
redone and nothing written is lost. A line cut short by the interruption is dropped (its item runs again).
"""
from __future__ import annotations

import sys
from typing import Callable, Iterable, Iterator

from tqdm.auto import tqdm

from ..runs import Records, RunDir

ITEMS = "items.jsonl"


class ItemLog(Records):
    """The items a run has finished, read from items.jsonl, and the way to add more."""

    def __init__(self, run_dir: RunDir):
        super().__init__(run_dir, ITEMS, key="id")

    def add(self, item_id: str, record: dict) -> dict:
        """Append a finished item (flushed at once) and remember it."""
        return super().add(dict(id=item_id, **record))


def item_id(*parts) -> str:
    """A readable stable key: the parts joined by ' | '."""
    return " | ".join(str(p) for p in parts)


class Progress:
    """One bar over all items of a run (with the time left), started at the number already finished."""

    def __init__(self, total: int, done: int, desc: str, enabled: bool):
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="item", file=sys.stderr, disable=not enabled,
                        dynamic_ncols=True)

    def step(self, label: str = "") -> None:
        self.bar.set_postfix_str(label[:40], refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def run_group(log: ItemLog, keys: list[str], solve: Callable[[list[int]], Iterable[dict]],
              progress: Progress) -> Iterator[dict]:
    """Run the items of one condition that are not finished yet.

    ``keys[i]`` is item i's id; ``solve(indices)`` computes the pending items (in that order, yielding one record
    each) — e.g. one batched inversion over the pending prompts. Yields every item's record, finished or new.
    """
    pending = [i for i, k in enumerate(keys) if k not in log.done]
    if pending:
        for i, rec in zip(pending, solve(pending)):
            log.add(keys[i], rec)
            progress.step(keys[i])
    return (log.done[k] for k in keys)
