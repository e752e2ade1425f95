"""Per-item results keyed by a stable id, so an interrupted run picks up where it stopped.

Every command and experiment writes one JSON line per finished item to ``items.jsonl`` with an ``id`` built from
what the item is (condition, seed, prompt), never from when it ran, and an ``order``: its place in the plan. Items
arrive in whatever order the workers finish them; reports read them back in plan order, so a report does not
depend on the executor. On a restart the finished ids are skipped, so nothing is redone and nothing written is
lost. A line cut short by an interruption is dropped (its item runs again). Tensors an item carries (images,
embeddings) go into ``tensors.safetensors`` before its line, so an item with a line has its tensors.
"""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from ..errors import LmrepError
from ..records.folder import Records, RunDir

if TYPE_CHECKING:
    import torch

ITEMS, TENSORS = "items.jsonl", "tensors.safetensors"
TENSOR_FIELD = "tensors"  # a record's tensors by name (popped before its line is written; stored under "<id>/<name>")
# the per-command files of runs written before items.jsonl: such a folder is refused, never misread
OLD_FILES = ("metrics.jsonl", "snapshots.jsonl", "panels.jsonl", "layers.jsonl")

log = logging.getLogger(__name__)


class ItemLog(Records):
    """The items a run has finished, read from items.jsonl, and the way to add more (the driver alone adds)."""

    def __init__(self, run_dir: RunDir):
        check_format(run_dir)
        super().__init__(run_dir, ITEMS, key="id")

    def attach(self, item_id: str, tensors: dict[str, torch.Tensor]) -> None:
        """Add an item's tensors to the run's tensors.safetensors, as ``<id>/<name>`` (before its line is added)."""
        if tensors:
            self.run_dir.add_tensors(TENSORS, {f"{item_id}/{name}": t for name, t in tensors.items()})

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor the run's items carried, as ``<id>/<name>``."""
        return self.run_dir.load_tensors(TENSORS)

    def resumed(self, total: int, what: str = "item") -> None:
        """Say (on the log) that a run picks up where an earlier one stopped."""
        if self.done:
            log.info("resuming '%s': %d of %d %s(s) already finished, kept", self.run_dir.path, len(self.done),
                     total, what)

    def add(self, item_id: str, record: dict) -> dict:
        """Append a finished item as one whole line (flushed at once) and remember it."""
        return super().add(dict(id=item_id, **record))

    def items(self) -> list[dict]:
        """Every finished item, in plan order (file order for items written before plans had one)."""
        recs = list(self.done.values())
        return sorted(recs, key=lambda r: r.get("order", -1)) if all("order" in r for r in recs) else recs


class MemoryLog:
    """The items of a command whose product is one file written whole at the end (capture's states file), held in
    memory: the engine adds to it as to an ItemLog, nothing is written per item and nothing resumes."""

    def __init__(self):
        self.done: dict[str, dict] = {}
        self.tensors: dict[str, torch.Tensor] = {}

    def add(self, item_id: str, record: dict) -> dict:
        self.done[item_id] = dict(id=item_id, **record)
        return self.done[item_id]

    def attach(self, item_id: str, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors.update({f"{item_id}/{name}": t for name, t in tensors.items()})


def check_format(run_dir: RunDir) -> None:
    """Refuse, with one line that says what to do, a run folder written before items.jsonl (never misread it)."""
    old = [name for name in OLD_FILES if (run_dir / name).exists()]
    if old and not (run_dir / ITEMS).exists():
        invert = (run_dir / "snapshots.jsonl").exists()  # an invert run's (a walk's has embeddings instead)
        convert = f"convert it with lmrep report --convert '{run_dir.path}', or " if invert else ""
        raise LmrepError(f"'{run_dir.path}' was written by an earlier lmrep ({old[0]}, no {ITEMS}): {convert}rerun "
                         "the command with --new to redo it in a fresh folder")


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
            from tqdm.auto import tqdm  # here: a command reads its arguments without it (it costs 50 ms)
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
