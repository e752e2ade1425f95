"""Many run folders in one markdown file: each run's report (a section of config, summary and figures for a command
that writes none), with one table of every claim the experiments among them decide."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import LmrepError
from ..records.folder import RunDir, write_atomic
from ..records.inputs import md_code, md_link
from .registry import experiments, get
from .reporting import markdown_table

FOLDERS_OF_RUNS = ("all", "sweep")  # a reproduce-all folder, a sweep's folder


def combine(run_dirs: list[RunDir], path) -> str:
    """One markdown file with every run's report, figure links made relative to ``path``'s folder (a run of a
    command that writes no report.md gets a section of its config, summary and figures)."""
    base = Path(path).resolve().parent
    run_dirs = [sub for d in run_dirs for sub in runs_in(d)]
    labels = _labels(run_dirs)
    parts = ["# Reproducing the page's language results\n",
             "Runs in this report: " + ", ".join(md_code(label) for label in labels) + ".\n"]
    texts, claims = [], []
    for d, label in zip(run_dirs, labels):
        text = (d / "report.md").read_text() if (d / "report.md").exists() else _section(d)
        rel = Path(os.path.relpath(d.path.resolve(), base))
        text = re.sub(r"\]\(([^)/]+\.png)\)", lambda m: f"]({md_link((rel / m.group(1)).as_posix())})", text)
        if label != _title(d):  # two runs of one experiment: each section says which
            text = re.sub(r"^(#+ .*)$", lambda m: f"{m.group(1)}: {md_code(label)}", text, count=1, flags=re.M)
        texts.append(_demote(text))
        claims += [(ident, n, row + [md_code(_folder(d))]) for ident, n, row in _claim_rows(d, text)]
    if claims:
        kept, superseded = _most_items(claims)
        parts.append("## Every claim of the page in one table\n\nVerdicts as defined in docs/reproduce.md (holds / "
                     "does not hold / not decided); each row's figure is its experiment's headline figure, and its "
                     "run the folder it comes from. A claim decided in several runs of one setting shows the run "
                     "that decided it on the most items (pairs); rows on fewer stay in their run's section.\n\n"
                     + markdown_table(["experiment", "setting", "the page says", "measured", "verdict", "figure",
                                       "run"], kept)
                     + ("".join(f"\nLeft out of the table, decided on more items elsewhere: {run}, {k} claim(s) "
                                f"(n = {lo if lo == hi else f'{lo}-{hi}'})." for run, (k, lo, hi) in superseded.items())
                        + "\n" if superseded else ""))
    parts += texts
    combined = "\n".join(parts)
    write_atomic(path, combined)
    return combined


def _most_items(claims: list[tuple[tuple, int, list[str]]]) -> tuple[list[list[str]], dict[str, tuple]]:
    """(identity, n, row) per claim and run -> the rows of the runs with the most items for each identity (ties
    all stay), in the order identities first appear; and per run left out: (claims, least n, most n)."""
    most = {}
    for ident, n, _ in claims:
        most[ident] = max(n, most.get(ident, n))
    kept = [row for ident in most for i, n, row in claims if i == ident and n == most[ident]]
    superseded = {}
    for ident, n, row in claims:
        if n < most[ident]:
            k, lo, hi = superseded.get(row[-1], (0, n, n))
            superseded[row[-1]] = (k + 1, min(lo, n), max(hi, n))
    return kept, superseded


def _claim_rows(run_dir: RunDir, report: str) -> list[tuple[tuple, int, list[str]]]:
    """The claims of an experiment's run as (identity: experiment, setting, claim; n; row of the combined table)
    (none for other runs)."""
    config = run_dir.config()
    name = config.get("experiment")
    if name not in experiments(audits=True) or not (run_dir / "summary.json").exists():
        return []
    summary = json.loads((run_dir / "summary.json").read_text())
    figures = re.findall(r"\]\(([^)]+\.png)\)", report)
    link = f"[{Path(figures[0]).name}]({figures[0]})" if figures else "-"
    setting = config.get("setting", "-")
    decided = {c["page"]: (c.get("key", c["page"]), c.get("n", 0)) for c in summary.get("claims", [])}
    rows = []
    for c in get(name).module.claims(summary):
        key, n = decided.get(c.page, (c.page, 0))
        rows.append(((name, setting, key), n, [name, setting, c.page, c.measured, c.verdict, link]))
    return rows


def _title(run_dir: RunDir) -> str:
    cfg = run_dir.config()
    return cfg["experiment"] if cfg.get("experiment") else f"{cfg['command']} {run_dir.path.name}"


def _labels(run_dirs: list[RunDir]) -> list[str]:
    """What names each run in the report: its title, or where two runs share one, its folder and the folder's
    parent (``cpu/threshold``, ``decisive/threshold``)."""
    titles = [_title(d) for d in run_dirs]
    return [t if titles.count(t) == 1 else _folder(d) for d, t in zip(run_dirs, titles)]


def _folder(run_dir: RunDir) -> str:
    """A run's folder with its parent's name: what tells runs of one experiment apart."""
    return f"{run_dir.path.parent.name}/{run_dir.path.name}"


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


def experiment_name(run_dir: RunDir) -> str:
    """The experiment (or grid) a run folder holds; 'all' and 'sweep' for folders of runs."""
    config = run_dir.config()
    name = config.get("experiment") or ("sweep" if config.get("command") == "sweep" else None)
    if not isinstance(name, str):
        raise LmrepError(f"'{run_dir / 'config.json'}' names no experiment: not a folder written by lmrep reproduce")
    return name


def runs_in(run_dir: RunDir) -> list[RunDir]:
    """A folder of runs (reproduce all, a sweep) as its runs in the report's order; any other run as itself."""
    try:
        name = experiment_name(run_dir)
    except LmrepError:
        return [run_dir]  # a run of a command that is not an experiment (invert, walk, ...)
    if name not in FOLDERS_OF_RUNS:
        return [run_dir]
    order = list(experiments(audits=True))
    return sorted((RunDir(c.parent) for c in run_dir.path.glob("*/config.json")),
                  key=lambda d: order.index(experiment_name(d)) if experiment_name(d) in order else len(order))
