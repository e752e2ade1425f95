"""The page's feature grids: from noise, maximise one neuron across all patches (or all neurons of one patch) of an
LM layer seen through a ViT patch stem, for panels 1-16, over several seeds; and measure how much each patch of
the image moved, which is what the page argues about (early patches change more, deeper layers spread wider).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from ..engine import ITEMS, TENSOR_FIELD, ItemLog, Task, item_id
from ..engine.command import run_command
from ..records.checks import When, at_least, check_fields, each, one_of, option, positive, seed_value
from ..errors import LmrepError
from ..models.names import HEAD_HELP, HEADS
from ..records.folder import RunDir
from ..records.health import ascent_health, counts
from ..records.stats import mean_sem
from .figures import change_heatmaps, change_profile, feature_grid
from .hybrid import Hybrid
from .metrics import per_patch_change
from .objectives import OBJECTIVES
from .param import PARAMS
from .render import OPTIMISATION, RenderConfig, render
from .transforms import Transform, compose, gaussian_blur, jitter, octave_jitter

OBJECTIVE = "objective"
log = logging.getLogger(__name__)

# the command's defaults: --quick is a small image, few steps, two seeds (2 CPU cores, a few minutes); full is the
# page's 224 px
QUICK = dict(image_size=96, steps=24, seeds=2)
FULL = dict(image_size=224, steps=256, seeds=3)


def preset(given, name: str, quick: bool):
    """An option's value: ``given``, else the --quick or the full default of ``name``."""
    return given if given is not None else (QUICK if quick else FULL)[name]


@dataclass(frozen=True)
class FeaturesConfig:
    layer: str = option("4", "LM layer: 0..n_layers or a name like blocks.3.hook_resid_post", group=OBJECTIVE)
    head: str = option("none", HEAD_HELP, one_of(HEADS), group=OBJECTIVE)
    objective: str = option("neuron", "neuron: one neuron over all patches; patch: all neurons of one patch",
                            one_of(lambda: sorted(OBJECTIVES)), flag="kind", group=OBJECTIVE)
    indices: tuple[int, ...] = option(tuple(range(16)), "neurons or patches, one panel each (panel k shows index "
                                      "k-1)", each(at_least(0)), group=OBJECTIVE)
    seeds: tuple[int, ...] = option((0, 1, 2), "one starting noise per seed", each(seed_value), cli=False)
    param: str = option("pixel", "pixels or Fourier-space parameters", one_of(lambda: sorted(PARAMS)),
                        group=OPTIMISATION)
    blur: bool = option(True, "Gaussian blur before each forward pass", group=OPTIMISATION)
    sigma: tuple[float, float] = option((2.4, 0.8), "the blur's sigma, start -> end", each(positive),
                                        flag="blur-sigma", metavar=("START", "END"), group=OPTIMISATION,
                                        when=When("blur", (True,)))
    jitter: int = option(4, "random shift of up to this many pixels, 0: off", at_least(0), group=OPTIMISATION)
    octave: bool = option(False, "the original scripts' octaves: zoom in 2.5-2.68x and random-crop back",
                          group=OPTIMISATION)
    octave_scales: tuple[float, float] = option((2.5, 2.68), "zoom range of an octave (224 -> 560 .. 600)",
                                                each(positive), cli=False)
    image_size: int = option(224, "side of the square image in pixels", at_least(1, 2048), group=OPTIMISATION)
    render: RenderConfig = option(help="the optimisation loop", factory=RenderConfig, cli=False)

    def check(self) -> "FeaturesConfig":
        """Raise LmrepError on a value that cannot work; returns self."""
        check_fields(self)
        check_fields(self.render)
        if not self.indices or not self.seeds:
            raise LmrepError("give at least one index and one seed")
        if self.jitter >= self.image_size:
            raise LmrepError(f"jitter must be smaller than the image ({self.image_size} px), got {self.jitter}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def check_indices(self, width: int, patches: int) -> None:
        """Every index names a neuron (< the layer's width) or a patch (< the number of patches)."""
        n, what = (width, "neuron") if self.objective == "neuron" else (patches, "patch")
        bad = [i for i in self.indices if i >= n]
        if bad:
            raise LmrepError(f"indices must be {what}s 0..{n - 1} (this layer has {n}), got {bad[0]}")

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
