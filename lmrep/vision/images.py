"""Images to reconstruct: scikit-image's bundled samples by name, a named set of them, a generated test card, or the
user's own file.

Every image comes back as (1, 3, size, size) float32 in [0, 1]: a square (the central one unless the sample names
another), resized with antialiasing; grayscale images become RGB. The samples are read straight from the files in
scikit-image's wheel (no scikit-image import, no download).
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .samples import GENERATED, open_image


def load_image(spec: str, size: int) -> torch.Tensor:
    """A sample name (see ``available()``) or a path to an image file -> (1, 3, size, size) in [0, 1]."""
    if spec == GENERATED:
        return synthetic(size)
    img, square = open_image(spec)
    w, h = img.size
    x, y, share = square
    s = max(1, round(share * min(w, h)))
    left, top = round(x * (w - s)), round(y * (h - s))
    img = img.crop((left, top, left + s, top + s))
    img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (size, size, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).clamp(0, 1).contiguous()


def synthetic(size: int) -> torch.Tensor:
    """A deterministic synthetic image, (1, 3, size, size): colour ramps, a disc, a checker block and stripes,
    so both smooth regions and edges are there to be reconstructed."""
    t = torch.linspace(0, 1, size)
    y, x = torch.meshgrid(t, t, indexing="ij")  # (size, size) each
    r, g, b = x, y, 1 - 0.5 * (x + y)
    disc = ((x - 0.35) ** 2 + (y - 0.4) ** 2) < 0.04
    checker = ((x * 8).floor() + (y * 8).floor()) % 2 == 0
    block = (x > 0.6) & (y > 0.55) & (y < 0.9)
    stripes = (torch.sin(40 * x) > 0) & (y < 0.25)
    img = torch.stack([r, g, b])  # (3, size, size)
    img[:, disc] = torch.tensor([0.9, 0.2, 0.1])[:, None]
    img[:, block & checker] = 0.05
    img[:, block & ~checker] = 0.95
    img[:, stripes] = torch.tensor([0.1, 0.1, 0.6])[:, None]
    return img.unsqueeze(0)
