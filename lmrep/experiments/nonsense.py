"""Nonsense into sense: inputs unlike the prompt whose next-token prediction equals the prompt's.

For "The sky is" (-> " blue") and other prompts, two ways to find such inputs for the first k blocks + LM head:
gradient descent on the embedding + pseudo-inverse (the page's way: match the whole output, then decode), and a
discrete search over real tokens (GCG-style swaps, scored exactly) aiming at the next token directly. For each input
found: is the target's next token kept, how much of the prompt it shares (same token at the same position, and
token-set overlap), and how fluent it is (perplexity of its text under the trained model, next to the prompt's own).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Mapping

import torch

from ..errors import LmrepError
from ..models.layers import LayerModel
from ..models.load import LoadedModel
from ..records.folder import RunDir
from ..records.health import counts, counts_text, healthy
from ..records.stats import fmt, group_stats, mean_sem
from . import figures
from .config import ReproduceConfig
from ..engine import Plan, Task, item_id
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool
from .reporting import Claim, claims_of, claims_table, figure, quote, markdown_table
from .tuning import tunable
from .verdicts import decide_all
from .swap_search import SwapSearchConfig, next_logits, search

NAME = "nonsense"
ABOUT = "inputs unlike the prompt with the same next token: gradient descent + pinv vs a discrete swap search"
TITLE = "Nonsense into sense"
SKY = "The sky is"  # the page's example (-> " blue")
QUICK_STEPS, QUICK_ROUNDS, FULL_ROUNDS = 100, 30, 500  # swap rounds: the search's budget
FIELDS = ("kept", "overlap", "jaccard", "log10_ppl", "log10_ppl_prompt", "forward_passes", "seconds")


@dataclass(frozen=True)
class NonsenseCase:
    """One target the experiment inverts."""

    label: str
    model: str
    trained: bool
    depth: int


def conditions(cfg: ReproduceConfig, n_trained_layers: int) -> list[NonsenseCase]:
    """The page's untrained GPT-2 with one block + head, and the trained model (whole, in the quick profile)."""
    depths = {False: (1,) if cfg.quick else (1, 2, 12),
              True: (n_trained_layers,) if cfg.quick else (1, 2, n_trained_layers)}
    out = []
    for model, trained in (("gpt2", False), (cfg.model, True)):
        for k in depths[trained]:
            out.append(NonsenseCase(f"{model}{'' if trained else ' untrained'}, {k} block{'s' * (k > 1)} + head",
                                 model, trained, k))
    return out


def head_for(setting_head: str, depth: int, n_layers: int) -> str:
    """The whole model predicts with its final norm (its real next token); truncated ones follow the setting."""
    return "logits" if depth == n_layers else setting_head


@tunable
def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: per (target, seed), gradient descent on the prompts as batches and a swap search per prompt."""
    setting = cfg.get_setting()
    n_layers = pool.n_layers(cfg.model)
    prompts = [SKY] if cfg.quick else list(dict.fromkeys([SKY, *cfg.prompts]))
    rounds = QUICK_ROUNDS if cfg.quick else FULL_ROUNDS
    tasks = []
    for cond in conditions(cfg, n_layers):
        whole = pool.n_layers(cond.model, untrained=not cond.trained)
        spec = TargetSpec(cond.model, not cond.trained, cond.depth, head_for(setting.head, cond.depth, whole))
        tags = dict(label=cond.label, depth=cond.depth, setting=setting.name)
        for seed in range(cfg.seeds):
            steps = cfg.steps_for(cond.trained, QUICK_STEPS)
            tasks += invert_tasks(f"{cond.label} | gd+pinv", spec, prompts, setting.invert_config(steps, seed),
                                  dict(tags, method="gd+pinv"), post=partial(_measure_gd, judge=cfg.model))
            condition = f"{cond.label} | swap search"
            tasks += [Task(solve_swap, (condition, spec, cfg.model, tags, seed, rounds),
                           (item_id(condition, f"seed={seed}", p),), (p,), affinity=cond.model) for p in prompts]
    yield tasks


def _measure_gd(pool: ModelPool, target: LayerModel, rec: dict, cfg, judge: str) -> dict:
    """Gradient descent's input found, measured like the swap search's (fluency under the judge model)."""
    return measure(target, pool.model(judge), rec["target_ids"], rec["recovered_ids"], rec)


def solve_swap(pool: ModelPool, prompts: list[str], condition: str, spec: TargetSpec, judge_name: str, tags: dict,
               seed: int, rounds: int):
    """The swap search on each prompt of one target, measured like gradient descent."""
    target, judge = spec.build(pool, prompts[0]), pool.model(judge_name)
    for prompt in prompts:
        start = time.perf_counter()
        ids = target.lm.encode(prompt)
        found = search(target, len(ids), predicted(target, ids), SwapSearchConfig(iterations=rounds, seed=seed))
        yield dict(condition=condition, seed=seed, **tags, method="swap search", prompt=prompt,
                   target_ids=ids, recovered_ids=found["ids"], recovered_text=target.lm.decode(found["ids"]),
                   rounds=found["rounds"], goal_logprob=found["goal_logprob"],
                   **measure(target, judge, ids, found["ids"]), forward_passes=found["forward_passes"],
                   seconds=time.perf_counter() - start)


@torch.no_grad()
def predicted(target: LayerModel, ids: list[int]) -> int:
    """The target's next token after ``ids``."""
    return int(next_logits(target, target.lm.embed(torch.tensor([ids], device=target.lm.device))).argmax())


