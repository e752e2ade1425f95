"""Per-item results keyed by a stable id, so an interrupted run picks up where it stopped.

Every experiment writes one JSON line per finished item to ``items.jsonl`` with an ``id`` built from what the item
is (condition, seed, prompt), never from when it ran, and an ``order``: its place in the experiment's plan. Items
arrive in whatever order the workers finish them; reports read them back in plan order, so a report does not
depend on the executor. On a restart the finished ids are skipped, so nothing is redone and nothing written is
lost. A line cut short by an interruption is dropped (its item runs again).
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ..records.folder import Records, RunDir

ITEMS = "items.jsonl"


class ItemLog(Records):
    """The items a run has finished, read from items.jsonl, and the way to add more (the driver alone adds)."""

    def __init__(self, run_dir: RunDir):
        super().__init__(run_dir, ITEMS, key="id")

    def add(self, item_id: str, record: dict) -> dict:
        """Append a finished item as one whole line (flushed at once) and remember it."""
        return super().add(dict(id=item_id, **record))

    def items(self) -> list[dict]:
        """Every finished item, in plan order (file order for items written before plans had one)."""
        recs = list(self.done.values())
        return sorted(recs, key=lambda r: r.get("order", -1)) if all("order" in r for r in recs) else recs


def item_id(*parts) -> str:
    """A readable stable key: the parts joined by ' | '."""
    return " | ".join(str(p) for p in parts)


class Progress:
    """One bar over the items of a sweep: done (with the time left), failed and retried."""

    def __init__(self, desc: str, enabled: bool):
        self.failed = self.retried = 0
        self.desc, self.enabled, self._bar = desc, enabled, None

    @property
    def bar(self):
        if self._bar is None:  # shown once the first items are planned
            self._bar = tqdm(total=0, desc=self.desc, unit="item", file=sys.stderr, disable=not self.enabled,
                             dynamic_ncols=True)
        return self._bar

    def grow(self, total: int, done: int) -> None:
        """More items planned (the first or a later stage of a plan), ``done`` of them finished already."""
        bar = self.bar
        bar.total += total
        bar.n += done
        if not bar.disable:
            bar.last_print_n += done
            bar.initial += done
            bar.refresh()  # finished items are not counted into the rate, so the time left stays honest

    def step(self, label: str = "") -> None:
        self._postfix(label)
        self.bar.update(1)

    def fail(self, n: int, label: str = "") -> None:
        self.failed += n
        self._postfix(label)
        self.bar.refresh()

    def retry(self, label: str = "") -> None:
        self.retried += 1
        self._postfix(label)
        self.bar.refresh()

    def _postfix(self, label: str) -> None:
        extra = f"failed {self.failed}, retried {self.retried}" if self.failed or self.retried else ""
        self.bar.set_postfix_str(", ".join(x for x in (extra, label[:40]) if x), refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
