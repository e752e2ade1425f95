"""Claims as data, one verdict rule: for every declared claim, synthetic items that make it hold, fail and stay
undecided; censored step counts are never "equal"; diverged runs do not count; reversing the items' effect flips
the verdict."""
import math

import numpy as np
import pytest
from scipy import stats

from lmrep.experiments.claims import CLAIMS, METRICS, ClaimSpec
from lmrep.experiments.verdicts import FAILS, HOLDS, decide, decide_all, interval, km, value

BUDGET = 5000


def fields(name: str, v: float | None) -> dict:
    """Item fields that give the metric ``name`` the value v (the inverse of claims.METRICS)."""
    if name.startswith("top"):
        k = round(min(1.0, max(0.0, v)) * 10)
        return {"true_rank": {"pinv": [1] * k + [1000] * (10 - k)}}
    if name.endswith("_at_change"):  # read only where the walk reached another token
        return {"first_change": 1, **fields(name.removesuffix("_at_change"), v)}
    if name.startswith("log10_"):
        return {name.removeprefix("log10_"): 10.0 ** v}
    if name == "ppl_gap":
        return {"log10_ppl": v, "log10_ppl_prompt": 0.0}
    if name == "orthogonality":
        return {"diagnostics": [{"orthogonality": v}]}
    if name.startswith("reached_"):
        return {"steps_to_" + name.removeprefix("reached_"): 0 if v >= 0.5 else None}
    assert name not in METRICS, f"the test has no inverse for the metric {name}"
    return {name: v}


def item(spec: ClaimSpec, where: dict, i: int, v, **more) -> dict:
    pair = {k: f"{k} {i}" for k in spec.pair if k != "seed"}  # what makes items a pair: prompt, image, panel
    return {**where, "prompt": f"prompt {i}", **pair, "seed": i % 3, "budget": BUDGET, "health": "ok",
            **fields(spec.metric, v), **more}


def level_value(spec: ClaimSpec, holds: bool) -> float:
    if spec.direction == "within":
        lo, hi = spec.band
        return (lo + hi) / 2 if holds else hi * 2 + 1
    margin = abs(spec.effect) / 2 if spec.effect else 1.0
    sign = 1 if (spec.direction == "greater") == holds else -1
    return spec.effect + sign * margin


def steps_pair(spec: ClaimSpec, holds: bool, b: int) -> tuple[int, int]:
    """(steps of a, steps of b) that make a steps claim hold or fail."""
    if spec.direction == "equal":
        return (b, b) if holds else (int(b * 4 * (1 + spec.effect)), b)
    return (int(b * (2 * spec.effect + 2)), b) if holds else (max(0, int(b * min(spec.effect, 1) / 4)), b)


