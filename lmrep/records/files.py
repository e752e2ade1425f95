"""Files a run writes and reads: places checked before anything is written, files written whole (a temporary
file beside it, then a rename), JSON lines read back with a last line cut short by an interruption dropped."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .checks import read_text
from ..errors import LmrepError

PSEUDO = ("/proc", "/sys", "/dev")  # file systems that hold no files of ours


def _pseudo(path: Path) -> str | None:
    resolved = path.resolve()
    return next((p for p in PSEUDO if resolved == Path(p) or Path(p) in resolved.parents), None)


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_out_dir(path: str | Path, what: str = "run folder") -> Path:
    """The one check for an output folder: not an existing file, not under /proc, /sys or /dev, and creatable and
    writable by this process. Writes nothing."""
    path = Path(path).expanduser()
    if _pseudo(path):
        raise LmrepError(f"{what} '{path}' is under {_pseudo(path)}, which holds no files: give a folder on disk")
    if path.exists() and not path.is_dir():
        raise LmrepError(f"{what} '{path}' is an existing file: give a folder (a new one, or an earlier run's)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise LmrepError(f"{what} '{path}' cannot be created: '{base}' is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise LmrepError(f"{what} '{path}' cannot be written: no permission to write in '{base}'")
    return path


def check_out_file(path: str | Path, what: str = "output file") -> Path:
    """The same check for a file to be written (e.g. a combined report): not a folder, in a folder that exists and
    is writable."""
    path = Path(path).expanduser()
    if _pseudo(path):
        raise LmrepError(f"{what} '{path}' is under {_pseudo(path)}: give a file on disk")
    if path.is_dir():
        raise LmrepError(f"{what} '{path}' is a folder: give a file name, e.g. {path / 'report.md'}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise LmrepError(f"{what} '{path}' cannot be written: its folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise LmrepError(f"{what} '{path}' cannot be written: no permission")
    return path


# ---- whole files and whole lines --------------------------------------------------------------------------------

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
