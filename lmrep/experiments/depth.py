"""Representational accuracy vs depth: how much of the prompt each layer gives back, per method and decoder.

For every layer of the trained model and of the untrained GPT-2 (the residual stream after k blocks, no head),
every registered inversion method recovers the prompts; gradient descent is scored under each decoder (pinv,
L2-nearest, cosine-nearest) from one run, other methods by their own output. The figure is the report's headline.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..objective.decode import DECODERS
from ..inversion import METHODS
from ..inversion.config import GRADIENT
from ..records.folder import RunDir
from ..records.health import counts, counts_text, healthy
from ..records.stats import fmt, mean_sem
from . import figures
from .config import ReproduceConfig
from .engine import Plan
from .inversion import TargetSpec, invert_tasks
from .pool import ModelPool
from .reporting import Claim, claims_table, figure, greater, table, verdict

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


def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: every (model, layer, method, seed), its prompts inverted as batches."""
    setting = cfg.get_setting()
    models = [ModelSpec(cfg.model, cfg.model, True), ModelSpec("gpt2 untrained", "gpt2", False)]
    prompts = list(cfg.prompts[:1] if cfg.quick else cfg.prompts)
    tasks = []
    for m in models:
        for k in layers_for(pool.n_layers(m.name, untrained=not m.trained), cfg):
            for method in sorted(METHODS):
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
    return dict(series=series)


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
            "## Per layer\n", table(["model", "method", "decoder", "layer", "runs", "token accuracy", "exact match"], rows),
            "Rates are over the runs that did not diverge (runs: ok / stalled / diverged).\n"]


def claims(summary: dict) -> list[Claim]:
    """The page's claims next to what the summary measured (the report's table; the combined table's rows)."""
    return _claims(summary["series"])


def _claims(series: list[dict]) -> list[Claim]:
    def gd_pinv(label_trained: bool) -> dict | None:
        return next((s for s in series if s["method"] == "gd" and s["decoder"] == "pinv"
                     and (s["label"] != "gpt2 untrained") == label_trained), None)
    claims = []
    for trained in (False, True):
        s = gd_pinv(trained)
        if s and len(s["layers"]) >= 2:
            first, last = s["token_accuracy"][0], s["token_accuracy"][-1]
            claims.append(Claim(f"Deeper layers keep less of the input ({s['label']}, gradient descent + pinv)",
                                f"layer {s['layers'][0]}: {fmt(first)}; layer {s['layers'][-1]}: {fmt(last)}",
                                verdict(greater(first, last))))
    u, t = gd_pinv(False), gd_pinv(True)
    if u and t:
        claims.append(Claim("Training makes the first layer harder to invert by gradient descent",
                            f"after {u['layers'][0]} block(s): untrained {fmt(u['token_accuracy'][0])}, "
                            f"trained {fmt(t['token_accuracy'][0])}",
                            verdict(greater(u["token_accuracy"][0], t["token_accuracy"][0]))))
    for s in series:
        if s["method"] != "gd" and s["decoder"] in ("pinv", "own"):
            worst = min((a["mean"] for a in s["token_accuracy"] if a["mean"] is not None), default=None)
            claims.append(Claim(f"(not on the page) Method {s['method']} recovers the prompt at every layer tried "
                                f"({s['label']})",
                                f"lowest token accuracy over the layers tried: "
                                f"{'-' if worst is None else f'{worst:.3f}'}",
                                verdict(None if worst is None else worst >= 0.99,
                                        evidence=tuple(s["token_accuracy"]))))
    return claims
