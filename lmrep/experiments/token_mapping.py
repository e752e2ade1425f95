"""Approximate token mapping: is the true token among the top k decoded tokens, if not the top one?

For the invertible FCNet, the non-invertible MLP (the page's [d, 4d, d] net) and one trained block without the head:
invert from noise (eq. 2), then rank every vocabulary entry per position under each decoder (pinv = eq. 3, the
L2-nearest and the cosine-nearest embedding row). The report shows the page's five top strings per target and how
often the true token is within the top k, per decoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..objective.names import DECODERS
from ..records.folder import RunDir
from ..records.stats import fmt, mean_sem
from . import figures
from .config import PAGE_PROMPT, ReproduceConfig
from ..engine import Plan
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool
from .reporting import Claim, claims_of, claims_table, figure, markdown_table
from .tuning import tunable
from .verdicts import decide_all
from .sentence_reconstruction import fcnet_prompts

NAME = "token-mapping"
ABOUT = "top-5 decoded strings per position, and how often the true token is within the top k per decoder"
TITLE = "Approximate token mapping"
KS = (1, 2, 5, 10, 100)
TOPK = 5
STEPS = True  # honours ReproduceConfig.steps
QUICK_STEPS = 80


@dataclass(frozen=True)
class MappingCase:
    """One target the experiment inverts."""

    label: str
    toy: str | None  # fcnet or mlp over the trained model's embeddings; None: one trained block, no head


CONDITIONS = (MappingCase("FCNet (invertible)", "fcnet"), MappingCase("MLP d-4d-d (non-invertible)", "mlp"),
              MappingCase("one trained block", None))


@tunable
def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every (target, seed); FCNet one prompt at a time (it is built per length), on each prompt's first
    tokens."""
    setting, lm = cfg.get_setting(), pool.model(cfg.model)
    short = fcnet_prompts(cfg.prompts, lm)
    tasks = []
    for cond in CONDITIONS:
        prompts = ([PAGE_PROMPT] if cfg.quick else short) if cond.toy == "fcnet" else list(cfg.prompts)
        for seed in range(cfg.seeds):
            inv = setting.invert_config(cfg.steps_for(cond.toy is None, QUICK_STEPS), seed,
                                        topk=TOPK)
            tasks += invert_tasks(cond.label, TargetSpec(cfg.model, toy=cond.toy), prompts, inv,
                                  dict(label=cond.label, setting=setting.name), one_length=cond.toy == "fcnet")
    yield tasks


def summarize(items: list[dict]) -> dict:
    """Means and standard errors of the items, per condition: what summary.json holds."""
    labels = list(dict.fromkeys(r["label"] for r in items))
    rates = [dict(label=lab, decoder=dec, **{f"top{k}": mean_sem(sum(x <= k for x in r["true_rank"][dec]) /
                                                                   len(r["true_rank"][dec])
                                                                   for r in items if r["label"] == lab)
                                              for k in KS})
             for lab in labels for dec in DECODERS]
    page = {r["label"]: r.get("topk_texts") for r in items if r["prompt"] == PAGE_PROMPT and r["seed"] == 0}
    return dict(rates=rates, page_prompt_top5=page, claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """token_mapping.png: how often the true token is within the top k, per target and decoder."""
    rates = summary["rates"]
    figures.lines({f"{r['label']}, {r['decoder']}": (list(KS), [r[f"top{k}"] for k in KS]) for r in rates},
                  run_dir / "token_mapping.png", f"True token within the top k decoded tokens\n{figures.who(items)}",
                  "k", "rate (mean ± sem)", logx=True,
                  kinds={f"{r['label']}, {r['decoder']}": (r["label"], r["decoder"], r["decoder"]) for r in rates})


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rates = summary["rates"]
    md = [claims_table(claims(summary)),
          figure("token_mapping.png", "how often the true token is within the top k, per target and decoder"),
          "## True token within the top k\n",
          markdown_table(["target", "decoder", *(f"top {k}" for k in KS)],
                [[r["label"], r["decoder"], *(fmt(r[f"top{k}"]) for k in KS)] for r in rates]),
          "## The five top strings for the page's prompt (pinv, seed 0)\n"]
    for label, texts in summary["page_prompt_top5"].items():
        md.append(f"**{label}**\n\n```\n" + "\n".join(texts or []) + "\n```\n")
    return md


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)
