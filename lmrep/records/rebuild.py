"""Rebuilding a run folder from its records never leaves it with less than it had.

``lmrep report`` rewrites a folder's summaries, reports and figures from its JSON lines. Records that were changed
by hand or by another program can still parse yet hold less (fields gone, fewer items); a rebuild from them would
overwrite a good summary.json with a poorer one. ``kept_unless_complete`` keeps the files a rebuild writes and puts
them back, with one line saying why, when the new summaries lack a field or a count the old ones had.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import LmrepError
from .folder import write_atomic

WRITTEN = (".json", ".md", ".png", ".html")  # what a rebuild writes (records and tensors it only reads)
COUNTS = ("n", "prompts", "walks", "items", "count", "runs")  # summary fields that count what the records hold


def _written(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.suffix in WRITTEN
            and p.name != "config.json" and not p.name.startswith(".")}


def lost(old, new, where: str = "") -> str | None:
    """The first field of summary ``old`` that ``new`` lacks or counts lower (None: ``new`` holds as much)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return where or "the summary"
        for k, v in old.items():
            if k not in new:
                return f"{where}{k}"
            if k in COUNTS and isinstance(v, (int, float)) and isinstance(new[k], (int, float)) and new[k] < v:
                return f"{where}{k} ({v} before, {new[k]} now)"
            found = lost(v, new[k], f"{where}{k}.")
            if found:
                return found
    return None


def _summaries(files: dict[Path, bytes]) -> dict[Path, object]:
    out = {}
    for p, data in files.items():
        if p.name == "summary.json":
            try:
                out[p] = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                pass  # a damaged summary is no standard to keep
    return out


@contextmanager
def kept_unless_complete(folder: str | Path) -> Iterator[None]:
    """Run a rebuild of ``folder``; if it fails, or a summary.json it writes holds less than before, every file it
    wrote is put back as it was (and a file it added removed) and the rebuild is refused with one line."""
    folder = Path(folder)
    before = _written(folder)
    try:
        yield
        after = _written(folder)
        old, new = _summaries(before), _summaries(after)
        for p, summary in old.items():
            gone = "the file" if p not in new else lost(summary, new[p])
            if gone:
                raise LmrepError(f"'{folder}': its records hold less than its summary ('{p.relative_to(folder)}': "
                                 f"{gone}); they were changed by something other than lmrep: nothing rewritten")
    except BaseException:
        for p in set(_written(folder)) - set(before):
            p.unlink(missing_ok=True)
        for p, data in before.items():
            if not p.exists() or p.read_bytes() != data:
                write_atomic(p, data)
        raise
