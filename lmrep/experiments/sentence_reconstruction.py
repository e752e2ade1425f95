"""Sentence reconstruction (the page's "Sentence Reconstruction with Language Models").

Generate the input from noise by gradient descent on a target's output (eq. 2), decode it with the pseudo-inverse
(eq. 3), and measure how often the prompt comes back: for the invertible FCNet, its non-invertible variant, the
transformer-MLP mimic (all over the trained model's token embeddings), and the first k blocks of the untrained
GPT-2 and of the trained model, with and without the LM head. Decoded text is kept at the page's snapshots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..objective.names import DECODERS
from ..records.folder import RunDir
from ..records.health import counts_text
from ..records.stats import fmt, group_stats
from . import figures
from .config import PAGE_PROMPT, ReproduceConfig
from ..engine import Plan
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool, trained_gpt2_available
from .reporting import Claim, claims_of, claims_table, figure, quote, markdown_table
from .tuning import tunable
from .verdicts import decide_all

NAME = "sentence-reconstruction"
ABOUT = "toy nets and the first k blocks of GPT-2 / the trained model: is the prompt recovered from noise?"
TITLE = "Sentence reconstruction"
EXTRA_MODELS = True  # runs ReproduceConfig.extra_models (--also) next to the trained model
SNAPSHOTS = (20, 40, 45, 50, 60)  # the steps the page shows
FCNET_MAX_TOKENS = 8  # FCNet's weights grow as (4 T d)^2: 8 tokens of d = 576 is 1.4 GB already
STEPS = True  # honours ReproduceConfig.steps
QUICK_STEPS = 120
QUICK_CONDITIONS = {(False, 1, False), (False, 1, True), (False, 12, True), (True, 1, False)}  # trained, k, head
FIELDS = ("token_accuracy", "exact_match", "within_threshold", "next_token_match")
EXACT = tuple(f"exact_{d}" for d in DECODERS)  # exact recovery under each decoder


@dataclass(frozen=True)
class ReconstructionCase:
    """One target the experiment inverts."""

    label: str
    model: str
    trained: bool
    toy: str | None = None  # fcnet, fcnet-noninv, mlp; None: the first ``depth`` blocks of the model
    depth: int | None = None
    head: str = "none"


def conditions(cfg: ReproduceConfig) -> list[ReconstructionCase]:
    """The toy nets, then untrained GPT-2 and the trained model(s) at depths k, without and with the LM head."""
    head = cfg.get_setting().head
    out = [ReconstructionCase("FCNet (invertible)", cfg.model, True, "fcnet"),
           ReconstructionCase("FCNet, last layer T*d", cfg.model, True, "fcnet-noninv"),
           ReconstructionCase("MLP mimic d-4d-d", cfg.model, True, "mlp")]
    models = [("gpt2", False), (cfg.model, True), *[(m, True) for m in cfg.extra_models]]
    if not cfg.quick and trained_gpt2_available() and ("gpt2", True) not in models:
        models.append(("gpt2", True))
    for model, trained in models:
        for k in (1, 2, 12):
            for with_head in (False, True):
                if cfg.quick and (trained, k, with_head) not in QUICK_CONDITIONS:
                    continue
                name = f"{model}{'' if trained else ' untrained'}, {k} block{'s' * (k > 1)}"
                out.append(ReconstructionCase(name + (" + head" if with_head else ""), model, trained, None, k,
                                     head if with_head else "none"))
    return out


@tunable
def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every (target, seed); the toy nets one prompt at a time (FCNet is built per length)."""
    setting = cfg.get_setting()
    tasks = []
    for cond in conditions(cfg):
        prompts = _prompts_for(cond, cfg, pool)
        spec = TargetSpec(cond.model, not cond.trained, cond.depth or 0, cond.head, toy=cond.toy)
        for seed in range(cfg.seeds):
            steps = cfg.steps_for(cond.trained and cond.toy is None, QUICK_STEPS)
            inv = setting.invert_config(steps, seed, snapshots=SNAPSHOTS)
            tags = dict(label=cond.label, toy=cond.toy, depth=cond.depth, head=cond.head, setting=setting.name)
            tasks += invert_tasks(cond.label, spec, prompts, inv, tags, one_length=cond.toy is not None)
    yield tasks


