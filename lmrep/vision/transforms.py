"""Transforms applied to the image before each forward pass of feature visualisation, as small closures.

A transform is ``t(images (B, 3, H, W), progress) -> images (B, 3, H, W)``, differentiable, where ``progress`` in
[0, 1] is how far the optimisation has got (for schedules such as the blur's sigma). ``compose([...])`` chains
them. Randomness comes from a ``torch.Generator`` passed in, so a seed fixes every draw.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, float], torch.Tensor]


def compose(transforms: Sequence[Transform]) -> Transform:
    """Apply ``transforms`` in order; an empty list is the identity."""
    def t(x: torch.Tensor, progress: float) -> torch.Tensor:
        for f in transforms:
            x = f(x, progress)
        return x
    return t


def gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    """A normalised 1-D Gaussian, (2 * radius + 1,)."""
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders (so a constant image stays constant)."""
    if sigma <= 0:
        return x
    radius = min(int(math.ceil(3 * sigma)), x.shape[-1] - 1, x.shape[-2] - 1)
    k = gaussian_kernel(sigma, radius).to(x)
    C = x.shape[1]
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)  # along W
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)  # along H


def gaussian_blur(sigma: tuple[float, float] = (2.4, 0.8)) -> Transform:
    """Blur with sigma falling linearly from ``sigma[0]`` to ``sigma[1]`` over the run (the original scripts'
    2.4 -> 0.8); kernel radius ceil(3 sigma)."""
    start, end = sigma

    def t(x: torch.Tensor, progress: float) -> torch.Tensor:
        return blur(x, start + (end - start) * progress)
    return t


def jitter(d: int, generator: torch.Generator) -> Transform:
    """Shift the image by a random (dy, dx) in [-d, d]^2, wrapping around; d = 0 is the identity."""
    def t(x: torch.Tensor, progress: float) -> torch.Tensor:
        if d == 0:
            return x
        dy, dx = (int(v) for v in torch.randint(-d, d + 1, (2,), generator=generator))
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    return t


def octave_jitter(scales: tuple[float, float] = (2.5, 2.68), generator: torch.Generator | None = None) -> Transform:
    """The original scripts' octaves as a transform: resize the image up by a factor drawn from ``scales``
    (224 -> 560 .. 600 by default) and take a random crop of the original size; scales (1, 1) is the identity."""
    lo, hi = scales

    def t(x: torch.Tensor, progress: float) -> torch.Tensor:
        H, W = x.shape[-2:]
        f = lo + (hi - lo) * float(torch.rand((), generator=generator))
        h, w = round(H * f), round(W * f)
        if (h, w) == (H, W):
            return x
        big = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)  # (B, C, h, w)
        top = int(torch.randint(0, h - H + 1, (), generator=generator))
        left = int(torch.randint(0, w - W + 1, (), generator=generator))
        return big[..., top:top + H, left:left + W]
    return t
