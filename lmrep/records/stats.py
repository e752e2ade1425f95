"""Means and standard errors: the one definition every summary, report and figure uses."""
from __future__ import annotations

import math
from typing import Iterable

from .health import counts, healthy


def mean_sem(values: Iterable[float | None]) -> dict:
    """Mean and standard error of the mean over the finite values; n counts them. With fewer than two values
    there is no standard error (``sem`` is None), so nothing downstream can mistake one item for a certainty."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return dict(mean=None, sem=None, n=0)
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return dict(mean=mean, sem=None, n=1)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return dict(mean=mean, sem=math.sqrt(var / len(xs)), n=len(xs))


def group_stats(records: list[dict], by: tuple[str, ...], fields: tuple[str, ...]) -> list[dict]:
    """One row per distinct value of ``by`` (in first-seen order) with mean_sem of each field over the items whose
    run did not diverge, and ``health``: how many items are ok, stalled, diverged (``records.health``)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    return [dict(zip(by, key), items=len(rs), health=counts(rs), **{f: mean_sem(r.get(f) for r in healthy(rs))
                                                                    for f in fields})
            for key, rs in groups.items()]


def fmt(stat: dict | None, digits: int = 2) -> str:
    """'0.83 ± 0.05 (n=8)' for a mean_sem dict, '0.83 (n=1)' without a standard error, '-' when there is nothing."""
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("sem") is None:
        return f"{stat['mean']:.{digits}f} (n={stat.get('n', 1)})"
    n = f" (n={stat['n']})" if stat.get("n") else ""
    return f"{stat['mean']:.{digits}f} ± {stat['sem']:.{digits}f}{n}"


def num(x: float | None, digits: int = 4) -> str:
    """A number to ``digits`` significant digits, '-' for None."""
    return "-" if x is None else f"{x:.{digits}g}"
