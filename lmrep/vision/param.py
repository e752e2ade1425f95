"""Image parameterisations: each returns ``(params, make_image)`` as in lucent, where ``params`` is the list of
tensors the optimiser moves and ``make_image()`` gives the current images (B, 3, H, W).

Images are not squashed into [0, 1] here (the original scripts did not), so "how much a patch changed" is measured
in plain pixel units for both parameterisations; figures clamp for display only.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

Param = tuple[list[torch.Tensor], Callable[[], torch.Tensor]]


def _noise(shape: tuple[int, ...], generator: torch.Generator | None, same_start: bool) -> torch.Tensor:
    """Standard normal noise of ``shape``; with ``same_start`` every batch item gets the same draw."""
    if not same_start:
        return torch.randn(shape, generator=generator)
    return torch.randn((1,) + tuple(shape[1:]), generator=generator).expand(shape).clone()


def pixel_image(shape: tuple[int, int, int, int], mean: float = 0.7, sd: float = 0.05,
                generator: torch.Generator | None = None, device="cpu", same_start: bool = False) -> Param:
    """Pixels are the parameters, starting at N(mean, sd^2) (the original scripts: randn / 20 + 0.7)."""
    x = (mean + sd * _noise(shape, generator, same_start)).to(device).requires_grad_(True)
    return [x], lambda: x


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Spatial frequency magnitude of each rfft2 coefficient, (h, w // 2 + 1)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fy * fy + fx * fx)


def fft_image(shape: tuple[int, int, int, int], mean: float = 0.5, sd: float = 0.01, decay_power: float = 1.0,
              generator: torch.Generator | None = None, device="cpu", same_start: bool = False) -> Param:
    """Fourier-space parameters, each frequency scaled by 1/f^decay_power (lucent's FFT image): steps of the
    optimiser move low frequencies more, which favours smooth images without a blur."""
    B, C, H, W = shape
    freqs = rfft2d_freqs(H, W)  # (H, W//2+1)
    scale = (1.0 / torch.clamp(freqs, min=1.0 / max(H, W)) ** decay_power) * math.sqrt(H * W)
    scale = scale.to(device)
    spectrum = (sd * _noise((B, C, H, W // 2 + 1, 2), generator, same_start)).to(device).requires_grad_(True)

    def make_image() -> torch.Tensor:
        z = torch.view_as_complex(spectrum) * scale  # (B, C, H, W//2+1)
        return mean + torch.fft.irfft2(z, s=(H, W), norm="ortho") / 4.0  # (B, C, H, W)
    return [spectrum], make_image


PARAMS = {"pixel": pixel_image, "fft": fft_image}
