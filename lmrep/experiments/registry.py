"""The experiments by name: each is a module with ``NAME``, ``ABOUT``, ``TITLE`` and four functions,

    plan(cfg, pool, done) -> stages      the independent tasks that make its items (``engine``); ``execute`` runs
                                         them on an executor and writes one JSON line per finished item to
                                         items.jsonl (an interrupted run resumes)
    summarize(items) -> summary          the numbers the report shows (written to summary.json)
    draw(run_dir, summary, items)        the figures
    markdown(config, items, summary)     the report's sections after its header

and one row of ``MODULES`` (the page's experiments, which 'all' runs) or ``AUDITS`` (lmrep's own, run by name only):
its name and its module, so that a name is checked before any experiment, or torch, is imported. ``Experiment.write_report`` puts them together the same way for every experiment, from the
run folder's JSON alone, so ``lmrep report`` can rebuild a report without a model.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LmrepError
from ..records.folder import RunDir
from .config import ReproduceConfig
from ..engine import Job
from ..engine import ItemLog
from .reporting import header, load_run

if TYPE_CHECKING:
    from .pool import ModelPool

# one row per experiment, in the order the report presents them (depth's figure is the headline): its name (the
# module's NAME) and its module, one of this package by its name or any importable module by its dotted path
MODULES = {"depth": "depth", "sentence-reconstruction": "sentence_reconstruction", "threshold": "threshold",
           "nonsense": "nonsense", "token-mapping": "token_mapping", "walks": "walks",
           "vision-reconstruction": "vision_reconstruction", "vision-features": "vision_features"}
# experiments of lmrep's own, not of the page: run by name, never by 'all' (which is the page's experiments)
AUDITS = {"leakage": "leakage"}


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


def _load(name: str, mod: str) -> Experiment:
    exp = Experiment(importlib.import_module(mod if "." in mod else f"{__package__}.{mod}"))
    if exp.name != name:
        raise LmrepError(f"the experiments' table names module '{mod}' '{name}', but its NAME is '{exp.name}': "
                         "make the row's name the module's NAME")
    return exp


def experiments(audits: bool = False) -> dict[str, Experiment]:
    """The page's experiments (what 'all' runs), by name, in the order the combined report presents them; with
    ``audits``, lmrep's own experiments after them."""
    rows = {**MODULES, **AUDITS} if audits else MODULES
    return {name: _load(name, mod) for name, mod in rows.items()}


def _row(name: str) -> str:
    rows = {**MODULES, **AUDITS}
    if name not in rows:
        raise LmrepError(f"unknown experiment '{name}': choose one of {', '.join(rows)} (see lmrep reproduce "
                         "--list)")
    return rows[name]


def known(name: str, alone: bool = True) -> None:
    """Refuse an experiment name that no row names (nor 'all', where ``alone``), importing no experiment (nor
    torch)."""
    if not (alone and name == "all"):
        _row(name)


def get(name: str) -> Experiment:
    """The experiment called ``name``, or an error listing the known ones; only its own module is imported."""
    return _load(name, _row(name))


def planned(name: str) -> Experiment:
    """The experiment or grid a run folder's config names (the grid is planned like an experiment)."""
    from . import grid
    if name == grid.NAME:
        return Experiment(grid)
    return get(name)


def check(cfg: ReproduceConfig, exps: list[Experiment]) -> None:
    """Every argument of a run, checked before its folder is touched or any model is loaded: the device, the
    models (cheaply: see models.load.check_loadable) and options that no experiment of the run would use."""
    from ..models.load import check_loadable, resolve_device
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
