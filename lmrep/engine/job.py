"""The one engine: every command plans independent tasks, an executor runs them, the driver alone writes items.

A ``Task`` is the natural unit of work of a command or an experiment (a batch of prompts that gradient descent
optimises together, one seed's panels of a feature grid, one prompt of a search, ...): a module-level
``solve(pool, units, *args)`` that yields one record per unit, and the item ids those records are stored under. An
experiment's tasks are plain data, so they travel to a worker process or a Ray node; a single command's tasks may
carry the model it loaded (they run here, on ``Inline``). A plan is a sequence of *stages* (lists of tasks); the
tasks of a stage are independent, and a later stage is planned only when the earlier ones are finished, so it may
use their items (the walks tune a learning rate first, then use it).

Executors (``Inline`` here; the experiments' worker processes and Ray) run tasks and report ``Event``s; ``execute``
appends each finished item to its run's items.jsonl as one whole line, after the tensors the record carries (its
``tensors`` field) are in the run's tensors.safetensors. A killed worker or driver loses at most the items in
flight, and an item that arrives twice (a retried task) is written once.
"""
from __future__ import annotations

import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Container, Iterable, Iterator

from .items import TENSOR_FIELD, ItemLog, MemoryLog, Progress

RETRIES = 2  # a task that fails (an exception, or its worker dies) is run again this many times before it counts


class ItemsFailed(Exception):
    """Some items failed for good (after their retries); everything else finished and was written."""


@dataclass(frozen=True)
class Task:
    """Items computed together: ``solve(pool, units, *args)`` yields one record per unit, stored under ``keys``."""

    solve: Callable[..., Iterable[dict]]  # a module-level function (it is sent to workers by reference)
    args: tuple
    keys: tuple[str, ...]
    units: tuple  # what each item is (a prompt, a (prompt, seed) pair, ...), in the order of keys
    affinity: str = ""  # tasks with the same affinity (e.g. the model they load) prefer the same worker

    def pending(self, done: Container[str]) -> "Task | None":
        """This task if any of its items is not in ``done`` (finished ids), else None.

        A task always runs whole, even when some of its items were written before (a worker or the driver was
        stopped mid-task): its batch is then the same as in an uninterrupted run, so are its numbers, and the
        items already written are not written again.
        """
        return self if any(k not in done for k in self.keys) else None

    def run(self, pool) -> Iterator[tuple[str, dict]]:
        """(item id, record) for each unit, as the solver yields them."""
        n = 0
        for rec in self.solve(pool, list(self.units), *self.args):
            if n == len(self.keys):
                raise RuntimeError(f"the solver yielded more records than its {len(self.keys)} items")
            yield self.keys[n], rec
            n += 1
        if n != len(self.keys):
            raise RuntimeError(f"the solver yielded {n} records for {len(self.keys)} items")


Plan = Iterator[list[Task]]  # stages; the generator may read the run's finished items between them


@dataclass
class Job:
    """One run folder's plan being executed."""

    name: str
    log: ItemLog | MemoryLog  # where finished items go: the run folder's items.jsonl, or memory (capture)
    stages: Plan
    on_item: Callable[[dict], None] | None = None  # sees each item's record as it is written
    inflight: int = 0
    planned: int = 0  # items planned so far (their place in the plan is their ``order``)
    order: dict = field(default_factory=dict)  # item id -> place in the plan (a command may give them all)
    failed: list = field(default_factory=list)  # (item ids, error) of tasks that failed for good


@dataclass
class Event:
    """What an executor reports about a task: an item finished, the task finished, was retried, or failed."""

    task: int
    kind: str  # item | done | retry | failed
    key: str | None = None
    record: dict | None = None
    error: str | None = None


@dataclass
class Outcome:
    """What a sweep left undone: per job, the items of tasks that failed for good and the first error."""

    failed: dict[str, list[str]]
    errors: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(self.failed.values())

    def message(self) -> str:
        n = sum(len(v) for v in self.failed.values())
        first = next(iter(self.errors.values()), "")
        return f"{n} item(s) failed (first error: {first.strip().splitlines()[-1] if first else '?'}); " \
               "rerun the same command to retry them"