def _prompts_for(cond: ReconstructionCase, cfg: ReproduceConfig, pool: ModelPool) -> list[str]:
    """FCNet is built per input length and grows fast with it: each prompt's first tokens (the page's prompt when
    quick)."""
    if cond.toy not in ("fcnet", "fcnet-noninv"):
        return list(cfg.prompts)
    if cfg.quick:
        return [PAGE_PROMPT]
    return fcnet_prompts(cfg.prompts, pool.model(cond.model))


def fcnet_prompts(prompts, lm) -> list[str]:
    """What FCNet inverts: each prompt cut to its first FCNET_MAX_TOKENS tokens (a short prompt as it is), the
    same cut once; a cut whose text encodes to more tokens than that again is left out."""
    cut = [lm.decode(lm.encode(p)[:FCNET_MAX_TOKENS]) for p in prompts]
    return [p for p in dict.fromkeys(cut) if len(lm.encode(p)) <= FCNET_MAX_TOKENS]


def decoder_exact(rec: dict) -> dict:
    """Exact recovery under each decoder, from the true tokens' ranks (rank 1 everywhere), and the pinv ceiling."""
    out = {f"exact_{dec}": all(r == 1 for r in ranks) for dec, ranks in (rec.get("true_rank") or {}).items()}
    return dict(out, pinv_ceiling=(rec.get("decoder_ceiling") or {}).get("pinv"))


def summarize(items: list[dict]) -> dict:
    """Means and standard errors of the items, per condition: what summary.json holds."""
    rows = group_stats([{**r, **decoder_exact(r)} for r in items], ("label",), FIELDS + EXACT + ("pinv_ceiling",))
    page = [r for r in items if r["prompt"] == PAGE_PROMPT and r["seed"] == 0]
    return dict(conditions=rows, page_prompt={r["label"]: dict(snapshots=r.get("snapshots"),
                                                               recovered=r["recovered_text"]) for r in page},
                claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """reconstruction.png: token accuracy and exact match per target."""
    rows = {r["label"]: r for r in summary["conditions"]}
    labels = list(rows)
    figures.grouped_bars(labels, {f: [rows[lab][f] for lab in labels] for f in ("token_accuracy", "exact_match")},
                         run_dir / "reconstruction.png",
                         f"Sentence reconstruction: rate per target (mean ± sem)\n{figures.who(items)}", "rate")


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    rows = {r["label"]: r for r in summary["conditions"]}
    md = [claims_table(claims(summary)),
          figure("reconstruction.png", "token accuracy and exact-match rate per target"),
          "## Rates per target\n",
          markdown_table(["target", "runs", "token accuracy", "exact match", "m_g < m (eq. 4)", "next token kept",
                 *(f"exact ({d})" for d in DECODERS), "pinv on the true e"],
                [[lab, counts_text(r.get("health")), *(fmt(r[f]) for f in FIELDS + EXACT + ("pinv_ceiling",))]
                 for lab, r in rows.items()]),
          "Exact match and token accuracy use the pseudo-inverse (eq. 3); the exact columns score the same final "
          "embeddings with each decoder; the last column is pinv's token accuracy on the prompt's own embeddings, "
          "the most any inversion decoded with pinv can reach (pinv is a whitened inner product, not a nearest "
          "neighbour).\n",
          "## Decoded text at the page's snapshots (the page's prompt, seed 0)\n"]
    for label, ex in summary["page_prompt"].items():
        snaps = ex.get("snapshots") or []
        md.append(f"**{label}**: " + "; ".join(f"n={s['step']}: {quote(s['text'])}" for s in snaps) + "\n")
    return md


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)
