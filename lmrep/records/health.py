"""Optimisation health: what a loss curve says about the run that made it, and rates over the healthy runs only.

Every gradient-descent run (inversion, image reconstruction) records its loss curve's start, best, end and best
step, and a label:

    diverged   a loss became non-finite, or the last loss is above ``diverge_factor`` x the first (default 2)
    stalled    not diverged, but the best loss is less than ``STALL_FRACTION`` (5%) below the first
    ok         anything else

A diverged run says nothing about the question it was asked (its step size was wrong), so it never enters a rate:
rates are taken over the items that did not diverge, and the counts of each label stand beside them. Stalled runs
stay in the rates (a loss that will not go down is what "harder to invert" means) and are counted too. Items
without a label (the exact search, the swap search) count as ok.

Every run keeps its best-so-far input (the step of lowest loss) and reports that, not where the last step left it.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

DIVERGE_FACTOR = 2.0  # last loss above this multiple of the first: diverged (InvertConfig.diverge_factor)
STALL_FRACTION = 0.05  # best loss less than this fraction below the first: stalled
LABELS = ("ok", "stalled", "diverged")


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def curve_health(curve: Sequence[float | None], diverge_factor: float = DIVERGE_FACTOR,
                 stall_fraction: float = STALL_FRACTION) -> dict:
    """A loss curve (one value per step, None or NaN where the run had stopped) -> loss_start, loss_best,
    loss_end (the last finite value), best_step (the first step at the lowest loss) and health."""
    finite = [(n, float(v)) for n, v in enumerate(curve) if _finite(v)]
    if not finite:
        return dict(loss_start=None, loss_best=None, loss_end=None, best_step=None, health="diverged")
    best_step, best = min(finite, key=lambda nv: (nv[1], nv[0]))
    start, end = finite[0][1], finite[-1][1]
    broke = len(finite) < len(curve)  # a loss (or its gradient) became non-finite and the run stopped
    if broke or end > diverge_factor * start:
        health = "diverged"
    elif best > (1 - stall_fraction) * start:
        health = "stalled"
    else:
        health = "ok"
    return dict(loss_start=start, loss_best=best, loss_end=end, best_step=best_step, health=health)


def ascent_health(start: float, end: float) -> str:
    """The label of a maximisation (feature visualisation), from its objective's start and end values: diverged if
    a value is not finite, stalled if it did not rise, else ok."""
    if not (_finite(start) and _finite(end)):
        return "diverged"
    return "ok" if end > start else "stalled"


def health_of(item: dict) -> str:
    """An item's label. Items written before runs were labelled get it from what they kept: a run stopped on a
    non-finite loss diverged, and a (thinned) loss curve keeps its first and last points; items of methods without
    a loss curve are ok."""
    if item.get("health"):
        return item["health"]
    if item.get("stopped"):
        return "diverged"
    curve = item.get("loss_curve")
    return curve_health(curve)["health"] if curve else "ok"


def healthy(items: Iterable[dict]) -> list[dict]:
    """The items whose run did not diverge: the only ones a rate is taken over."""
    return [r for r in items if health_of(r) != "diverged"]


def counts(items: Iterable[dict]) -> dict:
    """How many items carry each label: {"ok": n, "stalled": n, "diverged": n}."""
    out = dict.fromkeys(LABELS, 0)
    for r in items:
        out[health_of(r)] += 1
    return out


def counts_text(c: dict | None) -> str:
    """'20 ok / 1 stalled / 3 diverged' (labels with no item left out, but always the ok count)."""
    if not c:
        return "-"
    parts = [f"{c.get('ok', 0)} ok"] + [f"{c[k]} {k}" for k in LABELS[1:] if c.get(k)]
    return " / ".join(parts)
