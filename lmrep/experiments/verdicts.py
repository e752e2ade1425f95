"""The one verdict rule: a declared claim (``claims.ClaimSpec``) and the items of a run -> holds / does not hold /
not decided, with the numbers it rests on.

Only the items whose run did not diverge count (``records.health``); the counts of each label stand beside every
verdict. The statistics are scipy's, with 95% intervals:

    paired      the same prompt and seed (or what the claim's ``pair`` names: the same image, the same panel)
                under two conditions; the mean of their differences (a - b) with a
                bootstrap interval (BCa). holds: the interval is above 0 and the mean is at least the effect that
                counts; does not hold: the interval is below that effect; equal (``direction="equal"``): the
                interval inside +-effect holds, one wholly outside it does not
    level       one condition's mean (bootstrap interval) against a level, or inside a band
    steps       steps until eq. 4's threshold, censored at each run's budget (a run that never got there is
                "more than N"): Kaplan-Meier medians with their intervals (``scipy.stats.ecdf`` of
                ``CensoredData``), the ratio a/b bounded by them, and a log-rank test beside. A side whose median
                was never reached has no upper bound, so two censored sides are never "equal" and a ratio with
                both sides censored is not decided
    steps_level one condition's median steps against a level (the page's "~100 steps")
    existence   at least one healthy item meets every test; does not hold only when none of at least min_n does

No verdict is a fixed string: each comes from this rule and the items.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..records.health import counts, counts_text, healthy
from .claims import CLAIMS, METRICS, OPS, ClaimSpec

LEVEL = 0.95  # the confidence of every interval
RESAMPLES = 2000
HOLDS, FAILS = "holds", "does not hold"


@dataclass
class Decision:
    """A claim decided: the verdict, what it rests on in words, and the numbers."""

    spec: ClaimSpec
    verdict: str  # "holds", "does not hold" or "not decided (why)"
    measured: str
    n: int  # the items (or pairs) the verdict rests on
    interval: tuple[float, float] | None = None


def select(items: list[dict], where: dict) -> list[dict]:
    """The items whose fields have the given values."""
    return [r for r in items if all(r.get(k) == v for k, v in where.items())]


def value(name: str, item: dict) -> float | None:
    """A derived metric (``claims.METRICS``) or the item's own field, as a finite number (None: none)."""
    v = METRICS[name](item) if name in METRICS else item.get(name)
    if v is None or not math.isfinite(float(v)):
        return None
    return float(v)


def metric(spec: ClaimSpec, item: dict) -> float | None:
    """The claim's metric of one item."""
    return value(spec.metric, item)