def synthetic(spec: ClaimSpec, case: str) -> list[dict]:
    """Items for which the claim should come out ``case``: holds, fails or open (not decided)."""
    n = spec.min_n if case != "open" else spec.min_n - 1
    holds = case == "holds"
    if spec.kind == "paired":
        d = 2 * spec.effect + 1 if holds else -1 - spec.effect
        return [x for i in range(n) for x in (item(spec, spec.a, i, d + 0.01 * (i % 3)),
                                              item(spec, spec.b, i, 0.01 * (i % 3)))]
    if spec.kind == "level":
        return [item(spec, spec.a, i, level_value(spec, holds)) for i in range(n)]
    if spec.kind == "existence":
        return [dict(item(spec, spec.a, i, 0.0), **_tests(spec, holds and i == 0)) for i in range(n)]
    if spec.kind == "steps_level":
        return [item(spec, spec.a, i, None, **{spec.metric: (spec.effect // 4 + i % 3) if holds else None})
                for i in range(n)]
    out = []
    for i in range(n):
        a, b = steps_pair(spec, holds, 40 + i % 5)
        out += [item(spec, spec.a, i, None, **{spec.metric: a}), item(spec, spec.b, i, None, **{spec.metric: b})]
    return out


def _tests(spec: ClaimSpec, meet: bool) -> dict:
    out = {}
    for name, op, v in spec.tests:
        if isinstance(v, bool):
            value = v if meet else not v
        else:
            value = {"<": v - 1, "<=": v - 1, ">": v + 1, ">=": v + 1}[op] if meet else \
                {"<": v + 1, "<=": v + 1, ">": v - 1, ">=": v - 1}[op]
        out.update(fields(name, value) if name in METRICS else {name: value})
    return out


@pytest.mark.parametrize("spec", CLAIMS, ids=[c.key for c in CLAIMS])
def test_every_claim_can_hold_fail_and_stay_open(spec):
    got = {case: decide(spec, synthetic(spec, case)).verdict for case in ("holds", "fails", "open")}
    assert got["holds"] == HOLDS, got
    assert got["fails"] == FAILS, got
    assert got["open"].startswith("not decided ("), got


def test_keys_are_unique_and_every_experiment_decides_its_own():
    assert len({c.key for c in CLAIMS}) == len(CLAIMS)
    spec = next(c for c in CLAIMS if c.kind == "paired")
    rows = decide_all(spec.experiment, synthetic(spec, "holds"))
    assert {r["key"] for r in rows} == {c.key for c in CLAIMS if c.experiment == spec.experiment}
    assert next(r for r in rows if r["key"] == spec.key)["verdict"] == HOLDS


@pytest.mark.parametrize("spec", [c for c in CLAIMS if c.kind == "steps"], ids=lambda c: c.key)
def test_two_censored_sides_are_not_decided(spec):
    items = [item(spec, side, i, None, **{spec.metric: None}) for i in range(spec.min_n) for side in (spec.a, spec.b)]
    assert decide(spec, items).verdict.startswith("not decided (every side censored")


def test_a_faster_side_that_never_got_there_bounds_the_ratio_only_from_above():
    spec = next(c for c in CLAIMS if c.key == "trained-100x")

    def items(a_steps: int, b_budget: int) -> list[dict]:
        return [x for i in range(spec.min_n) for x in (item(spec, spec.a, i, None, **{spec.metric: a_steps}),
                                                        item(spec, spec.b, i, None, budget=b_budget,
                                                             **{spec.metric: None}))]
    assert decide(spec, items(4000, 100)).verdict.startswith("not decided")  # a/b <= 4001/101: 30x not excluded
    assert decide(spec, items(1000, 100)).verdict == FAILS  # a/b <= 1001/101 < 30


def test_diverged_runs_do_not_decide_and_reversing_the_effect_flips_the_verdict():
    spec = next(c for c in CLAIMS if c.key == "training-first-block")
    good = synthetic(spec, "holds")
    reversed_ = [dict(r, token_accuracy=1 - r["token_accuracy"]) for r in good]
    assert decide(spec, good).verdict == HOLDS
    assert decide(spec, reversed_).verdict == FAILS
    diverged = [dict(r, prompt="other " + r["prompt"], health="diverged") for r in reversed_]
    assert decide(spec, good + diverged).verdict == HOLDS  # they would reverse it if they counted
    few = good[: 2 * (spec.min_n - 1)] + [dict(r, health="diverged") for r in good[2 * (spec.min_n - 1):]]
    assert decide(spec, few).verdict.startswith("not decided")


# ---- the rule on claims made up here: each boundary, and the numbers a verdict rests on -----------------------------

def spec_of(kind: str, **kw) -> ClaimSpec:
    b = dict(c="b") if kind in ("paired", "steps") else {}
    return ClaimSpec("made-up", "x", "a made-up claim", kind, "v", dict(c="a"), b, **{"min_n": 3, **kw})


def rows(values, c="a", **more) -> list[dict]:
    return [{**dict(c=c, prompt=f"p{i}", seed=0, health="ok", v=v), **more} for i, v in enumerate(values)]


@pytest.mark.parametrize("direction,effect,band,level,verdict", [  # numbers exact in binary, so ends are met exactly
    ("within", 0.0, (0.25, 0.5), 0.25, HOLDS), ("within", 0.0, (0.25, 0.5), 0.5, HOLDS),  # the band's ends are in it
    ("within", 0.0, (0.25, 0.5), 0.5625, FAILS), ("within", 0.0, (0.25, 0.5), 0.1875, FAILS),
    ("greater", 0.5, (0, 0), 0.5625, HOLDS), ("greater", 0.5, (0, 0), 0.4375, FAILS),
    ("greater", 0.5, (0, 0), 0.5, None),  # exactly at the level: not above it, not below it
    ("less", 0.5, (0, 0), 0.4375, HOLDS), ("less", 0.5, (0, 0), 0.5625, FAILS), ("less", 0.5, (0, 0), 0.5, None)])
def test_a_level_at_and_beside_its_boundaries(direction, effect, band, level, verdict):
    """Equal values give a point interval (the mean itself), so the boundaries are met exactly."""
    d = decide(spec_of("level", direction=direction, effect=effect, band=band), rows([level] * 3))
    assert d.verdict == (verdict or "not decided (the interval spans the level)")
    assert d.interval == (pytest.approx(level), pytest.approx(level)) and d.n == 3


@pytest.mark.parametrize("direction,effect,diff,verdict", [
    ("greater", 0.125, 0.125, HOLDS), ("greater", 0.125, 0.0625, FAILS), ("greater", 0.0, 0.0, None),
    ("greater", 0.0, 0.0625, HOLDS), ("less", 0.0, -0.0625, HOLDS), ("less", 0.0, 0.0625, FAILS),
    ("less", 0.0, 0.0, None), ("less", 0.125, -0.125, HOLDS), ("less", 0.125, -0.0625, FAILS),
    ("greater", 0.125, 0.0625, FAILS), ("equal", 0.125, 0.125, HOLDS), ("equal", 0.125, -0.125, HOLDS),
    ("equal", 0.125, 0.1875, FAILS), ("equal", 0.125, -0.1875, FAILS)])
def test_a_paired_difference_at_and_beside_the_effect(direction, effect, diff, verdict):
    spec = spec_of("paired", direction=direction, effect=effect)
    d = decide(spec, rows([0.5 + diff] * 3) + rows([0.5] * 3, c="b"))
    assert d.verdict == (verdict or "not decided (the interval spans the effect that counts)")
    assert d.n == 3 and d.interval == (pytest.approx(diff), pytest.approx(diff))


def _number(text: str, before: str) -> float:
    return float(text.split(before, 1)[1].split()[0].strip(",;[]()"))


def test_a_paired_verdict_states_the_numbers_it_rests_on():
    a, b = [0.9, 0.7, 0.8, 0.6, 1.0], [0.1, 0.3, 0.2, 0.2, 0.1]
    items = rows(a) + rows(b, c="b") + rows([0.0], c="b", health="diverged") + [dict(rows([5.0])[0], prompt="q")]
    d = decide(spec_of("paired", effect=0.2), items)
    diffs = [x - y for x, y in zip(a, b)]
    mean, low, high = interval(diffs)
    assert d.verdict == HOLDS and d.n == 5 and d.interval == (low, high)  # the unpaired item is in no pair
    assert low < mean < high and _number(d.measured, "mean a - b") == pytest.approx(mean, rel=1e-2)
    assert _number(d.measured, "over") == 5 and _number(d.measured, "; a") == pytest.approx(0.8, rel=1e-2)
    assert _number(d.measured, ", b") == pytest.approx(0.18, rel=1e-2)
    assert _number(d.measured, "Wilcoxon p =") == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=0.05)
    assert "a: runs 6 ok; b: runs 5 ok / 1 diverged" in d.measured
    few = decide(spec_of("paired", effect=0.2, min_n=6), items)
    assert few.verdict == "not decided (5 pairs, fewer than 6)" and few.n == 5 and few.interval is None
    assert "Wilcoxon" not in decide(spec_of("paired"), rows([0.5] * 3) + rows([0.5] * 3, c="b")).measured


def test_the_interval_is_a_95_percent_bootstrap_interval_of_the_mean():
    xs = np.random.default_rng(1).normal(2.0, 1.0, 200).tolist()
    mean, low, high = interval(xs)
    half = 1.96 * np.std(xs, ddof=1) / np.sqrt(len(xs))  # the normal approximation, which it should be close to
    assert mean == pytest.approx(np.mean(xs)) and low < mean < high
    assert high - low == pytest.approx(2 * half, rel=0.15) and (mean - low) == pytest.approx(half, rel=0.25)
    assert interval([3.0, 3.0]) == (3.0, 3.0, 3.0)


def test_items_without_a_finite_value_are_left_out():
    items = rows([0.6, 0.6, 0.6, float("nan"), None, float("inf")])
    d = decide(spec_of("level", effect=0.5), items)
    assert d.verdict == HOLDS and d.n == 3
    assert value("v", dict(v=2)) == 2.0 and value("v", dict(v=float("-inf"))) is None and value("v", {}) is None
    assert value("log10_r", dict(r=100.0)) == pytest.approx(2.0)


def test_a_level_with_too_few_items_or_too_short_runs_is_not_decided():
    few = decide(spec_of("level", effect=0.5), rows([0.9, 0.9]))
    assert few.verdict == "not decided (2 items, fewer than 3)" and few.measured.startswith("mean 0.9 over 2 items")
    short = decide(spec_of("level", effect=0.5, budget=1000), rows([0.9] * 3, budget=200))
    assert short.verdict == "not decided (runs of N = 200 steps; the claim is about N = 1000)"
    assert decide(spec_of("level", effect=0.5, budget=1000), rows([0.9] * 3, steps=1000)).verdict == HOLDS
    assert decide(spec_of("level"), []).measured == "runs 0 ok"


def test_existence_needs_one_item_and_says_how_many():
    spec = spec_of("existence", tests=(("v", ">", 0.5),))
    one = decide(spec, rows([0.1, 0.9, 0.2, 0.3]))
    assert one.verdict == HOLDS and one.measured.startswith("1 of 4 healthy items meet it (rate 0.25)")
    assert decide(spec, rows([0.1, 0.2, 0.3])).verdict == FAILS
    assert decide(spec, rows([0.1, 0.2])).verdict == "not decided (none found in 2 items, fewer than 3)"
    assert decide(spec, rows([0.1, 0.2, 0.3]) + rows([0.9], health="diverged")).verdict == FAILS  # it did not count


def test_kaplan_meier_medians_of_steps():
    done = km([dict(s=s) for s in (0, 1, 2, 3, 4)], "s")  # every run got there: times 1..5
    assert (done["median"], done["reached"], done["n"], done["seen"]) == (3.0, 5, 5, 5.0)
    assert done["low"] <= done["median"] <= (done["high"] or math.inf)
    cut = km([dict(s=0), dict(s=1)] + [dict(s=None, budget=9)] * 3, "s")  # three never did, within 9 steps
    assert cut["median"] is None and (cut["reached"], cut["n"], cut["seen"]) == (2, 5, 10.0)
    assert km([], "s") is None


@pytest.mark.parametrize("a_steps,direction,effect,verdict", [
    (99, "greater", 5.0, HOLDS), (99, "greater", 10.0, HOLDS), (99, "greater", 10.5, FAILS),
    (9, "equal", 0.1, HOLDS), (99, "equal", 0.1, FAILS), (9, "greater", 1.0, None)])
def test_a_ratio_of_steps_at_and_beside_the_effect(a_steps, direction, effect, verdict):
    """Every run of a at a_steps + 1, of b at 10: the medians and their intervals are those times exactly."""
    spec = spec_of("steps", direction=direction, effect=effect)
    items = [dict(c=c, health="ok", v=s, budget=1000) for c, s in (("a", a_steps), ("b", 9)) for _ in range(3)]
    d = decide(spec, items)
    ratio = (a_steps + 1) / 10
    assert d.verdict == (verdict or "not decided (the ratio's interval spans the effect that counts)")
    assert d.interval == (pytest.approx(ratio), pytest.approx(ratio)) and d.n == 3
    assert f"a: median {a_steps} steps [{a_steps}, {a_steps}] (3/3 reached), runs 3 ok" in d.measured
    assert f"ratio a/b in [{ratio:.3g}, {ratio:.3g}]" in d.measured


def test_a_median_of_steps_against_a_level():
    spec = spec_of("steps_level", effect=100)
    at = [dict(c="a", health="ok", v=99, budget=1000) for _ in range(3)]
    assert decide(spec, at).verdict == HOLDS and decide(spec, at).interval == (99, 99)
    assert decide(spec_of("steps_level", effect=98), at).verdict == FAILS
    never = [dict(c="a", health="ok", v=None, budget=500) for _ in range(3)]
    d = decide(spec, never)  # never got there in 500 steps: more than the level
    assert d.verdict == FAILS and d.interval == (500, math.inf) and "median > 500 steps (0/3 reached)" in d.measured
    assert decide(spec, at[:2]).verdict == "not decided (2 items, fewer than 3)"


def test_every_row_of_decide_all_is_its_claims_decision():
    spec = next(c for c in CLAIMS if c.kind == "level")
    items = synthetic(spec, "holds")
    row = next(r for r in decide_all(spec.experiment, items) if r["key"] == spec.key)
    d = decide(spec, items)
    assert row == dict(key=spec.key, page=spec.page, measured=d.measured, verdict=d.verdict, n=d.n)


# ---- every return of the rule carries its claim, its count and the numbers it rests on --------------------------

def _steps_rows(c: str, times: list[int | None], budget: int = 1000) -> list[dict]:
    return [dict(c=c, prompt=f"p{i}", seed=0, health="ok", v=t, budget=budget) for i, t in enumerate(times)]


EXISTS = dict(tests=(("v", ">", 0.5),))
RETURNS = [  # (kind, spec fields, items, verdict's start, n): each return statement of each kind
    ("paired", {}, rows([0.75] * 3) + rows([0.5] * 3, c="b"), HOLDS, 3),
    ("paired", {}, rows([0.75] * 2) + rows([0.5] * 2, c="b"), "not decided (2 pairs", 2),
    ("paired", dict(effect=0.125), rows([0.1, 0.9, 0.8]) + rows([0.5] * 3, c="b"), "not decided (the interval", 3),
    ("level", dict(effect=0.5), rows([0.75] * 3), HOLDS, 3),
    ("level", dict(effect=0.5), rows([0.75] * 2), "not decided (2 items", 2),
    ("existence", EXISTS, rows([0.1, 0.9, 0.2]), HOLDS, 3),
    ("existence", EXISTS, rows([0.1, 0.2, 0.3]), FAILS, 3),
    ("existence", EXISTS, rows([0.1, 0.2]), "not decided (none found in 2", 2),
    ("steps", dict(effect=2.0), _steps_rows("a", [99] * 3) + _steps_rows("b", [9] * 3), HOLDS, 3),
    ("steps", dict(effect=2.0), _steps_rows("a", [99] * 3), "not decided (0 items", 0),
    ("steps", dict(effect=2.0), _steps_rows("a", [None] * 3) + _steps_rows("b", [None] * 3),
     "not decided (every side censored", 3),
    ("steps_level", dict(effect=100), _steps_rows("a", [9] * 3), HOLDS, 3),
    ("steps_level", dict(effect=100), [], "not decided (0 items", 0),
    ("steps_level", dict(effect=100), _steps_rows("a", [9] * 2), "not decided (2 items", 2),
    ("steps_level", dict(effect=100), _steps_rows("a", [0, 50, 200, 400, 800]), "not decided (the median's", 5)]


@pytest.mark.parametrize("kind,kw,items,verdict,n", RETURNS, ids=lambda x: x if isinstance(x, str) else "")
def test_every_decision_carries_its_claim_its_count_and_what_it_rests_on(kind, kw, items, verdict, n):
    spec = spec_of(kind, **kw)
    d = decide(spec, items)
    assert d.verdict.startswith(verdict) and d.spec is spec
    assert type(d.n) is int and d.n == n
    assert isinstance(d.measured, str) and "runs" in d.measured
    assert "XX" not in d.measured + d.verdict  # no placeholder text where a number or a word belongs


def test_an_equal_ratio_of_steps_holds_on_its_band_and_fails_beside_it():
    """effect 1: the band is [1/2, 2]; b's runs all at time 8, so a's median time over 8 is the ratio exactly."""
    spec = spec_of("steps", direction="equal", effect=1.0)
    for a_time, verdict in ((16, HOLDS), (4, HOLDS), (17, FAILS), (3, FAILS), (8, HOLDS)):
        d = decide(spec, _steps_rows("a", [a_time - 1] * 3) + _steps_rows("b", [7] * 3))
        assert d.verdict == verdict and d.interval == (a_time / 8, a_time / 8), a_time
    wide = decide(spec, _steps_rows("a", [0, 1, 7, 30, 60] * 2) + _steps_rows("b", [7] * 10))
    assert wide.verdict == "not decided (the ratio's interval spans the effect that counts)"


def test_a_ratio_of_steps_is_bounded_by_the_medians_intervals():
    a_rows, b_rows = _steps_rows("a", [3, 5, 9, 14, 20, 25, 30, 41, 50]), _steps_rows("b", [1, 2, 2, 3, 4, 5, 6, 8, 9])
    ka, kb = km(a_rows, "v"), km(b_rows, "v")
    assert None not in (ka["low"], ka["high"], kb["low"], kb["high"]) and ka["low"] != ka["seen"]
    d = decide(spec_of("steps", effect=1.5), a_rows + b_rows)
    assert d.interval == (pytest.approx(ka["low"] / kb["high"]), pytest.approx(ka["high"] / kb["low"]))
    p = stats.logrank(ka["data"], kb["data"]).pvalue
    assert 0 < p < 0.05 and _number(d.measured, "log-rank p =") == pytest.approx(p, rel=0.05)
    assert d.verdict == (HOLDS if ka["low"] / kb["high"] >= 1.5 else "not decided (the ratio's interval spans "
                                                                    "the effect that counts)")


def test_kaplan_meier_at_exactly_half_and_runs_without_a_budget():
    assert km([dict(s=0), dict(s=1)], "s")["median"] == 1.0  # the survival is 0.5 after the first time: that one
    cut = km([dict(s=None, steps=9), dict(s=4)], "s")  # no budget: censored at the run's own steps
    assert cut["seen"] == 10.0 and cut["data"].num_censored() == 1 and len(cut["data"]) == 2


def test_paired_items_pair_by_the_declared_fields_whatever_their_types():
    items = rows([0.75, 0.75, float("nan")]) + rows([0.5, 0.5, 0.5], c="b")
    items += [dict(c=c, prompt="p0", seed=None, health="ok", v=v) for c, v in (("a", 0.75), ("b", 0.5))]
    d = decide(spec_of("paired", effect=0.125), items)  # (p0, 0) and (p0, None) are two pairs; p2's a is not finite
    assert d.verdict == HOLDS and d.n == 3 and "same prompt and seed" in d.measured
    assert decide(spec_of("paired"), rows([0.5]) + rows([0.25], c="x")).measured.startswith("0 pairs (no pair)")


def test_the_interval_is_repeatable_and_not_a_point_when_values_differ():
    mean, low, high = interval([0.0, 1.0, 0.0, 1.0, 1.0])
    assert low < mean < high
    xs = [0.13, 0.71, 0.32, 0.94, 0.45, 0.2, 0.66]  # values whose resampled means are rarely tied
    assert interval(xs) == interval(xs)


def test_an_interval_across_one_end_of_a_band_is_not_decided():
    within = decide(spec_of("level", direction="within", band=(0.25, 0.5)), rows([0.2, 0.3, 0.6, 0.45, 0.55]))
    assert within.interval[0] < 0.5 < within.interval[1]
    assert within.verdict == "not decided (the interval spans the level)"
    equal = decide(spec_of("paired", direction="equal", effect=0.125),
                   rows([0.5, 0.7, 0.55, 0.75, 0.6]) + rows([0.5] * 5, c="b"))
    assert equal.interval[0] < 0.125 < equal.interval[1]
    assert equal.verdict == "not decided (the interval spans the effect that counts)"


def test_a_ratio_of_steps_across_the_lower_end_of_its_band_is_not_decided():
    """effect 1: the band [1/2, 2]; a's median time a little above b's and its interval reaching below half of it."""
    a_rows = _steps_rows("a", [0, 1, 2, 3, 8, 9, 10, 11, 12, 30])
    d = decide(spec_of("steps", direction="equal", effect=1.0), a_rows + _steps_rows("b", [7] * 10))
    lo, hi = d.interval
    assert lo < 0.5 < hi < 2, d.interval
    assert d.verdict == "not decided (the ratio's interval spans the effect that counts)"


def test_a_ratio_of_steps_above_an_effect_below_two_holds():
    d = decide(spec_of("steps", effect=1.5), _steps_rows("a", [17] * 3) + _steps_rows("b", [9] * 3))
    assert d.interval == (1.8, 1.8) and d.verdict == HOLDS


def test_a_steps_claim_on_runs_shorter_than_its_budget_is_not_decided():
    items = _steps_rows("a", [99] * 3, budget=200) + _steps_rows("b", [9] * 3, budget=200)
    d = decide(spec_of("steps", effect=2.0, budget=1000), items)
    assert d.verdict == "not decided (runs of N = 200 steps; the claim is about N = 1000)" and d.n == 3
    level = decide(spec_of("steps_level", effect=100, budget=1000), _steps_rows("a", [9] * 3, budget=200))
    assert level.verdict == "not decided (runs of N = 200 steps; the claim is about N = 1000)"


def test_a_median_of_steps_exactly_at_its_level_holds():
    assert decide(spec_of("steps_level", effect=99), _steps_rows("a", [99] * 3)).verdict == HOLDS
