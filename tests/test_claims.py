"""Claims as data, one verdict rule: for every declared claim, synthetic items that make it hold, fail and stay
undecided; censored step counts are never "equal"; diverged runs do not count; reversing the items' effect flips
the verdict."""
import pytest

from lmrep.experiments.claims import CLAIMS, METRICS, ClaimSpec
from lmrep.experiments.verdicts import FAILS, HOLDS, decide, decide_all

BUDGET = 5000


def fields(name: str, v: float | None) -> dict:
    """Item fields that give the metric ``name`` the value v (the inverse of claims.METRICS)."""
    if name.startswith("top"):
        k = round(min(1.0, max(0.0, v)) * 10)
        return {"true_rank": {"pinv": [1] * k + [1000] * (10 - k)}}
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
