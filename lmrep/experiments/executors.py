"""Where a run's tasks are executed, by name: worker processes here, or Ray (or, given a model pool, this process)."""
from __future__ import annotations

import importlib.util

from ..errors import LmrepError
from .engine import RETRIES, Inline
from .pool import ModelPool

EXECUTORS = ("local", "ray")


def make_executor(kind: str = "local", device: str = "cpu", workers: int | None = None, address: str | None = None,
                  retries: int = RETRIES, pool: ModelPool | None = None):
    """An executor by name: local worker processes, Ray, or (given a pool) this process itself."""
    if pool is not None:
        return Inline(pool, retries)
    if kind == "local":
        from .local import LocalExecutor
        return LocalExecutor(workers, device, retries)
    if kind == "ray":
        if importlib.util.find_spec("ray") is None:
            raise LmrepError("the ray executor needs Ray: pip install 'lmrep[ray]' (or use --executor local)")
        from .cluster import RayExecutor
        return RayExecutor(address, workers, device, retries)
    raise LmrepError(f"unknown executor '{kind}': choose one of {', '.join(EXECUTORS)}")