def interval(xs: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its bootstrap interval (BCa; the percentile interval where BCa cannot be
    computed; a point when every value is the same)."""
    a = np.asarray(xs, dtype=float)
    mean = float(a.mean())
    if np.ptp(a) == 0:
        return mean, mean, mean
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ci = stats.bootstrap((a,), np.mean, confidence_level=LEVEL, n_resamples=RESAMPLES, method=method,
                                 rng=np.random.default_rng(0)).confidence_interval
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            return mean, float(ci.low), float(ci.high)
    return mean, mean, mean


def _versus(mean: float, low: float, high: float, spec: ClaimSpec, zero: float, threshold: float) -> str | None:
    """holds / does not hold / None from an interval, the claim's direction and its effect (or band). ``zero``: what
    the interval must clear; ``threshold``: what the mean must reach, in the claim's direction (a level: both are
    the level; a paired difference: 0, and the effect on the claim's side of 0)."""
    if spec.direction in ("within", "equal"):
        lo, hi = spec.band if spec.direction == "within" else (-spec.effect, spec.effect)
        return HOLDS if lo <= low and high <= hi else FAILS if high < lo or low > hi else None
    sign = 1 if spec.direction == "greater" else -1
    m, lo, hi = (mean, low, high) if sign > 0 else (-mean, -high, -low)
    effect, base = sign * threshold, sign * zero
    if lo > base and m >= effect:
        return HOLDS
    return FAILS if hi < effect else None


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _undecided(why: str) -> str:
    return f"not decided ({why})"


def _health(items: list[dict]) -> str:
    return f"runs {counts_text(counts(items))}"


def decide(spec: ClaimSpec, items: list[dict]) -> Decision:
    """The verdict on one claim from a run's items."""
    return {"paired": _paired, "level": _level, "steps": _steps, "steps_level": _steps_level,
            "existence": _existence}[spec.kind](spec, items)


def _budget_short(spec: ClaimSpec, items: list[dict]) -> str | None:
    """Why a claim about a step budget cannot be decided from runs with a smaller one (None: it can)."""
    budgets = [r.get("budget") or r.get("steps") for r in items]
    budgets = [b for b in budgets if b is not None]
    if spec.budget and budgets and min(budgets) < spec.budget:
        return f"runs of N = {min(budgets)} steps; the claim is about N = {spec.budget}"
    return None


def _paired(spec: ClaimSpec, items: list[dict]) -> Decision:
    a_all, b_all = select(items, spec.a), select(items, spec.b)
    a = {tuple(r.get(k) for k in spec.pair): metric(spec, r) for r in healthy(a_all)}
    b = {tuple(r.get(k) for k in spec.pair): metric(spec, r) for r in healthy(b_all)}
    keys = sorted((k for k in a.keys() & b.keys() if a[k] is not None and b[k] is not None), key=str)
    d = [a[k] - b[k] for k in keys]
    head = f"a: {_health(a_all)}; b: {_health(b_all)}"
    means = (f"a {_fmt(float(np.mean([a[k] for k in keys])))}, b {_fmt(float(np.mean([b[k] for k in keys])))}"
             if keys else "no pair")
    if len(d) < spec.min_n:
        return Decision(spec, _undecided(f"{len(d)} pairs, fewer than {spec.min_n}"),
                        f"{len(d)} pairs ({means}); {head}", len(d))
    mean, low, high = interval(d)
    same = " and ".join(spec.pair)
    text = (f"mean a - b {_fmt(mean)} [{_fmt(low)}, {_fmt(high)}] over {len(d)} pairs (same {same}; "
            f"{means}{_wilcoxon(d)}); {head}")
    got = _versus(mean, low, high, spec, 0.0, spec.effect if spec.direction == "greater" else -spec.effect)
    return Decision(spec, got or _undecided("the interval spans the effect that counts"), text, len(d), (low, high))


def _wilcoxon(d: list[float]) -> str:
    if not any(d):
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = stats.wilcoxon(d).pvalue
    return f"; Wilcoxon p = {p:.2g}" if math.isfinite(p) else ""


def _level(spec: ClaimSpec, items: list[dict]) -> Decision:
    chosen = select(items, spec.a)
    xs = [v for v in (metric(spec, r) for r in healthy(chosen)) if v is not None]
    head = _health(chosen)
    short = _budget_short(spec, healthy(chosen))
    if len(xs) < spec.min_n or short:
        why = short or f"{len(xs)} items, fewer than {spec.min_n}"
        shown = f"mean {_fmt(float(np.mean(xs)))} over {len(xs)} items; " if xs else ""
        return Decision(spec, _undecided(why), f"{shown}{head}", len(xs))
    mean, low, high = interval(xs)
    got = _versus(mean, low, high, spec, spec.effect, spec.effect)
    text = f"mean {_fmt(mean)} [{_fmt(low)}, {_fmt(high)}] over {len(xs)} items; {head}"
    return Decision(spec, got or _undecided("the interval spans the level"), text, len(xs), (low, high))


def _existence(spec: ClaimSpec, items: list[dict]) -> Decision:
    chosen = select(items, spec.a)
    ok = healthy(chosen)
    meets = [r for r in ok if all(value(f, r) is not None and OPS[op](value(f, r), v) for f, op, v in spec.tests)]
    text = f"{len(meets)} of {len(ok)} healthy items meet it (rate {len(meets) / len(ok):.2f}); " if ok else ""
    text += _health(chosen)
    if meets:
        return Decision(spec, HOLDS, text, len(ok))
    if len(ok) >= spec.min_n:
        return Decision(spec, FAILS, text, len(ok))
    return Decision(spec, _undecided(f"none found in {len(ok)} items, fewer than {spec.min_n}"), text, len(ok))



def km(items: list[dict], field: str) -> dict | None:
    """Kaplan-Meier estimate of the steps until ``field``'s event, counted from 1 (a run that never got there is
    censored at its budget + 1): the median and its interval's ends, each None when never reached within what
    was observed; ``seen``: the longest time observed."""
    got = [r[field] + 1 for r in items if r.get(field) is not None]
    cens = [(r.get("budget") or r["steps"]) + 1 for r in items if r.get(field) is None]
    if not got and not cens:
        return None
    res = stats.ecdf(stats.CensoredData(uncensored=got, right=cens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = res.sf.confidence_interval(LEVEL)
    q, p = res.sf.quantiles, res.sf.probabilities
    low = np.where(np.isnan(ci.low.probabilities), p, ci.low.probabilities)  # NaN where the estimate is 0 or 1
    high = np.where(np.isnan(ci.high.probabilities), p, ci.high.probabilities)

    def median(probs) -> float | None:
        hit = np.nonzero(probs <= 0.5)[0]
        return float(q[hit[0]]) if len(hit) else None
    return dict(median=median(p), low=median(low), high=median(high), reached=len(got), n=len(got) + len(cens),
                seen=float(max(got + cens)), data=stats.CensoredData(uncensored=got, right=cens))


def _km_text(k: dict) -> str:
    if k["median"] is None:
        return f"median > {k['seen'] - 1:g} steps ({k['reached']}/{k['n']} reached)"
    hi = "?" if k["high"] is None else f"{k['high'] - 1:g}"
    return f"median {k['median'] - 1:g} steps [{k['low'] - 1:g}, {hi}] ({k['reached']}/{k['n']} reached)"


def _steps_prelude(spec: ClaimSpec, items: list[dict], sides: list[dict]) -> tuple[list, str, str | None]:
    """The Kaplan-Meier estimate of each side, the text they rest on, and why they cannot decide (None: they
    can): too few items, a budget short of the claim's, or no side with a median."""
    chosen = [select(items, s) for s in sides]
    ests = [km(healthy(c), spec.metric) for c in chosen]
    text = "; ".join(f"{'ab'[i]}: {_km_text(k) if k else '-'}, {_health(c)}"
                     for i, (k, c) in enumerate(zip(ests, chosen)))
    short = _budget_short(spec, [r for c in chosen for r in healthy(c)])
    if any(k is None or k["n"] < spec.min_n for k in ests):
        n = min((k or {"n": 0})["n"] for k in ests)
        return ests, text, f"{n} items, fewer than {spec.min_n}"
    if short:
        return ests, text, short
    if all(k["median"] is None for k in ests):
        return ests, text, "every side censored at its budget: more than N steps each, which is not equal"
    return ests, text, None


def _steps(spec: ClaimSpec, items: list[dict]) -> Decision:
    (a, b), text, why = _steps_prelude(spec, items, [spec.a, spec.b])
    if why:
        return Decision(spec, _undecided(why), text, min((k or {"n": 0})["n"] for k in (a, b)))
    inf = math.inf
    lo = (a["low"] or a["seen"]) / (b["high"] or inf)  # the ratio's bounds from the medians' intervals
    hi = (a["high"] or inf) / (b["low"] or b["seen"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = stats.logrank(a["data"], b["data"]).pvalue
    text += f"; ratio a/b in [{_fmt(lo)}, {_fmt(hi)}]" + (f", log-rank p = {p:.2g}" if math.isfinite(p) else "")
    if spec.direction == "equal":
        band = (1 / (1 + spec.effect), 1 + spec.effect)
        got = HOLDS if band[0] <= lo and hi <= band[1] else FAILS if lo > band[1] or hi < band[0] else None
    else:
        got = HOLDS if lo >= spec.effect and lo > 1 else FAILS if hi < spec.effect else None
    return Decision(spec, got or _undecided("the ratio's interval spans the effect that counts"), text,
                    min(a["n"], b["n"]), (lo, hi))


def _steps_level(spec: ClaimSpec, items: list[dict]) -> Decision:
    (a,), text, why = _steps_prelude(spec, items, [spec.a])
    if why and not why.startswith("every side"):
        return Decision(spec, _undecided(why), text, (a or {"n": 0})["n"])
    low, high = (a["low"] or a["seen"]) - 1, None if a["high"] is None else a["high"] - 1
    got = HOLDS if high is not None and high <= spec.effect else FAILS if low > spec.effect else None
    return Decision(spec, got or _undecided("the median's interval spans the level"), text, a["n"],
                    (low, math.inf if high is None else high))


def decide_all(experiment: str, items: list[dict]) -> list[dict]:
    """Every claim declared for ``experiment``, decided from its items: JSON-ready rows for summary.json."""
    out = []
    for spec in (c for c in CLAIMS if c.experiment == experiment):
        d = decide(spec, items)
        out.append(dict(key=spec.key, page=spec.page, measured=d.measured, verdict=d.verdict, n=d.n))
    return out
