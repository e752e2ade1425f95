"""Where a run's tasks are executed, by name: ``EXECUTORS`` is the one table of them (the CLI's choices come from
it). Given a model pool, a run executes in this process instead (``Inline``: tests and the Python API)."""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from ..errors import LmrepError
from ..engine import RETRIES, Inline

if TYPE_CHECKING:
    from .pool import ModelPool


def _local(device: str, workers: int | None, address: str | None, retries: int):
    """worker processes on this machine, each loading its models once"""
    from .local import LocalExecutor
    return LocalExecutor(workers, device, retries)


def _ray(device: str, workers: int | None, address: str | None, retries: int):
    """Ray tasks on a local Ray, or on the cluster at --address"""
    if importlib.util.find_spec("ray") is None:
        raise LmrepError("the ray executor needs Ray: pip install 'lmrep[ray]' (or use --executor local)")
    from .cluster import RayExecutor
    return RayExecutor(address, workers, device, retries)


EXECUTORS = {"local": _local, "ray": _ray}  # the first is the default


def make_executor(name: str = "local", device: str = "cpu", workers: int | None = None, address: str | None = None,
                  retries: int = RETRIES, pool: ModelPool | None = None):
    """An executor by name (a row of ``EXECUTORS``), or (given a pool) this process itself."""
    if pool is not None:
        return Inline(pool, retries)
    if name not in EXECUTORS:
        raise LmrepError(f"unknown executor '{name}': choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](device, workers, address, retries)
