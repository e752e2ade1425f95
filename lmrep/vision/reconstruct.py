"""Image reconstruction from one layer's output: start from noise and move the image by gradient descent until its
layer output matches the original's (L1), then compare the images (L2, PSNR, SSIM, error per patch in token order).
How close it gets, layer by layer, is the page's "representational accuracy".
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from ..engine import ITEMS, TENSOR_FIELD, ItemLog, Task, item_id
from ..engine.command import run_command
from ..errors import LmrepError
from ..objective.schedule import decaying
from ..records.folder import RunDir
from ..records.health import counts, curve_health, healthy
from ..records.stats import mean_sem
from .config import ReconstructConfig
from .figures import psnr_by_depth, reconstruction_grid
from .images import load_image
from .metrics import l2, per_patch_mse, psnr, ssim

log = logging.getLogger(__name__)


def reconstruct(model: nn.Module, image: torch.Tensor, cfg: ReconstructConfig, seed: int = 0,
                progress: bool = False) -> dict:
    """Images (B, 3, H, W) -> images from noise whose ``model`` output matches theirs in mean L1, each image the
    one of its lowest loss along the way. Returns them, the mean loss per step (the last entry: after the last
    step), the output distance relative to the target's mean |O|, and each image's ``health``
    (``records.health.curve_health``: start, best, end, best step, ok / stalled / diverged)."""
    with torch.no_grad():
        target = model(image)  # (B, T, D)
    gen = torch.Generator().manual_seed(seed)
    x = (cfg.init_mean + cfg.init_sd * torch.randn(image.shape, generator=gen)).to(image).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    sched = decaying(opt, cfg.steps)
    best, best_x, curves = torch.full((len(x),), float("inf")), x.detach().clone(), []  # (B,), (B, 3, H, W)
    for n in tqdm(range(cfg.steps + 1), disable=not progress, leave=False, desc="reconstruct"):
        opt.zero_grad()
        loss = (model(x) - target).abs().flatten(1).mean(1)  # (B,): each image's mean L1
        with torch.no_grad():
            value = loss.detach().cpu()
            better = value < best  # (B,); NaN is never better
            best = torch.where(better, value, best)
            best_x[better.to(x.device)] = x.detach()[better.to(x.device)]
            curves.append(value.tolist())
        if n == cfg.steps:  # the last entry measures the last step's result
            break
        loss.sum().backward()  # images are independent: the sum's gradient is each image's own
        opt.step()
        sched.step()
    per_image = [list(c) for c in zip(*curves)]  # (B, N + 1)
    final = float(best[torch.isfinite(best)].mean()) if torch.isfinite(best).any() else float("nan")
    return dict(image=best_x, curve=[sum(v) / len(v) for v in curves], output_l1=final,
                relative_output_l1=final / float(target.abs().mean()),
                health=[curve_health(c) for c in per_image])


def image_metrics(x: torch.Tensor, ref: torch.Tensor, patch: int) -> dict:
    """Metrics of one reconstruction (1, 3, H, W) against its original, on the image clamped to [0, 1]."""
    x = x.clamp(0, 1)
    errs = per_patch_mse(x, ref, patch)[0]  # (N,)
    q = max(1, errs.numel() // 4)
    return dict(l2=float(l2(x, ref)[0]), psnr=float(psnr(x, ref)[0]), ssim=float(ssim(x, ref)[0]),
                per_patch_mse=errs.tolist(), front_back=float(errs[:q].mean() / errs[-q:].mean().clamp_min(1e-12)))


@dataclass
class Subject:
    """A model whose layers an image is reconstructed from: its label, patch size, image side and layer models."""
    label: str
    patch: int
    side: int
    layers: list  # modules images -> (B, T, D), each with ``name`` and ``spec``


def solve_layer(pool, units: list[tuple[int, int, str, bool]], subjects: list[Subject], cfg: ReconstructConfig,
                seed: int, device) -> Iterator[dict]:
    """One task: one image from one layer of one subject (units: subject index, layer index, image name, whether
    to carry the original too). The record carries the reconstruction (1, 3, H, W) and, for the first layer of each
    subject and image, the original."""
    for si, li, name, with_original in units:
        sub, m = subjects[si], subjects[si].layers[li]
        img = load_image(name, sub.side).to(device)
        log.info("%s: %s, %s ...", sub.label, m.name, name)
        out = reconstruct(m, img, cfg, seed=seed, progress=True)
        tensors = dict(image=out["image"].cpu(), **(dict(original=img.cpu()) if with_original else {}))
        yield dict(model=sub.label, depth=m.spec.depth, layer=m.name, image=name, image_size=sub.side,
                   output_l1=out["output_l1"], relative_output_l1=out["relative_output_l1"], **out["health"][0],
                   **image_metrics(out["image"].cpu(), img.cpu(), sub.patch), **{TENSOR_FIELD: tensors})


def reconstruct_all(run_dir: RunDir, subjects: list[Subject], images: list[str], cfg: ReconstructConfig,
                    seed: int, device, on_record: Callable[[dict], None] | None = None) -> list[dict]:
    """Every image from every layer of every subject that the run folder has not finished, each (subject, layer,
    image) one item (its images in tensors.safetensors, its line in items.jsonl). Then the summary and figures.
    Returns every record (those finished earlier first)."""
    units = [(si, li, name, li == 0) for si, sub in enumerate(subjects) for li in range(len(sub.layers))
             for name in images]
    keys = [item_id(subjects[si].label, name, subjects[si].layers[li].name) for si, li, name, _ in units]
    tasks = [Task(solve_layer, (subjects, cfg, seed, device), (k,), (u,)) for k, u in zip(keys, units)]
    return run_command(run_dir, keys, lambda done: tasks, rebuild_run, "reconstruction", on_item=on_record)


def summarize(records: list[dict]) -> dict:
    """Per model and depth: mean and standard error over images of PSNR, SSIM, L2 and the front/back ratio."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["model"], r["depth"], r["layer"])].append(r)
    # rates over the images whose run did not diverge; the counts of each label beside them
    out = defaultdict(list)
    order = list(dict.fromkeys(r["model"] for r in records))  # models in the order they ran
    for (model, depth, layer), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        row = dict(depth=depth, layer=layer, n_images=len(rs), health=counts(rs))
        for key in ("psnr", "ssim", "l2", "front_back", "relative_output_l1"):
            row[key] = mean_sem(r[key] for r in healthy(rs))
        out[model].append(row)
    return dict(out)


