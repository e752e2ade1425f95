"""Figures, built from numbers already computed (never from a model), so they can be redrawn from JSON."""
from __future__ import annotations

import io
import math
from pathlib import Path

from .folder import write_atomic


def pyplot():
    """matplotlib's pyplot drawing to files (Agg), imported when a figure is first drawn: a command that is refused
    or only reads its arguments never loads it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def loss_curves(curves: dict[str, list[float]], path: str | Path, title: str = "", ylabel: str = "loss",
                thresholds: dict[str, float] | None = None, logy: bool = True) -> Path:
    """One line per label; an optional dashed line per label marks a threshold (eq. 4's m)."""
    fig, ax = pyplot().subplots(figsize=(7, 4.2))
    for i, (label, ys) in enumerate(curves.items()):
        color = f"C{i % 10}"
        ax.plot(range(len(ys)), [value(y) for y in ys], color=color, lw=1.4, label=short(label))
        if thresholds and label in thresholds and math.isfinite(value(thresholds[label])):
            ax.axhline(value(thresholds[label]), color=color, ls="--", lw=0.8)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(curves) <= 12:
        ax.legend(fontsize=7, loc="upper right")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def short(s: str, n: int = 40) -> str:
    """A label cut to ``n`` characters, with an ellipsis when cut."""
    return s if len(s) <= n else s[: n - 1] + "…"


PLOTTABLE = 1e100  # beyond this a value is a run that blew up: a gap, not an axis matplotlib cannot tick


def value(x) -> float:
    """A number to plot: None, a non-number, a non-finite value or one beyond ``PLOTTABLE`` becomes NaN (a gap in
    the line); the records keep the number itself."""
    try:
        x = float(x)
    except (TypeError, ValueError, OverflowError):
        return float("nan")
    return x if math.isfinite(x) and abs(x) <= PLOTTABLE else float("nan")


def stat_mean(stat: dict | None) -> float:
    """The mean of a mean_sem dict to plot (NaN when missing)."""
    return float("nan") if not stat or stat.get("mean") is None else stat["mean"]


def stat_sem(stat: dict | None) -> float:
    """The standard error of a mean_sem dict to plot as an error bar (0 when there is none)."""
    return 0.0 if not stat or stat.get("sem") is None else stat["sem"]


def save_figure(fig, path: str | Path) -> Path:
    """Lay out (unless the figure lays itself out), write (PNG, 110 dpi, whole or not at all: see write_atomic)
    and close a figure; the path written."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=110, format="png", bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return write_atomic(path, buf.getvalue())
