"""Image reconstruction from one layer's output: start from noise and move the image by gradient descent until its
layer output matches the original's (L1), then compare the images (L2, PSNR, SSIM, error per patch in token order).
How close it gets, layer by layer, is the page's "representational accuracy".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from .metrics import l2, per_patch_mse, psnr, ssim


@dataclass(frozen=True)
class ReconstructConfig:
    steps: int = 1000  # the original scripts' 1000
    lr: float = 0.02  # Adam's learning rate, falling linearly to lr/10
    init_mean: float = 0.7  # start: N(init_mean, init_sd^2) per pixel (the original scripts: randn / 20 + 0.7)
    init_sd: float = 0.05

    def as_dict(self) -> dict:
        return asdict(self)


def reconstruct(model: nn.Module, image: torch.Tensor, cfg: ReconstructConfig, seed: int = 0,
                progress: bool = False) -> dict:
    """Images (B, 3, H, W) -> images from noise whose ``model`` output matches theirs in mean L1.
    Returns the reconstruction, the loss per step, and the output distance relative to the target's mean |O|."""
    with torch.no_grad():
        target = model(image)  # (B, T, D)
    gen = torch.Generator().manual_seed(seed)
    x = (cfg.init_mean + cfg.init_sd * torch.randn(image.shape, generator=gen)).to(image).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / max(1, cfg.steps - 1))
    curve = []
    for _ in tqdm(range(cfg.steps), disable=not progress, leave=False, desc="reconstruct"):
        opt.zero_grad()
        loss = (model(x) - target).abs().mean()
        loss.backward()
        opt.step()
        sched.step()
        curve.append(float(loss.detach()))
    with torch.no_grad():
        final = float((model(x) - target).abs().mean())
    return dict(image=x.detach(), curve=curve, output_l1=final, relative_output_l1=final / float(target.abs().mean()))


def image_metrics(x: torch.Tensor, ref: torch.Tensor, patch: int) -> dict:
    """Metrics of one reconstruction (1, 3, H, W) against its original, on the image clamped to [0, 1]."""
    x = x.clamp(0, 1)
    errs = per_patch_mse(x, ref, patch)[0]  # (N,)
    q = max(1, errs.numel() // 4)
    return dict(l2=float(l2(x, ref)[0]), psnr=float(psnr(x, ref)[0]), ssim=float(ssim(x, ref)[0]),
                per_patch_mse=errs.tolist(), front_back=float(errs[:q].mean() / errs[-q:].mean().clamp_min(1e-12)))