def rebuild_run(run_dir: RunDir) -> dict:
    """summary.json, reconstructions.png (originals and reconstructions by layer) and psnr.png, from the run's
    items.jsonl and saved images; returns the summary."""
    items = ItemLog(run_dir)
    records = items.items()
    if not records:
        raise LmrepError(f"'{run_dir.path}' has no finished reconstruction ({ITEMS} is empty or missing): nothing "
                         "to report; rerun the command to resume it")
    summary = summarize(records)
    run_dir.write_json("summary.json", summary)
    tensors = items.tensors()
    rows = []
    for model in summary:
        for name in dict.fromkeys(r["image"] for r in records):
            recs = sorted((r for r in records if r["model"] == model and r["image"] == name),
                          key=lambda r: (r["depth"], r["layer"]))
            original = next(tensors[f"{r['id']}/original"] for r in records
                            if r["model"] == model and r["image"] == name and f"{r['id']}/original" in tensors)
            rows.append((f"{model}\n{name}", original[0],
                         [(f"{r['depth']}: {r['psnr']:.1f} dB", tensors[f"{r['id']}/image"][0]) for r in recs]))
    models = " vs ".join(summary)
    reconstruction_grid(rows, run_dir / "reconstructions.png",
                        f"{models}: reconstruction from each layer's output (depth: PSNR)")
    curves = {model: ([r["depth"] for r in rows_], [r["psnr"]["mean"] for r in rows_],
                      None if rows_[0]["psnr"]["sem"] is None else [r["psnr"]["sem"] for r in rows_])
              for model, rows_ in summary.items()}
    psnr_by_depth(curves, run_dir / "psnr.png", f"how much of the image each layer keeps: {models}")
    return summary