def measure(target: LayerModel, judge: LoadedModel, ids: list[int], found: list[int], rec: dict | None = None
            ) -> dict:
    """Kept next token (under the target), overlap with the prompt, and perplexities under the judge model."""
    lm = target.lm
    goal, got = predicted(target, ids), predicted(target, found)
    out = dict(goal_token=lm.decode([goal]), found_token=lm.decode([got]), kept=goal == got,
               overlap=sum(a == b for a, b in zip(ids, found)) / len(ids),
               jaccard=len(set(ids) & set(found)) / len(set(ids) | set(found)),
               log10_ppl=log10_perplexity(judge, lm.decode(found)),
               log10_ppl_prompt=log10_perplexity(judge, lm.decode(ids)))
    if rec is not None:  # gradient descent: its cost in passes (a step is a forward and a backward)
        out["forward_passes"] = 2 * rec["steps"] + 1
    return out


@torch.no_grad()
def log10_perplexity(lm: LoadedModel, text: str) -> float | None:
    """log10 of the per-token perplexity of ``text`` under ``lm`` (tokens 2..T given the ones before)."""
    try:
        ids = lm.encode(text)
    except LmrepError:
        return None  # nothing but whitespace: no perplexity
    if len(ids) < 2:
        return None
    x = torch.tensor([ids], device=lm.device)
    logits = lm.model(input_ids=x).logits[0, :-1].double()  # (T-1, V)
    nll = torch.nn.functional.cross_entropy(logits, x[0, 1:])
    return float(nll) / math.log(10)


def summarize(items: list[dict]) -> dict:
    """Means and standard errors of the items, per condition: what summary.json holds."""
    ok = healthy(items)  # a run that diverged found nothing to judge
    for_ppl = [r for r in ok if r["log10_ppl"] is not None and r["log10_ppl_prompt"] is not None]
    pooled = {m: dict(kept=mean_sem(r["kept"] for r in ok if r["method"] == m),
                      overlap=mean_sem(r["overlap"] for r in ok if r["method"] == m),
                      health=counts(r for r in items if r["method"] == m),
                      ppl_gap=mean_sem(r["log10_ppl"] - r["log10_ppl_prompt"] for r in for_ppl if r["method"] == m))
              for m in dict.fromkeys(r["method"] for r in items)}
    return dict(conditions=group_stats(items, ("label", "method"), FIELDS), pooled=pooled,
                examples=[dict(label=r["label"], method=r["method"], prompt=r["prompt"], found=r["recovered_text"],
                               goal=r["goal_token"], got=r["found_token"]) for r in items if r["seed"] == 0],
                claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """nonsense.png: how often the inputs found keep the next token, per target and method."""
    rows = summary["conditions"]
    labels = list(dict.fromkeys(r["label"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["label"], r["method"]): r for r in rows}
    figures.grouped_bars(labels, {m: [by.get((lab, m), {}).get("kept") for lab in labels] for m in methods},
                         run_dir / "nonsense.png",
                         f"Next token kept by the inputs found (mean ± sem)\n{figures.who(items)}", "rate")


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rows = summary["conditions"]
    return [claims_table(claims(summary)),
            figure("nonsense.png", "how often the input found keeps the prompt's next token"),
            "## Per target and method\n",
            markdown_table(["target", "method", "runs", "next token kept", "same token, same place", "token-set overlap",
                   "log10 ppl (found)", "log10 ppl (prompt)", "forward passes", "seconds"],
                  [[r["label"], r["method"], counts_text(r.get("health")), *(fmt(r[f]) for f in FIELDS[:5]),
                    fmt(r["forward_passes"], 0), fmt(r["seconds"], 1)] for r in rows]),
            "## Inputs found (seed 0)\n",
            markdown_table(["target", "method", "prompt", "input found", "next token (prompt -> found)"],
                           [[e["label"], e["method"], quote(e["prompt"]), quote(e["found"]),
                             f"{quote(e['goal'])} -> {quote(e['got'])}"] for e in summary["examples"]])]


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)
