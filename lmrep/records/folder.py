"""Run folders: every run writes its config, its per-item JSON lines and its figures in one place.

A run folder is named by the command and a hash of its config (``runs/invert-3f2a9c1e``), so a result can always
be traced to what produced it, and rerunning the same config finds the same folder. A folder holds one
configuration: a run resumes only into a folder whose config.json is its own (``RunDir.create`` refuses any other,
naming the fields that differ, or picks a fresh folder with ``new=True``), and nothing is written before that check.

Every file is written whole (a temporary file beside it, then a rename) or appended one whole line at a time; a
last line cut short by an interruption is dropped when the file is read back (``read_jsonl``), so the next line
starts afresh. Every file gets the permissions any file the process creates gets.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .lock import hold
from ..errors import LmrepError
from .checks import check_out_dir, check_out_file  # noqa: F401  (callers import them from here too)
from .files import read_json, read_jsonl, write_atomic  # noqa: F401  (also from here)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

DEFAULT_ROOT = Path("runs")
CONFIG = "config.json"


def config_hash(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:8]


def _clean(x):
    """JSON has no NaN/Inf: write them as null so every file stays valid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def dumps(record: dict) -> str:
    return json.dumps(_clean(record), default=str)


def as_json(obj):
    """``obj`` as it reads back from a JSON file (tuples become lists, NaN null), so configs compare as stored."""
    return json.loads(dumps(obj))


# ---- checks on places to write, before anything is written ------------------------------------------------------

class Records:
    """A run's JSON lines, one per finished item, keyed by what the item is (never by when it ran): the items a
    previous run finished (``done``), and the way to add more. Reading drops a torn last line (see read_jsonl)."""

    def __init__(self, run_dir: "RunDir", name: str, key: str | Callable[[dict], str] = "id"):
        self.run_dir, self.name = run_dir, name
        self.key = key if callable(key) else (lambda r, k=key: r.get(k))
        self.done: dict = {}
        for rec in read_jsonl(run_dir / name):
            k = self.key(rec)
            if k is None:
                raise LmrepError(f"'{run_dir / name}' has a line without its key: it was not written by this "
                                 "version of lmrep; use a new run folder (--new)")
            self.done.setdefault(k, rec)

    def add(self, record: dict) -> dict:
        """Append a finished item (one whole line, flushed at once) and remember it."""
        self.run_dir.append_jsonl(self.name, record)
        self.done[self.key(record)] = record
        return record


# ---- the folder -------------------------------------------------------------------------------------------------

def _differences(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted name, old value, new value) of each field where two configs differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in dict.fromkeys([*old, *new]):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix[:-1], old, new)]


def _show(x) -> str:
    s = json.dumps(x)
    return s if len(s) <= 32 else s[:31] + "…"


class RunDir:
    """One run's folder. Lines are appended and flushed as items finish, so an interrupted run keeps them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, command: str, config: dict, out: str | Path | None = None, root: str | Path = DEFAULT_ROOT,
               new: bool = False) -> "RunDir":
        """The run folder for this config, once everything else has been checked: ``out`` (or
        ``root/command-<hash>``), new or holding this same config (then the run resumes). A folder holding another
        configuration, or files that are no run's, is refused with one line naming what differs; with ``new``
        the first free ``<folder>-2``, ``-3``, ... is used instead. Writes config.json."""
        wanted = as_json(dict(command=command, **config))
        path = Path(out) if out else Path(root) / f"{command}-{config_hash(config)}"
        check_out_dir(path)
        problem = cls._mismatch(path, wanted)
        if problem and new:
            base, n = path, 2
            while problem:
                path, n = base.with_name(f"{base.name}-{n}"), n + 1
                check_out_dir(path)
                problem = cls._mismatch(path, wanted)
            log.info("'%s' holds another run; this one goes to '%s'", base, path)
        run = cls(path)
        try:
            if not problem:
                run.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LmrepError(f"cannot create run folder '{path}': {e.strerror}") from None
        if not problem:
            hold(path)  # one writer: another process on this folder stops here (or waits, with --wait)
            problem = cls._mismatch(path, wanted)  # a writer that held it before us may have left another run
        if problem:
            raise LmrepError(f"{problem}: pass --new for a fresh folder beside it, or another --out")
        if not (run / CONFIG).exists():
            run.write_json(CONFIG, wanted)
        return run

    @staticmethod
    def _mismatch(path: Path, wanted: dict) -> str | None:
        """Why ``path`` cannot take a run of config ``wanted`` (None: it is new, empty, or the same run)."""
        if not path.exists():
            return None
        if not (path / CONFIG).exists():
            if any(not p.name.startswith(".") for p in path.iterdir()):
                return f"'{path}' is not empty and holds no run (no {CONFIG})"
            return None
        stored = read_json(path / CONFIG, "run config")
        if not isinstance(stored, dict) or stored.get("command") != wanted["command"]:
            what = stored.get("command") if isinstance(stored, dict) else None
            return f"'{path}' holds a run of another kind ({what or 'not lmrep'}), not {wanted['command']}"
        diff = _differences(stored, wanted)
        if not diff:
            return None
        shown = "; ".join(f"{d}: {_show(a)} there, {_show(b)} now" for d, a, b in diff[:3])
        more = f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
        return f"'{path}' holds a run with another configuration ({shown}{more})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def config(self) -> dict:
        """config.json, checked to be a run's."""
        cfg = read_json(self / CONFIG, "run config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("command"), str):
            raise LmrepError(f"'{self / CONFIG}' is not an lmrep run config (no \"command\" field)")
        return cfg

    def files(self) -> list[str]:
        """The names of the files in the folder, sorted (temporary files left out)."""
        return sorted(p.name for p in self.path.iterdir() if p.is_file() and not p.name.startswith("."))

    def write_json(self, name: str, obj) -> Path:
        return write_atomic(self.path / name, json.dumps(_clean(obj), indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)

    def append_jsonl(self, name: str, record: dict) -> None:
        with open(self.path / name, "a") as f:
            f.write(dumps(record) + "\n")
            f.flush()

    def read_jsonl(self, name: str) -> list[dict]:
        return read_jsonl(self.path / name)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        """A safetensors file, written whole (see write_atomic)."""
        from safetensors.torch import save
        return write_atomic(self.path / name, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}))

    def load_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """A safetensors file of the run ({} when there is none); one line if it is damaged."""
        from safetensors import SafetensorError
        from safetensors.torch import load
        p = self.path / name
        if not p.exists():
            return {}
        try:
            return load(p.read_bytes())
        except (SafetensorError, OSError, ValueError) as e:
            raise LmrepError(f"'{p}' is damaged ({str(e)[:80]}): use a new run folder (--new)") from None

    def add_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        """Add tensors to a safetensors file of the run (rewritten whole), keeping what it held."""
        self.save_tensors(name, {**self.load_tensors(name), **tensors})

