"""The "close enough" threshold of eq. 4, and how many steps it takes to get there.

m = ||O(e') - O(e)||_1 with e' = e + N(0, sigma) for sigma = 1/20 and the stricter 1/25; a reconstruction e_g
counts once m_g = ||O(e_g) - O(e)||_1 < m. For one block (the page's case) we count the steps until m_g < m:
trained vs untrained, with vs without the LM head, float32 vs float64, and the initial mix e0 = s*noise + t*e.
Runs that never get there within the budget are censored: their steps are reported as "> N".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..objective.batching import prompt_generator
from ..inversion.gd import threshold as eq4_threshold
from ..records.folder import RunDir
from ..records.health import counts, counts_text, healthy
from ..records.stats import fmt, mean_sem
from . import figures
from .config import ReproduceConfig
from ..engine import Plan
from .inversion import TargetSpec, first_below, invert_tasks
from .pool import ModelPool
from .reporting import Claim, claims_of, claims_table, figure, markdown_table
from .tuning import tunable
from .verdicts import decide_all

NAME = "threshold"
ABOUT = "eq. 4: steps until m_g < m; trained vs untrained, head vs none, float32 vs float64, init mix"
TITLE = "Threshold (eq. 4)"
SIGMA, SIGMA_STRICT = 1 / 20, 1 / 25
MIXES = ((0.001, 0.999), (1.0, 1.0), (1.0, 0.0))
STEPS = True  # honours ReproduceConfig.steps
QUICK_STEPS = 100
DEPTH = 1  # the page's one-block GPT-2


@dataclass(frozen=True)
class ThresholdCase:
    """One target the experiment inverts."""

    label: str
    trained: bool
    head: bool  # with the LM head (the setting says whether the final norm comes first)
    dtype: str = "float32"
    mix: tuple[float, float] | None = None  # e0 = s*N(0.5, 1/20) + t*e; None: the setting's own init


def conditions(cfg: ReproduceConfig) -> list[ThresholdCase]:
    """Trained/untrained x head/none, float64 copies, init mixes; the quick profile keeps what the claims need."""
    out = [ThresholdCase(f"{'trained' if tr else 'untrained'}, {'head' if h else 'no head'}", tr, h)
           for tr in (False, True) for h in (True, False) if tr or h or not cfg.quick]
    out += [ThresholdCase(f"{'trained' if tr else 'untrained'}, head, float64", tr, True, "float64")
            for tr in ((True,) if cfg.quick else (False, True))]  # a second model copy: the quick profile keeps one
    out += [ThresholdCase(f"trained, head, mix s={s:g} t={t:g}", True, True, mix=(s, t))
            for s, t in (MIXES[:2] if cfg.quick else MIXES)]
    return out


@tunable
def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every (condition, seed), its prompts inverted as batches."""
    setting = cfg.get_setting()
    prompts = list(cfg.prompts[:1] if cfg.quick else cfg.prompts)
    tasks = []
    for cond in conditions(cfg):
        for seed in range(cfg.seeds):
            steps = cfg.steps_for(cond.trained, QUICK_STEPS)
            kw = dict(init="mix", mix=cond.mix) if cond.mix else {}
            inv = setting.invert_config(steps, seed, sigma=SIGMA, **kw)
            head = setting.head if cond.head else "none"
            spec = TargetSpec(cfg.model if cond.trained else "gpt2", not cond.trained, DEPTH, head, cond.dtype)
            tags = dict(label=cond.label, trained=cond.trained, head=head, dtype=cond.dtype,
                        mix=list(cond.mix) if cond.mix else None, setting=setting.name, budget=steps)
            tasks += invert_tasks(cond.label, spec, prompts, inv, tags, post=crossings)
    yield tasks


@torch.no_grad()
def crossings(pool: ModelPool, target, rec: dict, cfg) -> dict:
    """The stricter threshold (the same noise direction, sigma 1/25) and the first step below each threshold."""
    lm, seed = target.lm, cfg.seed
    ids = torch.tensor([rec["target_ids"]], device=lm.device)  # (1, T)
    e, mask = lm.embed(ids), torch.ones_like(ids)  # (1, T, d), (1, T)
    strict = eq4_threshold(target, e, mask, target(e, mask), SIGMA_STRICT,
                           [prompt_generator(seed, rec["target_ids"], lm.device)]).item()
    curve = rec["loss_curve"]
    return dict(threshold_strict=strict, steps_to_m=first_below(curve, rec["threshold"]),
                steps_to_m_strict=first_below(curve, strict))


def _steps_stat(items: list[dict], key: str) -> dict:
    """Mean steps with runs that never got there counted at budget + 1 (so a lower bound when any is censored)."""
    if not items:
        return dict(mean_sem([]), censored=0, reached=mean_sem([]), budget=None)
    vals = [r[key] if r[key] is not None else r["budget"] + 1 for r in items]
    stat = mean_sem(vals)
    stat["censored"] = sum(r[key] is None for r in items)
    stat["reached"] = mean_sem(float(r[key] is not None) for r in items)
    stat["budget"] = max(r["budget"] for r in items)
    return stat


def summarize(items: list[dict]) -> dict:
    """Means and standard errors of the items, per condition: what summary.json holds."""
    groups: dict[str, list[dict]] = {}
    for r in items:
        groups.setdefault(r["label"], []).append(r)
    return dict(conditions=[_condition(lab, rs) for lab, rs in groups.items()], claims=decide_all(NAME, items))


def _condition(label: str, items: list[dict]) -> dict:
    """One condition's row: thresholds and steps over the runs that did not diverge, and the runs' health."""
    rs = healthy(items)
    return dict(label=label, items=len(items), health=counts(items), m=mean_sem(r["threshold"] for r in rs),
                m_strict=mean_sem(r["threshold_strict"] for r in rs),
                final_distance=mean_sem(r["output_distance"] for r in rs),
                steps=_steps_stat(rs, "steps_to_m"), steps_strict=_steps_stat(rs, "steps_to_m_strict"))


def _steps_text(stat: dict | None) -> str:
    if not stat:
        return "-"
    if not stat["n"]:
        return "- (no run that did not diverge)"
    if stat["censored"] == stat["n"]:
        return f"> {stat['budget']} (never within budget)"
    prefix = "≥ " if stat["censored"] else ""
    return f"{prefix}{fmt(stat, 1)} ({stat['censored']}/{stat['n']} never)"


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """threshold.png: steps until m_g < m per condition, for both thresholds."""
    rows = {r["label"]: r for r in summary["conditions"]}
    labels = list(rows)
    figures.grouped_bars(labels, {"sigma 1/20": [rows[lab]["steps"] for lab in labels],
                                  "sigma 1/25": [rows[lab]["steps_strict"] for lab in labels]},
                         run_dir / "threshold.png",
                         f"Steps until m_g < m (censored runs counted at budget + 1)\n{figures.who(items)}",
                         "steps (log)", logy=True)


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rows = {r["label"]: r for r in summary["conditions"]}
    return [claims_table(claims(summary)),
            figure("threshold.png", "steps until the reconstruction is closer than the shifted input"),
            "## Per condition (one block)\n",
            markdown_table(["condition", "runs", "m (1/20)", "m (1/25)", "steps to m", "steps to m (1/25)",
                   "best m_g"],
                  [[lab, counts_text(r.get("health")), fmt(r["m"], 4), fmt(r["m_strict"], 4), _steps_text(r["steps"]),
                  _steps_text(r["steps_strict"]), fmt(r["final_distance"], 4)] for lab, r in rows.items()])]


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)
