"""``--executor ray``: every task a Ray task, on a Ray started here or on a cluster it joins.

Ray does the scheduling (one CPU per task, and ``num_gpus`` per task when the device is CUDA), the retries (a task
whose worker dies or that raises runs again, ``max_retries`` times) and the placement. Ray keeps its worker
processes between tasks, so each keeps a ModelPool and loads a model once. A task returns its records whole; the
driver writes them. A small actor counts each task's attempts, so the progress bar can say how many were retried.

On a cluster every node needs lmrep installed (the same version as the driver): tasks refer to lmrep's functions.
"""
from __future__ import annotations

import logging
from typing import Iterator

from ..engine import RETRIES, Event, Task, error_text
from .local import default_workers

_POOLS: dict = {}  # per Ray worker process, by device: the models it loaded, kept for its next task


def lmrep_task(task: Task, tid: int, attempts, device: str, threads: int) -> tuple[int, list]:
    """What a Ray worker runs (its process is titled ``ray::lmrep_task`` meanwhile): one task, all its records."""
    import ray
    attempt = ray.get(attempts.start.remote(tid))  # first: a worker that dies while importing counts as an attempt
    import torch

    from .pool import ModelPool
    torch.set_num_threads(threads)
    pool = _POOLS.setdefault(device, ModelPool(device))
    return attempt, list(task.run(pool))


class _Attempts:
    """How many times each task has started (a retry starts it again)."""

    def __init__(self):
        self.n: dict[int, int] = {}

    def start(self, tid: int) -> int:
        self.n[tid] = self.n.get(tid, 0) + 1
        return self.n[tid]

    def started(self) -> int:
        """How many attempts have started, over all tasks."""
        return sum(self.n.values())


class RayExecutor:
    """Tasks on Ray: joins the cluster at ``address``, or starts a local Ray with ``workers`` CPUs (no dashboard)
    that it shuts down again; an already running Ray in this process is used as it is."""

    def __init__(self, address: str | None = None, workers: int | None = None, device: str = "cpu",
                 retries: int = RETRIES, gpus_per_item: float | None = None, threads: int = 1):
        import ray
        self.ray, self.device, self.threads = ray, device, threads
        self.started = not ray.is_initialized()
        if self.started:
            quiet = dict(logging_level=logging.WARNING, log_to_driver=False)
            if address:
                ray.init(address=address, **quiet)
            else:  # on this machine only: every address on the loopback interface
                ray.init(num_cpus=workers or default_workers(), include_dashboard=False,
                         _node_ip_address="127.0.0.1", **quiet)
        gpus = (gpus_per_item or 1) if device.startswith("cuda") else 0
        self.remote = ray.remote(lmrep_task).options(num_cpus=threads, num_gpus=gpus, max_retries=retries,
                                                     retry_exceptions=True)
        self.attempts = ray.remote(_Attempts).options(num_cpus=0).remote()
        self.refs: dict = {}

    def submit(self, tid: int, task: Task) -> None:
        self.refs[self.remote.remote(task, tid, self.attempts, self.device, self.threads)] = tid

    def events(self) -> Iterator[Event]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        for ref in ready:
            tid = self.refs.pop(ref)
            try:
                attempt, results = self.ray.get(ref)
            except self.ray.exceptions.RayError as e:
                yield Event(tid, "failed", error=error_text(e))
                continue
            for _ in range(attempt - 1):
                yield Event(tid, "retry")
            for key, rec in results:
                yield Event(tid, "item", key, rec)
            yield Event(tid, "done")

    def close(self) -> None:
        for ref in self.refs:
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started:
            self.ray.shutdown()
