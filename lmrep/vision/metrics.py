"""Image similarity: L2, PSNR, SSIM, and error per patch in token order. Images are (B, 3, H, W) in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .transforms import gaussian_kernel


def l2(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Euclidean distance over all pixel values, (B,)."""
    return (x - ref).flatten(1).norm(dim=1)


def psnr(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, (B,); identical images give inf."""
    mse = ((x - ref) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(data_range ** 2 / mse)


def ssim(x: torch.Tensor, ref: torch.Tensor, data_range: float = 1.0, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), (B,): Gaussian window sigma 1.5 (radius 3 sigma), K1 = 0.01,
    K2 = 0.03, population variances, mean over pixels away from the border and over channels; the same settings
    as scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``."""
    C = x.shape[1]
    r = int(3.5 * sigma + 0.5)
    k = gaussian_kernel(sigma, r).to(x)

    def smooth(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C, H - 2r, W - 2r), valid region only
        t = F.conv2d(t, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
        return F.conv2d(t, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = smooth(x), smooth(ref)
    vx, vy = smooth(x * x) - mx * mx, smooth(ref * ref) - my * my
    cxy = smooth(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)


def per_patch_mse(x: torch.Tensor, ref: torch.Tensor, patch: int) -> torch.Tensor:
    """Mean squared error of each patch, (B, N), patches left to right and top to bottom (the token order)."""
    d = F.avg_pool2d((x - ref) ** 2, patch)  # (B, C, H/p, W/p)
    return d.mean(dim=1).flatten(1)


def per_patch_change(end: torch.Tensor, start: torch.Tensor, patch: int) -> torch.Tensor:
    """How far each patch moved: L2 norm of its pixel change, (B, N), in token order."""
    d = F.avg_pool2d((end - start) ** 2, patch) * (patch * patch)  # (B, C, H/p, W/p): sums over the patch
    return d.sum(dim=1).flatten(1).sqrt()


def breadth(change: torch.Tensor) -> torch.Tensor:
    """How broadly a change is spread over the patches, (B,) from per-patch changes (B, N): the effective number
    of patches, exp of the entropy of each patch's share of the change energy (its squared change), over N. 1/N:
    all of it in one patch; 1: spread evenly over every patch; NaN where nothing moved."""
    energy = change.double() ** 2  # (B, N)
    p = energy / energy.sum(dim=1, keepdim=True)  # (B, N); NaN rows where the total is 0
    h = -torch.where(p > 0, p * p.log(), torch.zeros_like(p)).sum(dim=1)  # (B,) entropy in nats
    return (h.exp() / change.shape[1]).where(energy.sum(dim=1) > 0, torch.nan).float()


def share_holding(change: torch.Tensor, part: float = 0.9) -> torch.Tensor:
    """The share of patches that hold ``part`` of the change energy, the largest first, (B,) from (B, N); NaN where
    nothing moved."""
    energy = (change.double() ** 2).sort(dim=1, descending=True).values  # (B, N)
    total = energy.sum(dim=1, keepdim=True)  # (B, 1)
    count = ((energy.cumsum(dim=1) < part * total).sum(dim=1) + 1).clamp(max=change.shape[1])  # (B,)
    return (count.double() / change.shape[1]).where(total[:, 0] > 0, torch.nan).float()
