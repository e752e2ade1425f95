"""The experiments by name: each is a module with ``NAME``, ``ABOUT``, ``TITLE`` and four functions,

    plan(cfg, pool, done) -> stages      the independent tasks that make its items (``engine``); ``execute`` runs
                                         them on an executor and writes one JSON line per finished item to
                                         items.jsonl (an interrupted run resumes)
    summarize(items) -> summary          the numbers the report shows (written to summary.json)
    draw(run_dir, summary, items)        the figures
    markdown(config, items, summary)     the report's sections after its header

and one row of ``MODULES`` (the page's experiments, which 'all' runs) or ``AUDITS`` (lmrep's own, run by name only).
``Experiment.write_report`` puts them together the same way for every experiment, from the run folder's JSON alone,
so ``lmrep report`` can rebuild a report without a model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import LmrepError
from ..models.load import check_loadable, resolve_device
from ..records.folder import RunDir
from . import grid
from .config import ReproduceConfig
from ..engine import Job
from ..engine import ItemLog
from .pool import ModelPool
from .reporting import header, load_run

# one row per experiment, in the order the report presents them (depth's figure is the headline): a module of
# this package by its name, or any importable module by its dotted path
MODULES = ["depth", "sentence_reconstruction", "threshold", "nonsense", "token_mapping", "walks",
           "vision_reconstruction", "vision_features"]
# experiments of lmrep's own, not of the page: run by name, never by 'all' (which is the page's experiments)
AUDITS = ["leakage"]


@dataclass(frozen=True)
class Experiment:
    """An experiment's module: its name, description and title, and its run, summary, figure and markdown parts."""

    module: object

    @property
    def name(self) -> str:
        return self.module.NAME

    @property
    def about(self) -> str:
        return self.module.ABOUT

    def job(self, run_dir: RunDir, cfg, pool: ModelPool) -> Job:
        """This experiment's plan for ``run_dir`` (``pool`` answers the planner's questions: layers, lengths)."""
        log = ItemLog(run_dir)
        return Job(self.name, log, self.module.plan(cfg, pool, log.done))

    def write_report(self, run_dir: RunDir) -> str:
        """summary.json, the figures and report.md from the run folder's JSON alone; returns the markdown."""
        config, items = load_run(run_dir)
        if not items:
            raise LmrepError(f"'{run_dir.path}' has no finished item yet: nothing to report; rerun the same "
                             "lmrep reproduce command to resume it")
        summary = self.module.summarize(items)
        run_dir.write_json("summary.json", summary)
        self.module.draw(run_dir, summary, items)
        head = self.module.header(config, items) if hasattr(self.module, "header") else \
            header(self.module.TITLE, config, items)
        text = "\n".join([head, *self.module.markdown(config, items, summary)])
        run_dir.write_text("report.md", text)
        return text


def experiments(audits: bool = False) -> dict[str, Experiment]:
    """The page's experiments (what 'all' runs), by name, in the order the combined report presents them; with
    ``audits``, lmrep's own experiments after them."""
    rows = [*MODULES, *AUDITS] if audits else MODULES
    exps = [Experiment(importlib.import_module(mod if "." in mod else f"{__package__}.{mod}")) for mod in rows]
    return {e.name: e for e in exps}


def get(name: str) -> Experiment:
    """The experiment called ``name``, or an error listing the known ones."""
    known = experiments(audits=True)
    if name not in known:
        raise LmrepError(f"unknown experiment '{name}': choose one of {', '.join(known)} (see lmrep reproduce --list)")
    return known[name]


def planned(name: str) -> Experiment:
    """The experiment or grid a run folder's config names (the grid is planned like an experiment)."""
    if name == grid.NAME:
        return Experiment(grid)
    return get(name)


def check(cfg: ReproduceConfig, exps: list[Experiment]) -> None:
    """Every argument of a run, checked before its folder is touched or any model is loaded: the device, the
    models (cheaply: see models.load.check_loadable) and options that no experiment of the run would use."""
    resolve_device(cfg.device)
    known = experiments(audits=True)
    if cfg.extra_models and not any(getattr(e.module, "EXTRA_MODELS", False) for e in exps):
        raise LmrepError(f"--also does nothing for {', '.join(e.name for e in exps)}: only "
                         f"{', '.join(n for n, e in known.items() if getattr(e.module, 'EXTRA_MODELS', 0))} "
                         "runs more models; leave it out")
    for flag, value, attr in (("--steps", cfg.steps, "STEPS"), ("--layers", cfg.layers, "LAYERS")):
        users = [n for n, e in known.items() if getattr(e.module, attr, False)]
        if value and not any(e.name in users for e in exps):
            raise LmrepError(f"{flag} does nothing for {', '.join(e.name for e in exps)}: only {', '.join(users)} "
                             "use it; leave it out")
    for name in dict.fromkeys((cfg.model, *cfg.extra_models)):
        check_loadable(name)
