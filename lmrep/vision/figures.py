"""Figures for the vision experiments, drawn from numbers and image tensors already written to a run folder."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..records.plots import save_figure  # noqa: E402


def _show(ax, image: torch.Tensor) -> None:
    """One image (3, H, W), clamped to [0, 1] for display only."""
    ax.imshow(image.clamp(0, 1).permute(1, 2, 0).cpu().numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _square(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def feature_grid(images: torch.Tensor, titles: list[str], path: str | Path, title: str = "") -> Path:
    """The page's panel grid: images (P, 3, H, W), panels in reading order, 4 x 4 for 16."""
    rows, cols = _square(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t in zip(axes.flat, images, titles):
        ax.axis("on")
        _show(ax, img)
        ax.set_title(t, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def change_heatmaps(change: list[list[float]], grid: tuple[int, int], titles: list[str], path: str | Path,
                    title: str = "") -> Path:
    """How far each patch moved, one heatmap per panel on the patch grid (rows x cols), shared colour scale."""
    c = np.asarray(change)  # (P, N)
    rows, cols = _square(len(c))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols + 1, 2.3 * rows), squeeze=False, layout="constrained")
    vmax = float(c.max()) or 1.0
    for ax in axes.flat:
        ax.axis("off")
    im = None
    for ax, row, t in zip(axes.flat, c, titles):
        im = ax.imshow(row.reshape(grid), cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(t, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="L2 change of the patch")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def change_profile(mean: list[float], sem: list[float] | None, path: str | Path, title: str = "") -> Path:
    """Mean change per patch along the token order, with a standard-error band over seeds."""
    m = np.asarray(mean)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(np.arange(len(m)), m, lw=1.4)
    if sem is not None:
        s = np.asarray(sem)
        ax.fill_between(np.arange(len(m)), m - s, m + s, alpha=0.3)
    ax.set_xlabel("patch (token order: left to right, top to bottom)")
    ax.set_ylabel("L2 change from the start")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def reconstruction_grid(rows: list[tuple[str, torch.Tensor, list[tuple[str, torch.Tensor]]]],
                        path: str | Path, title: str = "") -> Path:
    """One row per (model, image): the original, then the reconstruction from each layer, titled by layer."""
    ncols = 1 + max(len(r[2]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.8 * ncols, 2.0 * len(rows)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (label, original, recons) in enumerate(rows):
        axes[i, 0].axis("on")
        _show(axes[i, 0], original)
        axes[i, 0].set_ylabel(label, fontsize=7)
        axes[i, 0].set_title("original", fontsize=7)
        for j, (t, img) in enumerate(recons, start=1):
            axes[i, j].axis("on")
            _show(axes[i, j], img)
            axes[i, j].set_title(t, fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def psnr_by_depth(curves: dict[str, tuple[list[int], list[float], list[float] | None]], path: str | Path,
                  title: str = "") -> Path:
    """PSNR against depth (blocks run), one line per model: label -> (depths, mean PSNR, sem or None)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (depths, mean, sem) in curves.items():
        line, = ax.plot(depths, mean, marker="o", ms=3, lw=1.4, label=label)
        if sem is not None:
            m, s = np.asarray(mean), np.asarray(sem)
            ax.fill_between(depths, m - s, m + s, alpha=0.25, color=line.get_color())
    ax.set_xlabel("layer (blocks run; 0 = the stem)")
    ax.set_ylabel("PSNR of the reconstruction (dB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
