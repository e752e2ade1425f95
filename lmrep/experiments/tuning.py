"""The tuned setting: the step size chosen the way the page says ("careful tuning of eta"), per condition.

Under a setting with ``tuned=True`` an experiment's plan runs in two stages. First, for every gradient-descent
condition it plans (a model, its depth and head, with the setting's init, loss and N), each candidate of ``GRID``
(plain steps and Adam, a few step sizes, the page's linear schedule or a constant one; the scripts' own first)
inverts the tuning prompts (``data/tuning.txt``, never evaluated) in one batch, seed 0. The candidate with the
lowest median best loss wins (a diverged run counts as an infinite loss; ties go to the earlier candidate). Then the
plan's own tasks run with the winner, and every item says what was chosen (``tuned_*`` fields) and each
candidate's median. The toy nets (built per input length) and the exact search are not tuned.

Tuning items are marked ``tuning=True``; reports leave them out (``reporting.load_run``).
"""
from __future__ import annotations

import functools
import json
import math
import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from ..inversion.config import GRADIENT
from ..records.health import health_of
from .config import read_prompt_file
from ..engine import Plan, Task
from .inversion import invert_tasks, solve_invert

TUNING_FILE = Path(__file__).resolve().parent.parent / "data" / "tuning.txt"


@dataclass(frozen=True)
class Candidate:
    """One optimiser setting the tuning tries."""

    optimizer: str
    lr: float
    schedule: str

    @property
    def tag(self) -> str:
        return f"{self.optimizer} lr={self.lr:g} {self.schedule}"


GRID = (Candidate("sgd", 0.2, "linear"),  # the scripts' own (lr 2 on 0.1 * L1), the page's plain decaying steps
        Candidate("sgd", 0.02, "linear"), Candidate("sgd", 2.0, "linear"), Candidate("sgd", 0.2, "constant"),
        Candidate("adam", 0.01, "linear"), Candidate("adam", 0.1, "linear"))


def tuning_prompts() -> list[str]:
    """The prompts step sizes are chosen on."""
    return read_prompt_file(TUNING_FILE)


def _key(task: Task) -> str | None:
    """What a gradient-descent task's tuning depends on (its target and every option but seed and display); None
    for tasks that are not tuned."""
    if task.solve is not solve_invert:
        return None
    _, spec, cfg, *_ = task.args
    if cfg.method not in GRADIENT.values or spec.toy:
        return None
    opts = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "snapshots", "topk", "batch_size",
                                                                  "optimizer", "lr", "schedule")}
    return json.dumps([repr(spec), opts], sort_keys=True)


def _tuning_tasks(task: Task, prompts: list[str]) -> dict[Candidate, list[Task]]:
    condition, spec, cfg, *_ = task.args
    base = replace(cfg, seed=0, snapshots=(), topk=1, batch_size=len(prompts))
    return {c: invert_tasks(f"tune | {condition} | {c.tag}", spec, prompts,
                            replace(base, optimizer=c.optimizer, lr=c.lr, schedule=c.schedule),
                            dict(tuning=True, candidate=c.tag), keep_curve=False) for c in GRID}


def median_best(items: list[dict]) -> float:
    """The median best loss of a candidate's runs; a run that diverged (or is missing) counts as infinite."""
    losses = [math.inf if health_of(r) == "diverged" or r.get("loss_best") is None else r["loss_best"]
              for r in items]
    return statistics.median(losses) if losses else math.inf


def choose(tasks: dict[Candidate, list[Task]], done: Mapping[str, dict]) -> tuple[Candidate, dict[str, float]]:
    """The candidate with the lowest median best loss, and every candidate's median."""
    medians = {c: median_best([done[k] for t in ts for k in t.keys if k in done]) for c, ts in tasks.items()}
    best = min(GRID, key=lambda c: (medians[c], GRID.index(c)))
    return best, {c.tag: medians[c] for c in GRID}


def _with(task: Task, cand: Candidate, medians: dict[str, float]) -> Task:
    condition, spec, cfg, extra, *rest = task.args
    tags = dict(extra, tuned_optimizer=cand.optimizer, tuned_lr=cand.lr, tuned_schedule=cand.schedule,
                tuning_medians={k: (None if math.isinf(v) else v) for k, v in medians.items()})
    cfg = replace(cfg, optimizer=cand.optimizer, lr=cand.lr, schedule=cand.schedule)
    return replace(task, args=(condition, spec, cfg, tags, *rest))


def tunable(plan: Callable[..., Plan]) -> Callable[..., Plan]:
    """An experiment's plan that, under a tuned setting, tunes each gradient-descent condition first."""
    @functools.wraps(plan)
    def planned(cfg, pool, done: Mapping[str, dict]) -> Plan:
        if not cfg.get_setting().tuned:
            yield from plan(cfg, pool, done)
            return
        prompts = tuning_prompts()
        for stage in plan(cfg, pool, done):
            firsts: dict[str, Task] = {}
            for t in stage:
                k = _key(t)
                if k is not None:
                    firsts.setdefault(k, t)
            grids = {k: _tuning_tasks(t, prompts) for k, t in firsts.items()}
            yield [t for g in grids.values() for ts in g.values() for t in ts]
            chosen = {k: choose(g, done) for k, g in grids.items()}
            yield [_with(t, *chosen[_key(t)]) if _key(t) in chosen else t for t in stage]
    return planned
