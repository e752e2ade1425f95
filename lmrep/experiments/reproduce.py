"""Running experiments into run folders: one (``reproduce``), all of them (``reproduce_all``), and the one sequence
every run of jobs follows (``run_and_report``: run, record, report, re-raise)."""
from __future__ import annotations

from dataclasses import replace

from ..records.folder import RunDir
from .config import ReproduceConfig
from ..engine import ItemsFailed, Job, execute
from .executors import make_executor
from .pool import ModelPool
from .rebuild import report_runs
from .registry import check, experiments, get


def run_and_report(jobs: list[Job], executor, run_dirs: list[RunDir], combined=None, progress: bool = True,
                   desc: str = "items") -> None:
    """Execute the jobs (each item recorded as it finishes), then rebuild the report of every run that has items
    (and ``combined``, a path, of them all); raise ItemsFailed afterwards if some items failed for good, so what
    finished is reported and the failures can be rerun."""
    outcome = execute(jobs, executor, progress, desc)
    report_runs(run_dirs, combined)
    if not outcome.ok:
        raise ItemsFailed(outcome.message())


def reproduce(cfg: ReproduceConfig, out: str | None = None, progress: bool = True,
              pool: ModelPool | None = None, new: bool = False, executor=None) -> RunDir:
    """Run one experiment into its run folder (resuming what a previous run with the same config finished) and
    write its report; returns the run folder. ``new``: a fresh folder if ``out`` holds another configuration.
    ``executor``: default the local worker processes (this process when a ``pool`` is given)."""
    exp = get(cfg.experiment)
    cfg = cfg.resolved()
    check(cfg, [exp])
    run_dir = RunDir.create(f"reproduce-{exp.name}", cfg.to_dict(), out, new=new)
    executor = executor or make_executor(device=cfg.device, pool=pool)
    run_and_report([exp.job(run_dir, cfg, pool or ModelPool("cpu"))], executor, [run_dir], None, progress, exp.name)
    return run_dir


def reproduce_all(cfg: ReproduceConfig, out: str | None = None, progress: bool = True,
                  pool: ModelPool | None = None, new: bool = False, executor=None) -> RunDir:
    """Every experiment, each in a subfolder of one run folder, run together, plus a combined report.md."""
    cfg = cfg.resolved()
    check(cfg, list(experiments().values()))
    top = RunDir.create("reproduce-all", cfg.to_dict(), out, new=new)
    planner = pool or ModelPool("cpu")
    runs = {name: RunDir.create(f"reproduce-{name}", replace(cfg, experiment=name).to_dict(), top / name)
            for name in experiments()}
    jobs = [get(name).job(d, replace(cfg, experiment=name), planner) for name, d in runs.items()]
    run_and_report(jobs, executor or make_executor(device=cfg.device, pool=pool), list(runs.values()),
                   top / "report.md", progress, "all")
    return top
