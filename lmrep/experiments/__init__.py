"""The page's language results as experiments that measure rates (``lmrep reproduce``).

Each experiment is a module with ``NAME``, ``ABOUT``, ``TITLE`` and four functions:

    plan(cfg, pool, done) -> stages      the independent tasks that make its items (``engine``); ``execute`` runs
                                         them on an executor and writes one JSON line per finished item to
                                         items.jsonl (an interrupted run resumes)
    summarize(items) -> summary          the numbers the report shows (written to summary.json)
    draw(run_dir, summary, items)        the figures
    markdown(config, items, summary)     the report's sections after its header

``Experiment.report`` puts them together the same way for every experiment, from the run folder's JSON alone, so
``lmrep report`` can rebuild a report without a model.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..errors import LmrepError
from ..models.load import check_model, resolve_device
from ..records.folder import RunDir, write_atomic
from ..records.inputs import md_code, md_link
from . import grid
from .config import ReproduceConfig
from .engine import RETRIES, Inline, ItemsFailed, Job, execute
from .items import ItemLog
from .pool import ModelPool
from .reporting import header, load_run, table

EXECUTORS = ("local", "ray")

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

    def job(self, run_dir: RunDir, cfg, pool: ModelPool) -> Job:
        """This experiment's plan for ``run_dir`` (``pool`` answers the planner's questions: layers, lengths)."""
        log = ItemLog(run_dir)
        return Job(self.name, log, self.module.plan(cfg, pool, log.done))

    def report(self, run_dir: RunDir) -> str:
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


def check(cfg: ReproduceConfig, exps: list[Experiment]) -> None:
    """Every argument of a run, checked before its folder is touched or any model is loaded: the device, the
    models (cheaply: see models.check_model) and options that no experiment of the run would use."""
    resolve_device(cfg.device)
    if cfg.extra_models and not any(getattr(e.module, "EXTRA_MODELS", False) for e in exps):
        raise LmrepError(f"--also does nothing for {', '.join(e.name for e in exps)}: only "
                         f"{', '.join(n for n, e in experiments().items() if getattr(e.module, 'EXTRA_MODELS', 0))} "
                         "runs more models; leave it out")
    for flag, value, attr in (("--steps", cfg.steps, "STEPS"), ("--layers", cfg.layers, "LAYERS")):
        users = [n for n, e in experiments().items() if getattr(e.module, attr, False)]
        if value and not any(e.name in users for e in exps):
            raise LmrepError(f"{flag} does nothing for {', '.join(e.name for e in exps)}: only {', '.join(users)} "
                             "use it; leave it out")
    for name in dict.fromkeys((cfg.model, *cfg.extra_models)):
        check_model(name)


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


def run_jobs(jobs: list[Job], executor, progress: bool = True, desc: str = "items") -> None:
    """Execute the jobs; raise ItemsFailed (after everything else finished) if some items failed for good."""
    outcome = execute(jobs, executor, progress, desc)
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
    try:
        run_jobs([exp.job(run_dir, cfg, pool or ModelPool("cpu"))], executor, progress, exp.name)
    except ItemsFailed:
        if ItemLog(run_dir).done:
            exp.report(run_dir)  # what finished is reported; the failures are said and can be rerun
        raise
    exp.report(run_dir)
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
    try:
        run_jobs(jobs, executor or make_executor(device=cfg.device, pool=pool), progress, "all")
    except ItemsFailed:
        report_runs(list(runs.values()), top / "report.md")
        raise
    report_runs(list(runs.values()), top / "report.md")
    return top


def report_runs(run_dirs: list[RunDir], combined) -> None:
    """Rebuild the report of each run that has items, and one combined report of them."""
    done = [d for d in run_dirs if ItemLog(d).done]
    for d in done:
        rebuild(d)
    if done:
        combine(done, combined)


def combine(run_dirs: list[RunDir], path) -> str:
    """One markdown file with every run's report, figure links made relative to ``path``'s folder (a run of a
    command that writes no report.md gets a section of its config, summary and figures)."""
    base = Path(path).resolve().parent
    run_dirs = [sub for d in run_dirs for sub in _runs_in(d)]
    parts = ["# Reproducing the page's language results\n",
             "Runs in this report: " + ", ".join(md_code(_title(d)) for d in run_dirs) + ".\n"]
    texts, claims = [], []
    for d in run_dirs:
        text = (d / "report.md").read_text() if (d / "report.md").exists() else _section(d)
        rel = Path(os.path.relpath(d.path.resolve(), base))
        text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({md_link((rel / m.group(1)).as_posix())})", text)
        texts.append(_demote(text))
        claims += _claim_rows(d, text)
    if claims:
        parts.append("## Every claim of the page in one table\n\nVerdicts as defined in docs/reproduce.md (holds / "
                     "does not hold / not decided); each row's figure is its experiment's headline figure.\n\n"
                     + table(["experiment", "setting", "the page says", "measured", "verdict", "figure"], claims))
    parts += texts
    combined = "\n".join(parts)
    write_atomic(path, combined)
    return combined


def _claim_rows(run_dir: RunDir, report: str) -> list[list[str]]:
    """The claims of an experiment's run as rows of the combined table (none for other runs)."""
    config = run_dir.config()
    name = config.get("experiment")
    if name not in experiments() or not (run_dir / "summary.json").exists():
        return []
    summary = json.loads((run_dir / "summary.json").read_text())
    figures = re.findall(r"\]\(([^)]+\.png)\)", report)
    link = f"[{Path(figures[0]).name}]({figures[0]})" if figures else "-"
    return [[name, config.get("setting", "-"), c.page, c.measured, c.verdict, link]
            for c in get(name).module.claims(summary)]


