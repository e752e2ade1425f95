"""Representational accuracy vs depth: how much of the prompt each layer gives back, per method and decoder.

For every layer of the trained model and of the untrained GPT-2 (the residual stream after k blocks, no head),
every registered inversion method recovers the prompts; gradient descent is scored under each decoder (pinv,
L2-nearest, cosine-nearest) from one run, other methods by their own output. The figure is the report's headline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..objective.names import DECODERS
from ..inversion.registry import method_names
from ..inversion.config import GRADIENT
from ..records.folder import RunDir
from ..records.health import counts, counts_text, healthy
from ..records.stats import fmt, mean_sem
from . import figures
from .config import ReproduceConfig
from ..engine import Plan
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool
from .reporting import Claim, claims_of, claims_table, figure, markdown_table
from .tuning import tunable
from .verdicts import decide_all

NAME = "depth"
ABOUT = "token accuracy at every layer of the trained model and untrained GPT-2, per method and decoder"
TITLE = "Representational accuracy vs depth"
STEPS = True  # honours ReproduceConfig.steps
QUICK_STEPS = 60
SEEDED = GRADIENT.values  # methods whose result depends on the seed (noise in the init)
LAYERS = True  # honours ReproduceConfig.layers
QUICK_LAYERS = (1, 2)  # the full profile runs every layer


@dataclass(frozen=True)
class ModelSpec:
    """A model whose every layer is inverted."""

    label: str
    name: str
    trained: bool


def layers_for(n_layers: int, cfg: ReproduceConfig) -> list[int]:
    """The blocks asked for (those the model has), else every depth 0..n (full) or the first two blocks (quick:
    exact search at the last layer takes minutes)."""
    if cfg.layers:
        return [k for k in cfg.layers if k <= n_layers]
    return list(QUICK_LAYERS) if cfg.quick else list(range(n_layers + 1))


@tunable
def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every (model, layer, method, seed), its prompts inverted as batches."""
    setting = cfg.get_setting()
    models = [ModelSpec(cfg.model, cfg.model, True), ModelSpec("gpt2 untrained", "gpt2", False)]
    prompts = list(cfg.prompts[:1] if cfg.quick else cfg.prompts)
    tasks = []
    for m in models:
        for k in layers_for(pool.n_layers(m.name, untrained=not m.trained), cfg):
            for method in method_names():
                for seed in range(cfg.seeds if method in SEEDED else 1):  # the exact search draws no noise
                    inv = setting.invert_config(cfg.steps_for(m.trained, QUICK_STEPS), seed,
                                                method=method)
                    tasks += invert_tasks(f"{m.label} | layer {k} | {method}",
                                          TargetSpec(m.name, not m.trained, k, "none"), prompts, inv,
                                          dict(label=m.label, depth=k, method=method, setting=setting.name),
                                          keep_curve=False)
    yield tasks


def _accuracy(rec: dict, decoder: str) -> float:
    """Top-1 accuracy under ``decoder`` from the true token's ranks; a method without ranks scores itself."""
    ranks = (rec.get("true_rank") or {}).get(decoder)
    if ranks is None:
        return rec["token_accuracy"]
    return sum(r == 1 for r in ranks) / len(ranks)


def summarize(items: list[dict]) -> dict:
    """Means and standard errors of the items, per condition: what summary.json holds."""
    groups: dict[tuple, list[dict]] = {}
    for r in items:
        groups.setdefault((r["label"], r["method"]), []).append(r)
    series = []
    for (label, method), rs in groups.items():
        decoders = DECODERS if all(r.get("true_rank") for r in rs) else ("own",)
        depths = sorted({r["depth"] for r in rs})
        at = {k: [r for r in rs if r["depth"] == k] for k in depths}
        ok = {k: healthy(at[k]) for k in depths}  # rates leave out the runs that diverged
        for dec in decoders:
            series.append(dict(label=label, method=method, decoder=dec, layers=depths,
                               health=[counts(at[k]) for k in depths],
                               token_accuracy=[mean_sem(_accuracy(r, dec) for r in ok[k]) for k in depths],
                               exact_match=[mean_sem(float(r["exact_match"]) for r in ok[k]) for k in depths]))
    return dict(series=series, claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """depth.png: token accuracy per layer, one line per model, method and decoder (colour: method; line:
    decoder; marker: model)."""
    series = summary["series"]
    label = {id(s): f"{s['label']}, {s['method']}, {s['decoder']}" for s in series}
    figures.lines({label[id(s)]: (s["layers"], s["token_accuracy"]) for s in series}, run_dir / "depth.png",
                  f"Representational accuracy vs depth\n{figures.who(items)}", "layer (blocks run)",
                  "token accuracy (mean ± sem)",
                  kinds={label[id(s)]: (s["method"], s["decoder"], s["label"]) for s in series})


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    """The report's sections after its header."""
    series = summary["series"]
    rows = [[s["label"], s["method"], s["decoder"], k, counts_text(h), fmt(a), fmt(e)]
            for s in series for k, h, a, e in zip(s["layers"], s.get("health") or [None] * len(s["layers"]),
                                                  s["token_accuracy"], s["exact_match"])]
    return [claims_table(claims(summary)),
            figure("depth.png", "token accuracy per layer, per model, method and decoder"),
            "## Per layer\n", markdown_table(["model", "method", "decoder", "layer", "runs", "token accuracy", "exact match"], rows),
            "Rates are over the runs that did not diverge (runs: ok / stalled / diverged).\n"]


def claims(summary: dict) -> list[Claim]:
    """The page's claims as decided from the items (the report's table; the combined table's rows)."""
    return claims_of(summary)
