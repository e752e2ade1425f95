"""Figures of manifold walks, drawn from walk records (JSON), never from a model."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..records.plots import save_figure, short, stat_mean, stat_sem, value  # noqa: E402


def walk_figure(records: list[dict], path: str | Path, title: str = "") -> Path:
    """Left: r along each walk. Right: output change against input change (the walk's path in distance space)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for i, rec in enumerate(records):
        traj, color = rec["trajectory"], f"C{i % 10}"
        label = short(f"{rec['prompt']} (seed {rec['seed']})", 32)
        a.plot([t["step"] for t in traj], [value(t["r"]) for t in traj], color=color, lw=1.3, label=label)
        b.plot([t["output_l1"] for t in traj], [t["input_l1"] for t in traj], color=color, lw=1.3, marker=".")
    a.set_xlabel("step")
    a.set_ylabel("r = ||e - e_n||_1 / ||O(e) - O(e_n)||_1")
    a.set_yscale("log")
    b.set_xlabel("output change ||O(e) - O(e_n)||_1")
    b.set_ylabel("input change ||e - e_n||_1")
    lim = max([t["output_l1"] for rec in records for t in rec["trajectory"]] + [1e-12])
    b.plot([0, lim], [0, lim], color="gray", ls="--", lw=0.8, label="r = 1")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    if len(records) <= 10:
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def sweep_figure(rows: dict[str, tuple[list[int], list[dict]]], path: str | Path, title: str,
                 targets: dict[str, float] | None = None) -> Path:
    """r (mean +- sem) against inner steps, one line per model; dashed lines mark the page's reported values."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for j, (label, (xs, stats)) in enumerate(rows.items()):
        ys, es = [stat_mean(s) for s in stats], [stat_sem(s) for s in stats]
        ax.errorbar(xs, ys, yerr=es, marker="o", ms=4, capsize=3, lw=1.4, label=label, color=f"C{j % 10}")
    for name, level in (targets or {}).items():
        ax.axhline(level, color="gray", ls="--", lw=0.8)
        ax.text(ax.get_xlim()[0], level, f" page: {name}", fontsize=7, va="bottom", color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inner gradient steps per round")
    ax.set_ylabel("r after the walk")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def compare_figure(panels: dict[str, dict[str, list[dict]]], path: str | Path, title: str) -> Path:
    """One panel per model: input change against output change along each walk (log-log, one dot per step),
    coloured by method."""
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.2), squeeze=False)
    for ax, (model, by_method) in zip(axes[0], panels.items()):
        for j, (method, recs) in enumerate(by_method.items()):
            for k, rec in enumerate(recs):
                traj = [t for t in rec["trajectory"] if t["output_l1"] > 0 and t["input_l1"] > 0]
                ax.plot([t["output_l1"] for t in traj], [t["input_l1"] for t in traj], color=f"C{j % 10}",
                        lw=1.0, alpha=0.7, marker=".", ms=3, label=method if k == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("output change (L1)")
        ax.set_ylabel("input change (L1)")
        ax.set_title(model, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
