"""Figures of the reproduction reports, drawn from summary numbers (mean, sem), never from a model."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..records.plots import save_figure, stat_mean, stat_sem  # noqa: E402

LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "x"]


def grouped_bars(groups: list[str], series: dict[str, list[dict]], path: str | Path, title: str, ylabel: str,
                 ylim: tuple[float, float] | None = (0, 1.05), logy: bool = False) -> Path:
    """One cluster of bars per group, one bar per series, each with its standard error."""
    n = max(1, len(series))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(1, n / 2) + 2), 4.4))
    for j, (label, stats) in enumerate(series.items()):
        xs = [i + (j - (n - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [stat_mean(s) for s in stats], width, yerr=[stat_sem(s) for s in stats], capsize=2, label=label,
               color=f"C{j % 10}")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if logy:
        ax.set_yscale("log")
    elif ylim:
        ax.set_ylim(*ylim)
    if n > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def lines(series: dict[str, tuple[list[float], list[dict]]], path: str | Path, title: str, xlabel: str,
          ylabel: str, ylim: tuple[float, float] | None = (-0.02, 1.02), logx: bool = False,
          kinds: dict[str, tuple[str, str, str]] | None = None) -> Path:
    """One line per series over its own x values, with a band of +- one standard error; the legend sits outside
    the axes. ``kinds[label] = (colour key, line key, marker key)``: series sharing a key share that part of
    their style (e.g. colour by method, line by decoder, marker by model), so many series stay apart; without
    it each series gets its own colour. Whole-number x values get whole-number ticks."""
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    looks = styles(kinds or {label: (label, "", "") for label in series})
    for label, (xs, stats) in series.items():
        style = looks[label]
        m = [stat_mean(s) for s in stats]
        e = [stat_sem(s) for s in stats]
        ax.plot(xs, m, ms=4, lw=1.4, label=label, **style)
        ax.fill_between(xs, [a - b for a, b in zip(m, e)], [a + b for a, b in zip(m, e)], alpha=0.12,
                        color=style["color"])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim:
        ax.set_ylim(*ylim)
    if logx:
        ax.set_xscale("log")
    elif all(float(x).is_integer() for xs, _ in series.values() for x in xs):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def styles(kinds: dict[str, tuple[str, str, str]]) -> dict[str, dict]:
    """label -> matplotlib style: one colour per distinct first key, one line style per second, one marker per
    third, each in first-seen order."""
    index = [{k: i for i, k in enumerate(dict.fromkeys(v[j] for v in kinds.values()))} for j in range(3)]
    return {label: dict(color=f"C{index[0][c] % 10}", ls=LINESTYLES[index[1][ls] % len(LINESTYLES)],
                        marker=MARKERS[index[2][mk] % len(MARKERS)]) for label, (c, ls, mk) in kinds.items()}


def who(items: list[dict]) -> str:
    """The language models behind a run's items, each said to be trained or untrained: for every figure title."""
    pairs = dict.fromkeys((r["model"], r["trained"]) for r in items if "model" in r and "trained" in r)
    return ", ".join(f"{m} ({'trained' if t else 'untrained'})" for m, t in pairs)


def curves(series: dict[str, tuple[list[int], list[float]]], path: str | Path, title: str, ylabel: str,
           levels: dict[str, float] | None = None) -> Path:
    """Loss curves (steps, values) on a log scale; a dashed line per label marks its level (eq. 4's m)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for j, (label, (xs, ys)) in enumerate(series.items()):
        color = f"C{j % 10}"
        ax.plot(xs, [float("nan") if y is None else y for y in ys], color=color, lw=1.3, label=label)
        if levels and levels.get(label) is not None:
            ax.axhline(levels[label], color=color, ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
