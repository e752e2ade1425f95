"""Image reconstruction per layer (the page's "Image Reconstruction with Language Models"): how much of an image
each layer keeps, GPT-2 blocks behind a ViT patch stem against ViT blocks.

Per subject and depth, every image of a public-domain set is rebuilt from noise by Adam until its layer output
matches the original's (``vision.reconstruct``), all images of one (subject, depth, seed) in one batch; each image
is one item with its PSNR, SSIM, L2, per-patch error and loss-curve health. Subjects: untrained GPT-2 behind the
untrained ViT-B/16 stem (the page's pair; no trained GPT-2 is offline), the untrained ViT-L/16 (the page's ViT-L,
its architecture only) and the trained DINOv2 ViT-S/14, the stand-in for a trained ViT (no trained ViT-B/L weights
exist offline).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from ..engine import TENSOR_FIELD, ItemLog, Plan, Task, item_id
from ..records.folder import RunDir
from ..records.health import counts_text
from ..records.stats import fmt, group_stats
from ..vision.config import ReconstructConfig
from ..vision.figures import reconstruction_grid
from ..vision.hybrid import Hybrid
from ..vision.images import load_image
from ..vision.reconstruct import image_metrics, reconstruct
from ..vision.samples import expand
from ..vision.subjects import side
from ..vision.vit import vit_layer_model
from . import figures
from .config import ReproduceConfig
from .pool import ModelPool
from .reporting import claims_of
from .verdicts import decide_all
from .vision_common import depths_for, depths_text, sections, vision_header

NAME = "vision-reconstruction"
ABOUT = "PSNR and SSIM of images rebuilt from each layer: GPT-2 blocks behind a ViT-B/16 stem vs ViT blocks"
TITLE = "Image reconstruction per layer: GPT-2 vs ViT"
STEPS = True  # honours ReproduceConfig.steps
LAYERS = True  # honours ReproduceConfig.layers: the depths, for every subject that has them


@dataclass(frozen=True)
class ImageSubject:
    """A model whose layers an image is rebuilt from: a ViT run whole, or an LM's blocks behind a ViT's stem."""

    key: str
    label: str
    vit: str  # the ViT (run whole), or the stem in front of ``lm``
    lm: str | None = None  # an untrained LM behind the stem (None: the ViT alone)


SUBJECTS = (ImageSubject("gpt2", "GPT-2 (untrained) behind the ViT-B/16 stem (untrained)", "vit-b16", "gpt2"),
            ImageSubject("vit-l16", "ViT-L/16 (untrained)", "vit-l16"),
            ImageSubject("dinov2-s14", "DINOv2 ViT-S/14 (trained; the stand-in for a trained ViT)", "dinov2-s14"))


@dataclass(frozen=True)
class Profile:
    """What a run covers: the images, their side, the optimisation and the depths (shares of each model's n)."""

    images: tuple[str, ...]
    image_size: int  # rounded down to whole patches per model (64: 4 x 4 patches of 16 px, 4 x 4 of 14 px = 56)
    steps: int
    lr: float
    fractions: tuple[float, ...]  # depths 0, 1 and these shares of n, rounded down
    examples: int  # images whose reconstructions are kept as tensors (the figure of examples)


QUICK = Profile(("chelsea", "astronaut", "coffee"), image_size=64, steps=12, lr=0.1, fractions=(0.5,), examples=2)
FULL = Profile(tuple(expand(["public-domain-20"])), image_size=64, steps=100, lr=0.1,
               fractions=(0.25, 0.5, 0.75, 1.0), examples=3)
PAGE = "the page: 224 px, every layer, until the output matches"


def profile(cfg: ReproduceConfig | dict) -> Profile:
    quick = cfg["quick"] if isinstance(cfg, dict) else cfg.quick
    return QUICK if quick else FULL


def _layer(pool: ModelPool, subject: ImageSubject, depth: int):
    """The subject's layer model after ``depth`` blocks (images -> (B, T, D)) and its patch size."""
    vit = pool.vit(subject.vit)
    if subject.lm is None:
        return vit_layer_model(vit, depth), vit.patch_size
    return Hybrid(vit, pool.model(subject.lm, untrained=True)).at(depth), vit.patch_size


def n_blocks(pool: ModelPool, subject: ImageSubject) -> int:
    return pool.n_layers(subject.lm, untrained=True) if subject.lm else pool.vit(subject.vit).n_layers


def solve(pool: ModelPool, units: list[tuple[str, int]], subject: ImageSubject, depth: int, n: int, size: int,
          rcfg: ReconstructConfig, examples: tuple[str, ...]):
    """One task: the images (units: (image, seed), one seed) of one subject rebuilt from one depth, as one batch;
    one record per image, the example images' reconstruction and original (1, 3, S, S) as its tensors."""
    layer, patch = _layer(pool, subject, depth)
    s = side(size, patch)
    images = torch.cat([load_image(name, s) for name, _ in units]).to(pool.device)  # (B, 3, S, S)
    out = reconstruct(layer, images, rcfg, seed=units[0][1])
    for k, (name, seed) in enumerate(units):
        got, ref = out["image"][k:k + 1].cpu(), images[k:k + 1].cpu()  # (1, 3, S, S) each
        rec = dict(subject=subject.key, label=subject.label, depth=depth, fraction=round(depth / n, 3),
                   layer=layer.name, image=name, seed=seed, image_size=s, steps=rcfg.steps, **out["health"][k],
                   **image_metrics(got, ref, patch))
        if name in examples:
            rec[TENSOR_FIELD] = dict(image=got.clamp(0, 1), original=ref)
        yield rec


def plan(cfg: ReproduceConfig, pool: ModelPool, done: Mapping[str, dict]) -> Plan:
    """One stage: a task per (subject, depth, seed) holding every image of the profile."""
    prof = profile(cfg)
    rcfg = ReconstructConfig(steps=cfg.steps or prof.steps, lr=prof.lr)
    tasks = []
    for sub in SUBJECTS:
        n = n_blocks(pool, sub)
        for depth in depths_for(n, prof.fractions, cfg.layers):
            for seed in range(cfg.seeds):
                units = tuple((name, seed) for name in prof.images)
                keys = tuple(item_id(sub.key, f"depth {depth}", f"seed={seed}", name) for name in prof.images)
                tasks.append(Task(solve, (sub, depth, n, prof.image_size, rcfg, prof.images[:prof.examples]), keys,
                                  units, affinity=sub.key))
    yield tasks


def summarize(items: list[dict]) -> dict:
    """Per subject and depth: mean ± s.e. over the images (and seeds) whose run did not diverge."""
    order = list(dict.fromkeys(r["subject"] for r in items))  # the subjects in the order they were planned
    rows = group_stats(sorted(items, key=lambda r: (order.index(r["subject"]), r["depth"])),
                       ("subject", "label", "depth"), ("psnr", "ssim", "l2", "front_back"))
    return dict(rows=rows, claims=decide_all(NAME, items))


def draw(run_dir: RunDir, summary: dict, items: list[dict]) -> None:
    """psnr.png and ssim.png: each metric against depth, one line per subject; examples.png when the run kept its
    example reconstructions (tensors.safetensors)."""
    for metric, ylabel, ylim in (("psnr", "PSNR (dB)", None), ("ssim", "SSIM", (-0.05, 1.0))):
        series = {}
        for r in summary["rows"]:
            xs, stats = series.setdefault(r["label"], ([], []))
            xs.append(r["depth"])
            stats.append(r[metric])
        figures.lines(series, run_dir / f"{metric}.png", f"Reconstruction from each layer's output: {metric.upper()}"
                      " (mean ± s.e. over images)", "layer (blocks run; 0 = the stem)", ylabel, ylim=ylim)
    examples(run_dir, items)


def examples(run_dir: RunDir, items: list[dict]) -> None:
    """examples.png: each example image and its reconstruction from every depth, per subject (only when the run's
    tensors.safetensors is there: it is not committed)."""
    tensors = ItemLog(run_dir).tensors()
    kept = [r for r in items if f"{r['id']}/image" in tensors]
    if not kept:
        return
    rows = []
    for sub in dict.fromkeys(r["subject"] for r in kept):
        for name in dict.fromkeys(r["image"] for r in kept):
            recs = sorted((r for r in kept if r["subject"] == sub and r["image"] == name), key=lambda r: r["depth"])
            rows.append((f"{sub}\n{name}", tensors[f"{recs[0]['id']}/original"][0],
                         [(f"{r['depth']}: {r['psnr']:.1f} dB", tensors[f"{r['id']}/image"][0]) for r in recs]))
    reconstruction_grid(rows, run_dir / "examples.png", "reconstruction from each depth (depth: PSNR)")


def header(config: dict, items: list[dict]) -> str:
    prof = profile(config)
    steps = config.get("steps") or prof.steps
    subjects = dict.fromkeys(r["subject"] for r in items)
    sides = ", ".join(f"{s} {next(r['image_size'] for r in items if r['subject'] == s)} px" for s in subjects)
    return vision_header(TITLE, config, items, [
        f"- images: {len({r['image'] for r in items})} of the public-domain set (docs/vision.md names each and its "
        f"licence), {prof.image_size} px rounded down to whole patches ({sides}); {config['seeds']} seed(s)",
        f"- optimisation: Adam, {steps} steps, lr {prof.lr:g} falling linearly to {prof.lr / 10:g}, from N(0.7, "
        f"0.05^2) per pixel; each image's lowest-loss image is scored",
        f"- cut: {prof.image_size} px, {steps} steps, depths {depths_text(items, subjects)} ({PAGE})"])


def markdown(config: dict, items: list[dict], summary: dict) -> list[str]:
    rows = [[r["label"], r["depth"], counts_text(r["health"]), fmt(r["psnr"]), fmt(r["ssim"], 3), fmt(r["l2"]),
             fmt(r["front_back"])] for r in summary["rows"]]
    return sections(summary, [
        ("psnr.png", "PSNR of the reconstruction against depth, per model (mean ± s.e. over images)"),
        ("ssim.png", "SSIM against depth, per model")],
        ["model", "depth", "runs", "PSNR (dB)", "SSIM", "L2", "front/back"], rows,
        "Means over the images whose run did not diverge (runs: ok / stalled / diverged). front/back: the squared "
        "error of the first quarter of patches (token order) over the last quarter's.\n",
        ("examples.png", "examples: originals and reconstructions by depth"))


claims = claims_of  # the claims as decided from the items (the report's table; the combined table's rows)
