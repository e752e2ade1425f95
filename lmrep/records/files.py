"""Files a run writes and reads: files written whole (a temporary file beside it, then a rename), JSON lines read
back with a last line cut short by an interruption dropped. The checks of places to write live in checks.py."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .checks import read_text
from ..errors import LmrepError


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write a whole file or nothing: a temporary file beside it, then a rename (readable by all, like any file
    the process creates)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def cached_tensors(path: str | Path, build) -> tuple[dict, bool]:
    """Tensors kept in a safetensors file: read when the file is there, else built (``build() -> {name: tensor}``)
    and written whole or not at all; and whether they were read."""
    from safetensors.torch import load_file, save
    path = Path(path)
    if path.exists():
        return load_file(path), True
    tensors = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}))
    return tensors, False


def read_json(path: str | Path, what: str = "file"):
    """A JSON file written by lmrep; one-line errors for a missing, non-text or damaged one."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LmrepError(f"{what} '{path}' is not valid JSON (line {e.lineno}): it was cut short or changed by "
                         "hand") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON Lines file. A last line cut short by an interruption is dropped, and cut from the
    file too, so that the next appended line starts afresh; a damaged line anywhere else is an error."""
    path = Path(path)
    if not path.exists():
        return []
    text = read_text(path, "results file")
    lines = text.splitlines()
    records = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict):
            if n == len(lines) - 1 and not text.endswith("\n"):
                lines = lines[:-1]  # the torn last line of an interrupted write
                break
            raise LmrepError(f"line {n + 1} of '{path}' is damaged: the file was changed by something other than "
                             "lmrep; use a new run folder (--new)")
        records.append(rec)
    if text and not text.endswith("\n") or len(lines) != len(text.splitlines()):
        write_atomic(path, "".join(line + "\n" for line in lines))
    return records
