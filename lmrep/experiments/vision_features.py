"""Feature visualisation per layer (the page's "Spatial Learning in Language Model Features"), measured: how broadly
the pixel change that maximises one neuron spreads over the patches, at each depth.

The trained LM behind an untrained ViT-B/16-geometry stem of its width (``--vit auto``), one neuron per panel over
all patches, from the same noise for every panel of a seed, without blur or jitter (the page's second figure: "both
observations hold" without them). Each panel is one item with its per-patch change and its breadth
(``vision.metrics.breadth``: the effective number of patches holding the change energy, over the patch count); the
page's "deeper layers focus more broadly" is decided on it, paired on seed and panel, last block vs first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from ..engine import TENSOR_FIELD, ItemLog, Plan, Task, item_id
from ..records.folder import RunDir
from ..records.health import counts_text
from ..records.stats import fmt, group_stats
from ..vision.config import AUTO, FeaturesConfig, RenderConfig
from ..vision.features import render_seed
from ..vision.figures import change_heatmaps, feature_grid
from ..vision.hybrid import Hybrid
from ..vision.metrics import breadth, share_holding
from ..vision.vit import stem_for
from . import figures
from .config import ReproduceConfig
from .pool import ModelPool
from .reporting import claims_of
from .verdicts import decide_all
from .vision_common import depths_for, depths_text, sections, vision_header

NAME = "vision-features"
ABOUT = "feature visualisation through a ViT patch stem: how broadly each layer's neurons move the image"
TITLE = "Feature visualisation: focus breadth per layer"
STEPS = True  # honours ReproduceConfig.steps
LAYERS = True  # honours ReproduceConfig.layers


@dataclass(frozen=True)
class Profile:
    image_size: int  # 64 px: 4 x 4 patches of 16 px
    steps: int
    lr: float  # plain steps, each image's largest pixel moving lr (falling to lr/10)
    panels: int  # neurons 0..panels-1, one panel each
    fractions: tuple[float, ...]  # depths 1 and these shares of n, rounded down


QUICK = Profile(image_size=64, steps=6, lr=0.05, panels=4, fractions=(1.0,))
FULL = Profile(image_size=64, steps=40, lr=0.05, panels=16, fractions=(0.25, 0.5, 1.0))
GRID_PANELS = 6  # panels per depth in panels.png
PAGE = "the page: 224 px (196 patches), 16 panels, hundreds of steps"


def profile(cfg: ReproduceConfig | dict) -> Profile:
    quick = cfg["quick"] if isinstance(cfg, dict) else cfg.quick
    return QUICK if quick else FULL


def hybrid_of(pool: ModelPool, model: str) -> Hybrid:
    """The trained ``model`` behind the untrained stem ``--vit auto`` gives it."""
    lm = pool.model(model)
    return Hybrid(pool.vit(stem_for(AUTO, lm.d_model, model)[0]), lm)


def solve(pool: ModelPool, units: list[tuple[int, int]], model: str, depth: int, prof: Profile, steps: int):
    """One task: every panel (units: (seed, panel index)) of one seed at one depth, rendered as one batch; the
    first seed's images kept as tensors."""
    hybrid = hybrid_of(pool, model)
    seed, n = units[0][0], hybrid.n_layers
    cfg = FeaturesConfig(layer=str(depth), indices=tuple(k for _, k in units), seeds=(seed,), blur=False, jitter=0,
                         image_size=prof.image_size, render=RenderConfig(steps=steps, lr=prof.lr)).check()
    records, images = render_seed(hybrid, cfg, seed)  # (P, 3, S, S)
    change = torch.tensor([r["change"] for r in records])  # (P, N)
    pos = torch.arange(change.shape[1], dtype=torch.float32) / max(1, change.shape[1] - 1)
    spread, share = breadth(change), share_holding(change)
    centroid = (change * pos).sum(1) / change.sum(1).clamp_min(1e-12)  # (P,)
    for k, rec in enumerate(records):
        out = dict(rec, subject=model, depth=depth, fraction=round(depth / n, 3),
                   layer=hybrid.at(depth).name, image_size=prof.image_size, steps=steps,
                   breadth=_num(spread[k]), share90=_num(share[k]), centroid=_num(centroid[k]))
        if seed == 0:
            out[TENSOR_FIELD] = dict(image=images[k:k + 1].cpu())
        yield out


def _num(x: torch.Tensor) -> float | None:
    return float(x) if torch.isfinite(x) else None


