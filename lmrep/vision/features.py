"""The page's feature grids: from noise, maximise one neuron across all patches (or all neurons of one patch) of an
LM layer seen through a ViT patch stem, for panels 1-16, over several seeds; and measure how much each patch of
the image moved, which is what the page argues about (early patches change more, deeper layers spread wider).
"""
from __future__ import annotations

import json
import logging
from typing import Iterator

import torch

from ..engine import ITEMS, TENSOR_FIELD, ItemLog, Task, item_id
from ..engine.command import run_command
from ..errors import LmrepError
from ..records.folder import RunDir
from ..records.health import ascent_health, counts
from ..records.stats import mean_sem
from .config import FeaturesConfig
from .figures import change_heatmaps, change_profile, feature_grid
from .hybrid import Hybrid
from .metrics import per_patch_change
from .objectives import OBJECTIVES
from .param import PARAMS
from .render import render
from .transforms import Transform, compose, gaussian_blur, jitter, octave_jitter

log = logging.getLogger(__name__)


def transforms_for(cfg: FeaturesConfig, generator: torch.Generator) -> Transform:
    """The configured transforms in the original order: octave zoom, jitter, then blur."""
    ts = []
    if cfg.octave:
        ts.append(octave_jitter(cfg.octave_scales, generator))
    if cfg.jitter:
        ts.append(jitter(cfg.jitter, generator))
    if cfg.blur:
        ts.append(gaussian_blur(cfg.sigma))
    return compose(ts)


def render_seed(hybrid: Hybrid, cfg: FeaturesConfig, seed: int, progress: bool = False):
    """All panels for one seed, rendered as one batch. Returns one record per panel and the final images
    (P, 3, H, W); each panel starts from the same noise, so panels differ only by their objective."""
    layer = hybrid.at(cfg.layer, cfg.head)
    objectives = [OBJECTIVES[cfg.objective](layer.name, i) for i in cfg.indices]
    P, S = len(cfg.indices), cfg.image_size
    gen = torch.Generator().manual_seed(seed)
    param = PARAMS[cfg.param]((P, 3, S, S), generator=gen, device=hybrid.vit.device, same_start=True)
    out = render({layer.name: layer}, objectives, param, transforms_for(cfg, gen), cfg.render, progress)
    change = per_patch_change(out["image"], out["start"], hybrid.vit.patch_size)  # (P, N)
    records = [dict(seed=seed, panel=k + 1, index=i, objective=o.name, value_start=float(out["value_start"][k]),
                    value_end=float(out["value_end"][k]), change=change[k].tolist(),
                    health=ascent_health(float(out["value_start"][k]), float(out["value_end"][k])))
               for k, (i, o) in enumerate(zip(cfg.indices, objectives))]
    return records, out["image"]