def error_text(exc: BaseException) -> str:
    """An exception as the last lines of its traceback (what a worker sends back)."""
    return "".join(traceback.format_exception(exc)[-3:])


class Inline:
    """Runs tasks one after another in this process, on a given model pool (a single command, tests and the Python
    API). ``reraise``: a task's exception is raised as it is (a single command stops on it) instead of reported."""

    def __init__(self, pool=None, retries: int = RETRIES, reraise: bool = False):
        self.pool, self.retries, self.reraise = pool, retries, reraise
        self.queue: deque = deque()

    def submit(self, tid: int, task: Task) -> None:
        self.queue.append((tid, task, 0))

    def events(self) -> Iterator[Event]:
        tid, task, attempt = self.queue.popleft()
        try:
            for key, rec in task.run(self.pool):
                yield Event(tid, "item", key, rec)
        except Exception as e:  # noqa: BLE001 - a failed task is reported, the sweep goes on
            if self.reraise:
                raise
            if attempt < self.retries:
                self.queue.appendleft((tid, task, attempt + 1))
                yield Event(tid, "retry", error=error_text(e))
            else:
                yield Event(tid, "failed", error=error_text(e))
            return
        yield Event(tid, "done")

    def close(self) -> None:
        self.queue.clear()


def execute(jobs: list[Job], executor, progress: bool = True, desc: str = "items",
            on_event: Callable[[Event], None] | None = None) -> Outcome:
    """Run every job's plan on ``executor`` until all are finished; each item is written once, by this process.

    ``on_event`` sees every event after it is handled (tests use it to kill a worker mid-sweep).
    """
    tasks: dict[int, tuple[Job, Task]] = {}
    counter = iter(range(1 << 62))
    bar = Progress(desc, progress)

    def advance(job: Job) -> None:
        for stage in job.stages:
            keys = [k for t in stage for k in t.keys]
            for k in keys:
                job.order.setdefault(k, len(job.order))
            todo = [p for p in (t.pending(job.log.done) for t in stage) if p]
            if keys:  # an empty stage (everything finished) shows no bar
                bar.grow(len(keys), sum(k in job.log.done for k in keys))
            for t in todo:
                tid = next(counter)
                tasks[tid] = (job, t)
                executor.submit(tid, t)
            job.inflight = len(todo)
            if todo:
                return

    try:
        for job in jobs:
            advance(job)
        while any(j.inflight for j in jobs):
            for ev in executor.events():
                job, task = tasks[ev.task]
                _handle(ev, job, task, bar)
                if ev.kind in ("done", "failed"):
                    del tasks[ev.task]
                    job.inflight -= 1
                    if not job.inflight:
                        advance(job)
                if on_event:
                    on_event(ev)
    finally:
        executor.close()
        bar.close()
    return Outcome({j.name: [k for keys, _ in j.failed for k in keys] for j in jobs},
                   {j.name: j.failed[0][1] for j in jobs if j.failed})


def _handle(ev: Event, job: Job, task: Task, bar: Progress) -> None:
    if ev.kind == "item":
        if ev.key not in job.log.done:  # a retried task may send an item again: it is written once
            record = dict(ev.record, order=job.order[ev.key])
            job.log.attach(ev.key, record.pop(TENSOR_FIELD, None) or {})  # first: the line marks it finished
            job.log.add(ev.key, record)
            bar.step(ev.key)
            if job.on_item:
                job.on_item(job.log.done[ev.key])
    elif ev.kind == "retry":
        bar.retry(task.keys[0])
    elif ev.kind == "failed":
        missing = [k for k in task.keys if k not in job.log.done]
        job.failed.append((missing, ev.error or ""))
        bar.fail(len(missing), task.keys[0])


def run_here(job: Job, progress: bool = True, desc: str = "items") -> None:
    """A single command's job, run in this process (the inline executor): a task's error is raised as it is, so
    the command stops on it with what finished already written (rerunning it resumes)."""
    execute([job], Inline(reraise=True), progress, desc)