def _title(run_dir: RunDir) -> str:
    cfg = run_dir.config()
    return cfg["experiment"] if cfg.get("experiment") else f"{cfg['command']} {run_dir.path.name}"


def _section(run_dir: RunDir) -> str:
    """A run without a report of its own: its config, summary.json and figures."""
    cfg = run_dir.config()
    summary = (run_dir / "summary.json").read_text() if (run_dir / "summary.json").exists() else "{}"
    shown = {k: v for k, v in cfg.items() if k not in ("prompts", "command")}
    figs = [p for p in run_dir.files() if p.endswith(".png")]
    return "\n".join([f"# {cfg['command']} run {md_code(run_dir.path.name)}", "",
                      f"- config: {md_code(json.dumps(shown)[:400])}", "", "```json", summary.strip(), "```", "",
                      *[f"![{md_link(p)}]({md_link(p)})\n" for p in figs]])


def _demote(markdown: str) -> str:
    """Every heading one level down, so each experiment is a section of the combined report."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


FOLDERS_OF_RUNS = ("all", "sweep")  # a reproduce-all folder, a sweep's folder


def _name(run_dir: RunDir) -> str:
    """The experiment (or grid) a run folder holds; 'all' and 'sweep' for folders of runs."""
    config = run_dir.config()
    name = config.get("experiment") or ("sweep" if config.get("command") == "sweep" else None)
    if not isinstance(name, str):
        raise LmrepError(f"'{run_dir / 'config.json'}' names no experiment: not a folder written by lmrep reproduce")
    return name


def kind(name: str) -> Experiment:
    """The experiment or grid a run folder's config names."""
    if name == grid.NAME:
        return Experiment(grid)
    return get(name)


def _runs_in(run_dir: RunDir) -> list[RunDir]:
    """A folder of runs (reproduce all, a sweep) as its runs in the report's order; any other run as itself."""
    try:
        name = _name(run_dir)
    except LmrepError:
        return [run_dir]  # a run of a command that is not an experiment (invert, walk, ...)
    if name not in FOLDERS_OF_RUNS:
        return [run_dir]
    order = list(experiments())
    return sorted((RunDir(c.parent) for c in run_dir.path.glob("*/config.json")),
                  key=lambda d: order.index(_name(d)) if _name(d) in order else len(order))


def rebuild(run_dir: RunDir) -> str:
    """Rebuild a reproduce or sweep run folder's summary, figures and report.md from its JSON alone (no model is
    loaded)."""
    name = _name(run_dir)
    if name not in FOLDERS_OF_RUNS:
        return kind(name).report(run_dir)
    subs = _runs_in(run_dir)
    if not subs:
        raise LmrepError(f"'{run_dir.path}' holds no experiment's folder yet: nothing to report")
    for d in subs:
        rebuild(d)
    return combine(subs, run_dir / "report.md")


def reporters() -> dict[str, Callable[[RunDir], object]]:
    """How each kind of run folder is rebuilt from its files alone, by the "command" its config.json names;
    ``reproduce-<experiment>`` folders are the experiments' (``rebuild``). Add a kind here."""
    from ..inversion.report import report as invert_report
    from ..vision.features import report as features_report
    from ..vision.reconstruct import report as reconstruct_report
    from ..walks.report import report as walk_report
    return {"invert": invert_report, "walk": walk_report, "features": features_report,
            "reconstruct-image": reconstruct_report}


def reporter(run_dir: RunDir) -> Callable[[RunDir], object]:
    """The function that rebuilds this run folder, once it is checked to be a run of a kind lmrep knows (one line
    if it is not: no folder, no or a damaged config.json, an unknown kind)."""
    if not run_dir.path.is_dir():
        raise LmrepError(f"run folder '{run_dir.path}' not found: give a folder an lmrep command wrote")
    if not (run_dir / "config.json").exists():
        raise LmrepError(f"'{run_dir.path}' is not a run folder (no config.json): give a folder an lmrep command "
                         "wrote")
    command = run_dir.config()["command"]
    if command.startswith(("reproduce-", "sweep")):
        return rebuild
    known = reporters()
    if command not in known:
        raise LmrepError(f"'{run_dir.path}' holds a run of kind '{command}', which lmrep report does not know: "
                         f"it rebuilds {', '.join(known)}, reproduce and sweep runs")
    return known[command]


def rebuild_any(run_dir: RunDir) -> None:
    """Rebuild any lmrep run folder's summary and figures (and report.md for experiments) from its files alone;
    files that are incomplete or from another version give one line."""
    build = reporter(run_dir)
    try:
        build(run_dir)
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
        raise LmrepError(f"cannot rebuild '{run_dir.path}': its files are incomplete or from another version "
                         f"({type(e).__name__}: {str(e)[:80]})") from None