def summarize(records: list[dict], objective: str) -> dict:
    """Per-patch change averaged over panels and seeds, and where the change sits along the token order:
    ``centroid`` (0 = first patch, 1 = last, 0.5 = even spread), ``front_back`` (mean change of the first quarter
    of patches / the last quarter); for the patch objective, the share of change before, at and after the
    target patch. Each as mean and standard error over seeds."""
    seeds = sorted({r["seed"] for r in records})
    per_seed = {s: torch.tensor([r["change"] for r in records if r["seed"] == s]) for s in seeds}  # (P, N)
    N = next(iter(per_seed.values())).shape[1]
    pos = torch.arange(N, dtype=torch.float32)
    q = max(1, N // 4)
    stats = {"centroid": [], "front_back": []}
    if objective == "patch":
        stats.update(before=[], at=[], after=[])
    for s, c in per_seed.items():
        total = c.sum(dim=1).clamp_min(1e-12)  # (P,)
        stats["centroid"].append(float(((c * pos).sum(dim=1) / total / max(1, N - 1)).mean()))
        stats["front_back"].append(float(c[:, :q].mean() / c[:, -q:].mean().clamp_min(1e-12)))
        if objective == "patch":
            idx = [r["index"] for r in records if r["seed"] == s]
            shares = torch.stack([torch.stack([c[k, :i].sum(), c[k, i], c[k, i + 1:].sum()]) / total[k]
                                  for k, i in enumerate(idx)])  # (P, 3)
            for j, name in enumerate(("before", "at", "after")):
                stats[name].append(float(shares[:, j].mean()))
    profile = torch.stack([c.mean(dim=0) for c in per_seed.values()])  # (S, N)
    gains = torch.tensor([r["value_end"] - r["value_start"] for r in records])
    return dict(n_seeds=len(seeds), n_panels=len(records) // len(seeds), n_patches=N,
                change_per_patch=profile.mean(dim=0).tolist(), change_per_patch_sem=_sem_rows(profile),
                objective_gain=mean_sem(gains.tolist()), increased=float((gains > 0).float().mean()),
                health=counts(records),
                **{k: mean_sem(v) for k, v in stats.items()})


def _sem_rows(rows: torch.Tensor) -> list[float] | None:
    return None if rows.shape[0] < 2 else (rows.std(dim=0, unbiased=True) / rows.shape[0] ** 0.5).tolist()


def solve_seed(pool, units: list[tuple[int, int]], hybrid: Hybrid, cfg: FeaturesConfig,
               progress: bool) -> Iterator[dict]:
    """One task: every panel of one seed, rendered as one batch; each record carries its final image (3, H, W)."""
    seed = units[0][0]
    layer = hybrid.at(cfg.layer, cfg.head)
    log.info("seed %d: rendering %d panels of %s ...", seed, len(cfg.indices), layer.name)
    recs, imgs = render_seed(hybrid, cfg, seed, progress=progress)
    for rec, img in zip(recs, imgs):
        yield dict(rec, **{TENSOR_FIELD: dict(image=img)})


def run(run_dir: RunDir, hybrid: Hybrid, cfg: FeaturesConfig, progress: bool = True) -> dict:
    """Render every seed the run folder has not finished, each panel one item (its image in the run's
    tensors.safetensors, its line in items.jsonl), a task per seed; then the summary and figures; returns the
    summary."""
    per_seed = {s: [item_id(f"seed={s}", f"panel {k + 1}") for k in range(len(cfg.indices))] for s in cfg.seeds}
    keys = [k for ks in per_seed.values() for k in ks]
    tasks = [Task(solve_seed, (hybrid, cfg, progress), tuple(ks), tuple((s, k) for k in range(len(ks))))
             for s, ks in per_seed.items()]  # a seed with every panel finished is skipped
    run_command(run_dir, keys, lambda done: tasks, rebuild_run, "panel", progress)
    return json.loads((run_dir / "summary.json").read_text())


def features_run(hybrid: Hybrid, cfg: FeaturesConfig, model: str, dtype: str, out: str | None = None,
                 new: bool = False, progress: bool = True) -> tuple[dict, RunDir]:
    """The features command: ``cfg`` checked against the hybrid (layer, patches, indices), the run folder made from
    the run's config (``model``: the LM's name as asked for) and rendered; returns the summary and the folder."""
    layer = hybrid.at(cfg.layer, cfg.head)
    grid = hybrid.vit.grid(cfg.image_size, cfg.image_size)
    hybrid.check_patches(grid[0] * grid[1])
    width = hybrid.lm.vocab_size if layer.spec.has_lm_head else hybrid.lm.d_model
    cfg.check_indices(width, grid[0] * grid[1])
    run_dir = RunDir.create("features", dict(
        features=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=model, trained=hybrid.lm.trained,
        vit=hybrid.vit.name, vit_trained=hybrid.vit.trained, layer_name=layer.name, grid=list(grid),
        dtype=dtype), out, new=new)
    return run(run_dir, hybrid, cfg, progress), run_dir


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json and the figures of a features run, from its items.jsonl, config.json and saved images:
    grid.png (the first seed's panels), change.png (per-patch change per panel), profile.png (change along the
    token order). Returns the summary."""
    config = run_dir.config()
    items = ItemLog(run_dir)
    records = items.items()
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished panel ({ITEMS} is empty or missing): nothing to report; "
                         "rerun the command to resume it")
    objective = config["features"]["objective"]
    summary = dict(layer=config["layer_name"], objective=objective, grid=config["grid"],
                   **summarize(records, objective))
    run_dir.write_json("summary.json", summary)
    images = items.tensors()
    first = min(r["seed"] for r in records)
    panels = [r for r in records if r["seed"] == first]
    what = (f"{config['vit']}{'' if config['vit_trained'] else ' (untrained)'} stem + {config['model']}"
            f"{'' if config['trained'] else ' (untrained)'}, {summary['layer']}")
    titles = [f"{r['panel']}: {objective} {r['index']}" for r in panels]
    grid = torch.stack([images[f"{r['id']}/image"] for r in panels])  # (P, 3, H, W)
    feature_grid(grid, titles, run_dir / "grid.png", f"{what}, seed {first}")
    by_panel = [[sum(v) / len(v) for v in zip(*[r["change"] for r in records if r["panel"] == q["panel"]])]
                for q in panels]
    change_heatmaps(by_panel, tuple(summary["grid"]), titles, run_dir / "change.png",
                    f"{what}: per-patch change, mean of {summary['n_seeds']} seeds")
    change_profile(summary["change_per_patch"], summary["change_per_patch_sem"], run_dir / "profile.png",
                   f"{what}\nchange along the token order (mean over panels; band: s.e. over seeds)")
    return summary
