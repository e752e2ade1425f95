"""Run folders: every run writes its config, its per-item JSON lines and its figures in one place.

A run folder is named by the command and a hash of its config (``runs/invert-3f2a9c1e``), so a result can always
be traced to what produced it, and rerunning the same config finds the same folder.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch

DEFAULT_ROOT = Path("runs")


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


class RunDir:
    """One run's folder. Lines are appended and flushed as items finish, so an interrupted run keeps them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, kind: str, config: dict, out: str | Path | None = None, root: str | Path = DEFAULT_ROOT):
        run = cls(out if out else Path(root) / f"{kind}-{config_hash(config)}")
        run.write_json("config.json", dict(command=kind, **config))
        return run

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj) -> Path:
        return write_atomic(self.path / name, json.dumps(_clean(obj), indent=2, default=str) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        return write_atomic(self.path / name, text)

    def append_jsonl(self, name: str, record: dict) -> None:
        with open(self.path / name, "a") as f:
            f.write(dumps(record) + "\n")
            f.flush()

    def read_jsonl(self, name: str) -> list[dict]:
        p = self.path / name
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def reset(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def save_tensors(self, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        from safetensors.torch import save_file
        p = self.path / name
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(p))
        return p
