"""An inversion grid (``lmrep sweep``'s ``[grid]``): models x layers x methods x option values x seeds x prompts.

Every cell inverts every prompt; an item per (cell, seed, prompt), keyed like the experiments' items
(``model | layer k | method [| option=value...] | seed=s | prompt``). The report gives each cell's rates (mean ±
standard error over prompts and seeds) and token accuracy against depth, one line per model, method and option
values. Unlike the page's experiments a grid makes no claims of its own: it measures.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from typing import Mapping

from ..inversion.config import InvertConfig
from ..records.folder import RunDir
from ..records.health import counts_text
from ..records.stats import fmt, group_stats
from . import figures
from ..engine import Plan
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool
from .reporting import markdown_table

NAME = "grid"
ABOUT = "an inversion grid: models x layers x methods x option values x seeds x prompts"
TITLE = "Inversion grid"
FIELDS = ("token_accuracy", "exact_match", "within_threshold", "next_token_match")


@dataclass
class GridConfig:
    """One grid, resolved (every model's layers as numbers, seeds as a list); its dict is the run's config.json."""

    models: list[dict]  # {name, untrained, layers}
    prompts: list[str]
    methods: list[str] = field(default_factory=lambda: ["gd"])
    head: str = "none"
    seeds: list[int] = field(default_factory=lambda: [0])
    options: dict = field(default_factory=dict)  # InvertConfig fields; a list value is one more axis of the grid
    device: str = "cpu"
    experiment: str = NAME

    def to_dict(self) -> dict:
        return asdict(self)

    def variants(self) -> list[dict]:
        """Every combination of the option values given as lists (one empty variant when none is)."""
        axes = {k: v for k, v in self.options.items() if isinstance(v, list)}
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    def invert_config(self, method: str, seed: int, variant: dict) -> InvertConfig:
        fixed = {k: v for k, v in self.options.items() if not isinstance(v, list)}
        return InvertConfig(**{**fixed, **variant, "method": method, "seed": seed})


def model_label(m: dict) -> str:
    return m["name"] + (" untrained" if m["untrained"] else "")


def plan(cfg: GridConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every cell and seed, its prompts inverted as batches."""
    tasks = []
    for m in cfg.models:
        for k in m["layers"]:
            for method in cfg.methods:
                for variant in cfg.variants():
                    cond = " | ".join([model_label(m), f"layer {k}", method, *(f"{a}={v}" for a, v in variant.items())])
                    tags = dict(label=model_label(m), depth=k, method=method, variant=variant or None)
                    for seed in cfg.seeds:
                        tasks += invert_tasks(cond, TargetSpec(m["name"], m["untrained"], k, cfg.head), cfg.prompts,
                                              cfg.invert_config(method, seed, variant), tags, keep_curve=False)
    yield tasks


def _series(r: dict) -> str:
    variant = r.get("variant") or {}
    return ", ".join([r["label"], r["method"], *(f"{a}={v}" for a, v in variant.items())])


def summarize(items: list[dict]) -> dict:
    """Each cell's rates: what summary.json holds."""
    rows = group_stats([dict(r, series=_series(r)) for r in items], ("series", "depth"), FIELDS)
    return dict(cells=rows)


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """grid.png: token accuracy against depth, one line per model, method and option values."""
    series: dict[str, tuple[list, list]] = {}
    for r in summary["cells"]:
        xs, ys = series.setdefault(r["series"], ([], []))
        xs.append(r["depth"])
        ys.append(r["token_accuracy"])
    figures.lines(series, run_dir / "grid.png", "Token accuracy per layer", "layer (blocks run)",
                  "token accuracy (mean ± sem)")


def header(config: dict, items: list[dict]) -> str:
    """Title and what the grid covers."""
    models = ", ".join(f"{model_label(m)} (layers {', '.join(map(str, m['layers']))})" for m in config["models"])
    return "\n".join([f"# {TITLE}", "", f"- models: {models}", f"- methods: {', '.join(config['methods'])}; "
                      f"head {config['head']}; options {config['options'] or 'defaults'}",
                      f"- {len(config['prompts'])} prompt(s) x {len(config['seeds'])} seed(s); {len(items)} item(s); "
                      f"device {config['device']}", ""])


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rows = [[r["series"], r["depth"], counts_text(r.get("health")), *(fmt(r[f]) for f in FIELDS)]
            for r in summary["cells"]]
    return ["![token accuracy per layer](grid.png)\n",
            "## Per cell\n", markdown_table(["model, method, options", "layer", "runs", "token accuracy", "exact match",
                                    "m_g < m (eq. 4)", "next token kept"], rows)]
