"""The page's language results as experiments that measure rates (``lmrep reproduce``).

Each experiment is a module with ``NAME``, ``ABOUT``, ``TITLE`` and four functions:

    run(run_dir, cfg, progress, pool)    one JSON line per finished item in items.jsonl (an interrupted run resumes)
    summarize(items) -> summary          the numbers the report shows (written to summary.json)
    draw(run_dir, summary, items)        the figures
    markdown(config, items, summary)     the report's sections after its header

``Experiment.report`` puts them together the same way for every experiment, from the run folder's JSON alone, so
``lmrep report`` can rebuild a report without a model.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import LmrepError
from ..runs import RunDir, write_atomic
from .config import ReproduceConfig
from .pool import ModelPool
from .reporting import header, load_run

# in the order the report presents them; depth's figure is the headline
MODULES = ("depth", "sentence_reconstruction", "threshold", "nonsense", "token_mapping", "walks")


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

    def run(self, run_dir: RunDir, cfg: ReproduceConfig, progress: bool = True,
            pool: ModelPool | None = None) -> None:
        self.module.run(run_dir, cfg, progress, pool or ModelPool(cfg.device))

    def report(self, run_dir: RunDir) -> str:
        """summary.json, the figures and report.md from the run folder's JSON alone; returns the markdown."""
        config, items = load_run(run_dir)
        summary = self.module.summarize(items)
        run_dir.write_json("summary.json", summary)
        self.module.draw(run_dir, summary, items)
        text = "\n".join([header(self.module.TITLE, config, items), *self.module.markdown(config, items, summary)])
        run_dir.write_text("report.md", text)
        return text


def experiments() -> dict[str, Experiment]:
    """Every experiment, by name, in the order the combined report presents them."""
    exps = [Experiment(importlib.import_module(f"{__name__}.{mod}")) for mod in MODULES]
    return {e.name: e for e in exps}


def get(name: str) -> Experiment:
    """The experiment called ``name``, or an error listing the known ones."""
    known = experiments()
    if name not in known:
        raise LmrepError(f"unknown experiment '{name}': choose one of {', '.join(known)} (see lmrep reproduce --list)")
    return known[name]


def reproduce(cfg: ReproduceConfig, out: str | None = None, progress: bool = True,
              pool: ModelPool | None = None) -> RunDir:
    """Run one experiment into its run folder (resuming what a previous run with the same config finished) and
    write its report; returns the run folder."""
    exp = get(cfg.experiment)
    cfg = cfg.resolved()
    run_dir = RunDir.create(f"reproduce-{exp.name}", cfg.to_dict(), out)
    exp.run(run_dir, cfg, progress, pool)
    exp.report(run_dir)
    return run_dir


def reproduce_all(cfg: ReproduceConfig, out: str | None = None, progress: bool = True,
                  pool: ModelPool | None = None) -> RunDir:
    """Every experiment, each in a subfolder of one run folder, plus a combined report.md naming each."""
    cfg = cfg.resolved()
    top = RunDir.create("reproduce-all", cfg.to_dict(), out)
    pool = pool or ModelPool(cfg.device)
    dirs = [reproduce(replace(cfg, experiment=name), top / name, progress, pool) for name in experiments()]
    combine(dirs, top / "report.md")
    return top


def combine(run_dirs: list[RunDir], path) -> str:
    """One markdown file with every run's report, figure links made relative to ``path``'s folder."""
    base = Path(path).resolve().parent
    parts = ["# Reproducing the page's language results\n",
             "Experiments in this report: " + ", ".join(f"`{_name(d)}`" for d in run_dirs) + ".\n"]
    for d in run_dirs:
        text = (d / "report.md").read_text()
        rel = Path(os.path.relpath(d.path.resolve(), base))
        text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({(rel / m.group(1)).as_posix()})", text)
        parts.append(_demote(text))
    combined = "\n".join(parts)
    write_atomic(path, combined)
    return combined


def _demote(markdown: str) -> str:
    """Every heading one level down, so each experiment is a section of the combined report."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def _name(run_dir: RunDir) -> str:
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise LmrepError(f"'{run_dir.path}' has no config.json: give a folder written by lmrep reproduce")
    return json.loads(cfg_path.read_text())["experiment"]


def rebuild(run_dir: RunDir) -> str:
    """Rebuild a run folder's summary, figures and report.md from its JSON alone (no model is loaded)."""
    name = _name(run_dir)
    if name != "all":
        return get(name).report(run_dir)
    order = list(experiments())
    subs = sorted((RunDir(c.parent) for c in run_dir.path.glob("*/config.json")),
                  key=lambda d: order.index(_name(d)) if _name(d) in order else len(order))
    for d in subs:
        rebuild(d)
    return combine(subs, run_dir / "report.md")
