"""``--executor local``: worker processes on this machine, each loading its models once and keeping them.

Each worker is a spawned process with its own ModelPool and a pipe to the driver; it streams every record back as
its solver yields it. The driver watches the pipes and the processes: a worker that dies (killed, out of memory)
is replaced, and its task goes back in the queue (a retry: the driver writes only the items it did not have yet); a
task that raises is retried the same way. Tasks prefer an idle worker that ran the same affinity (model) last.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Iterator

from ..engine import RETRIES, Event, Task, error_text


def default_workers() -> int:
    """One worker per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _worker(conn, device: str, threads: int) -> None:
    """A worker's life: load models on demand, run tasks, stream records back; Ctrl-C is the driver's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from .pool import ModelPool
    torch.set_num_threads(threads)
    pool = ModelPool(device)
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            for key, rec in task.run(pool):
                conn.send(("item", key, rec))
            conn.send(("done",))
        except Exception as e:  # noqa: BLE001 - the driver decides whether to retry
            conn.send(("error", error_text(e)))


@dataclass
class _Worker:
    proc: mp.Process
    conn: object
    job: tuple | None = None  # (task id, task, attempt) while busy
    affinity: str = ""


class LocalExecutor:
    """A pool of ``workers`` processes with ``threads`` torch threads each (default: cores / workers)."""

    def __init__(self, workers: int | None = None, device: str = "cpu", retries: int = RETRIES,
                 threads: int | None = None):
        self.n = workers or default_workers()
        self.device, self.retries = device, retries
        self.threads = threads or max(1, default_workers() // self.n)
        self.ctx = mp.get_context("spawn")  # a fresh interpreter: no torch threads or locks inherited
        self.workers: list[_Worker] = []
        self.procs: list = []  # every worker process started (tests check none outlives the driver)
        self.queue: deque = deque()

    def pids(self, busy: bool = True) -> list[int]:
        """The process ids of the workers (those running a task, by default)."""
        return [w.proc.pid for w in self.workers if w.job or not busy]

    def submit(self, tid: int, task: Task) -> None:
        self.queue.append((tid, task, 0))

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.device, self.threads), daemon=True)
        proc.start()
        self.procs.append(proc)
        child.close()
        w = _Worker(proc, parent)
        self.workers.append(w)
        return w

    def _dispatch(self) -> None:
        for w in [w for w in self.workers if w.job is None and not w.proc.is_alive()]:
            self.workers.remove(w)  # died between tasks: nothing was lost, a new one takes its place
        while len(self.workers) < self.n and len(self.queue) > sum(w.job is None for w in self.workers):
            self._start()
        for w in self.workers:
            if w.job is None and self.queue:
                pick = next((j for j in self.queue if j[1].affinity == w.affinity), self.queue[0])
                self.queue.remove(pick)
                w.job, w.affinity = pick, pick[1].affinity
                w.conn.send(pick[1])

    def events(self) -> Iterator[Event]:
        self._dispatch()
        busy = [w for w in self.workers if w.job]
        ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
        for w in busy:
            if w.conn in ready:
                try:
                    while w.job and w.conn.poll():
                        yield from self._message(w, w.conn.recv())
                except (EOFError, OSError):
                    pass  # the worker died mid-message: its sentinel tells
            if w.job and (w.proc.sentinel in ready or not w.proc.is_alive()):
                w.proc.join(1)
                if not w.proc.is_alive():
                    yield from self._lost(w, f"worker {w.proc.pid} died (exit code {w.proc.exitcode})")

    def _message(self, w: _Worker, msg: tuple) -> Iterator[Event]:
        tid, task, attempt = w.job
        if msg[0] == "item":
            yield Event(tid, "item", msg[1], msg[2])
        elif msg[0] == "done":
            w.job = None
            yield Event(tid, "done")
        else:
            w.job = None
            yield self._again(tid, task, attempt, msg[1])

    def _lost(self, w: _Worker, why: str) -> Iterator[Event]:
        tid, task, attempt = w.job
        self.workers.remove(w)
        w.conn.close()
        yield self._again(tid, task, attempt, why)

    def _again(self, tid: int, task: Task, attempt: int, error: str) -> Event:
        """Queue a task once more, or report it failed after ``retries`` tries."""
        if attempt < self.retries:
            self.queue.appendleft((tid, task, attempt + 1))
            return Event(tid, "retry", error=error)
        return Event(tid, "failed", error=error)

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self.workers:
            w.proc.join(timeout=0 if w.job else 5)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(5)
        self.workers.clear()
        self.queue.clear()
