"""The page's feature grids: from noise, maximise one neuron across all patches (or all neurons of one patch) of an
LM layer seen through a ViT patch stem, for panels 1-16, over several seeds; and measure how much each patch of
the image moved, which is what the page argues about (early patches change more, deeper layers spread wider).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..errors import LmrepError
from .hybrid import Hybrid
from .metrics import per_patch_change
from .objectives import KINDS
from .param import PARAMS
from .render import OPTIMIZERS, RenderConfig, render
from .transforms import Transform, compose, gaussian_blur, jitter, octave_jitter


@dataclass(frozen=True)
class FeaturesConfig:
    layer: str = "4"  # LM layer: depth 0..n_layers or a layer name
    head: str = "none"  # what follows the blocks (see lmrep.layers.HEADS)
    kind: str = "neuron"  # neuron: one neuron over all patches; patch: all neurons of one patch
    indices: tuple[int, ...] = tuple(range(16))  # neurons or patches, one panel each (panel k shows index k-1)
    seeds: tuple[int, ...] = (0, 1, 2)  # one starting noise per seed
    param: str = "pixel"  # pixel or fft
    blur: bool = True  # Gaussian blur before each forward pass
    sigma: tuple[float, float] = (2.4, 0.8)  # the blur's sigma, start -> end
    jitter: int = 4  # random shift of up to this many pixels (0: off)
    octave: bool = False  # the original scripts' octaves: zoom in by a random factor, random crop
    octave_scales: tuple[float, float] = (2.5, 2.68)  # 224 -> 560 .. 600
    image_size: int = 224
    render: RenderConfig = field(default_factory=RenderConfig)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise LmrepError(f"unknown objective kind '{self.kind}': choose one of {', '.join(KINDS)}")
        if self.param not in PARAMS:
            raise LmrepError(f"unknown parameterisation '{self.param}': choose one of {', '.join(PARAMS)}")
        if self.render.optimizer not in OPTIMIZERS:
            raise LmrepError(f"unknown optimizer '{self.render.optimizer}': choose one of {', '.join(OPTIMIZERS)}")
        if not self.indices or not self.seeds:
            raise LmrepError("give at least one index and one seed")

    def as_dict(self) -> dict:
        return asdict(self)


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
    objectives = [KINDS[cfg.kind](layer.name, i) for i in cfg.indices]
    P, S = len(cfg.indices), cfg.image_size
    gen = torch.Generator().manual_seed(seed)
    param = PARAMS[cfg.param]((P, 3, S, S), generator=gen, device=hybrid.vit.device, same_start=True)
    out = render({layer.name: layer}, objectives, param, transforms_for(cfg, gen), cfg.render, progress)
    change = per_patch_change(out["image"], out["start"], hybrid.vit.patch_size)  # (P, N)
    records = [dict(seed=seed, panel=k + 1, index=i, objective=o.name, value_start=float(out["value_start"][k]),
                    value_end=float(out["value_end"][k]), change=change[k].tolist())
               for k, (i, o) in enumerate(zip(cfg.indices, objectives))]
    return records, out["image"]


def summarize(records: list[dict], kind: str) -> dict:
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
    if kind == "patch":
        stats.update(before=[], at=[], after=[])
    for s, c in per_seed.items():
        total = c.sum(dim=1).clamp_min(1e-12)  # (P,)
        stats["centroid"].append(float(((c * pos).sum(dim=1) / total / max(1, N - 1)).mean()))
        stats["front_back"].append(float(c[:, :q].mean() / c[:, -q:].mean().clamp_min(1e-12)))
        if kind == "patch":
            idx = [r["index"] for r in records if r["seed"] == s]
            shares = torch.stack([torch.stack([c[k, :i].sum(), c[k, i], c[k, i + 1:].sum()]) / total[k]
                                  for k, i in enumerate(idx)])  # (P, 3)
            for j, name in enumerate(("before", "at", "after")):
                stats[name].append(float(shares[:, j].mean()))
    profile = torch.stack([c.mean(dim=0) for c in per_seed.values()])  # (S, N)
    gains = torch.tensor([r["value_end"] - r["value_start"] for r in records])
    return dict(n_seeds=len(seeds), n_panels=len(records) // len(seeds), n_patches=N,
                change_per_patch=profile.mean(dim=0).tolist(), change_per_patch_sem=_sem_rows(profile),
                objective_gain=_mean_sem(gains.tolist()), increased=float((gains > 0).float().mean()),
                **{k: _mean_sem(v) for k, v in stats.items()})


def _mean_sem(xs: list[float]) -> dict:
    t = torch.tensor(xs, dtype=torch.float64)
    sem = float(t.std(unbiased=True) / len(xs) ** 0.5) if len(xs) > 1 else None
    return dict(mean=float(t.mean()), sem=sem)


def _sem_rows(rows: torch.Tensor) -> list[float] | None:
    return None if rows.shape[0] < 2 else (rows.std(dim=0, unbiased=True) / rows.shape[0] ** 0.5).tolist()