def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: a task per (depth, seed) holding every panel."""
    prof = profile(cfg)
    n = pool.n_layers(cfg.model)
    tasks = []
    for depth in depths_for(n, prof.fractions, cfg.layers, stem=False):
        for seed in range(cfg.seeds):
            units = tuple((seed, k) for k in range(prof.panels))
            keys = tuple(item_id(f"depth {depth}", f"seed={seed}", f"panel {k + 1}") for k in range(prof.panels))
            tasks.append(Task(solve, (cfg.model, depth, prof, cfg.steps or prof.steps), keys, units,
                              affinity=cfg.model))
    yield tasks


def summarize(items: list[dict]) -> dict:
    """Per depth: mean ± s.e. over panels and seeds of breadth, share90, centroid and the objective's gain, and
    the mean change of each patch (token order)."""
    items = sorted(items, key=lambda r: r["depth"])
    rows = group_stats([dict(r, gain=r["value_end"] - r["value_start"]) for r in items], ("depth", "layer"),
                       ("breadth", "share90", "centroid", "gain"))
    for row in rows:
        row["change"] = np.mean([r["change"] for r in items if r["depth"] == row["depth"]], axis=0).tolist()
    return dict(rows=rows, claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """breadth.png (breadth and share90 against depth), change.png (the mean change per patch at each depth,
    each scaled to its own largest), panels.png when the run kept its images."""
    rows = summary["rows"]
    depths = [r["depth"] for r in rows]
    figures.lines({"breadth (effective patches / N)": (depths, [r["breadth"] for r in rows]),
                   "share of patches holding 90% of the change": (depths, [r["share90"] for r in rows])},
                  run_dir / "breadth.png", f"How broadly one neuron moves the image, per layer\n{_who(items)}",
                  "layer (blocks run)", "share of the patches (mean ± s.e.)")
    side = int(round(len(rows[0]["change"]) ** 0.5))
    change_heatmaps([list(np.asarray(r["change"]) / max(max(r["change"]), 1e-12)) for r in rows], (side, side),
                    [f"depth {d}" for d in depths], run_dir / "change.png",
                    "mean change per patch (each depth scaled to its largest)")
    tensors = ItemLog(run_dir).tensors()
    kept = [r for r in items if f"{r['id']}/image" in tensors and r["panel"] <= GRID_PANELS]
    if kept:
        feature_grid(torch.cat([tensors[f"{r['id']}/image"] for r in kept]),
                     [f"depth {r['depth']}, neuron {r['index']}" for r in kept], run_dir / "panels.png",
                     f"panels of seed 0\n{_who(items)}")


def _who(items: list[dict]) -> str:
    return f"{items[0]['subject']} (trained) behind an untrained ViT-B/16-geometry stem, {items[0]['image_size']} px"


def header(config: dict, items: list[dict]) -> str:
    prof = profile(config)
    steps = config.get("steps") or prof.steps
    seeds, panels = {r["seed"] for r in items}, {r["panel"] for r in items}
    return vision_header(TITLE, config, items, [
        f"- model: {config['model']} (trained) behind an untrained ViT-B/16-geometry stem at its width; one neuron "
        f"over all patches per panel, {len(panels)} panels x {len(seeds)} seed(s), every panel of a seed from the "
        "same noise",
        f"- optimisation: plain steps scaled so each image's largest pixel moves lr = {prof.lr:g} (falling to "
        f"{prof.lr / 10:g}), {steps} steps, no blur, no jitter",
        "- breadth: exp(entropy of each patch's share of the squared change) / the number of patches (1/N: one "
        "patch; 1: all evenly); share90: the share of patches holding 90% of it",
        f"- cut: {prof.image_size} px, {steps} steps, depths {depths_text(items, [config['model']])} ({PAGE})"])


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    rows = [[r["depth"], counts_text(r["health"]), fmt(r["breadth"], 3), fmt(r["share90"], 3), fmt(r["centroid"], 3),
             fmt(r["gain"])] for r in summary["rows"]]
    return sections(summary, [
        ("breadth.png", "breadth of the per-patch change against depth (mean ± s.e. over panels and seeds)"),
        ("change.png", "where the change sits: mean per-patch change at each depth, on the patch grid")],
        ["depth", "runs", "breadth", "share90", "centroid", "objective gain"], rows,
        "runs: ok / stalled / diverged (a panel whose objective did not rise is stalled). centroid: where along the "
        "token order the change sits (0 = first patch, 1 = last).\n", ("panels.png", "the first panels of seed 0 at "
                                                                       "each depth"))


claims = claims_of  # the claims as decided from the items (the report's table; the combined table's rows)
