"""Optimisation health: a run built to diverge is labelled diverged and left out of the rates; every run reports
the embedding of its best step, not where its last step left it."""
import math

import pytest

from lmrep import InvertConfig, invert, layer_model
from lmrep.inversion.base import summarize
from lmrep.records.health import ascent_health, counts, curve_health, health_of, healthy
from lmrep.records.stats import group_stats


def test_curve_labels():
    assert curve_health([4.0, 3.0, 1.0, 2.0]) == dict(loss_start=4.0, loss_best=1.0, loss_end=2.0, best_step=2,
                                                      health="ok")
    assert curve_health([1.0, 0.5, 2.5])["health"] == "diverged"  # ends above 2x its start
    assert curve_health([1.0, 0.5, 2.5], diverge_factor=3)["health"] == "ok"  # the multiple is the config's
    assert curve_health([1.0, 0.5, float("nan")])["health"] == "diverged"  # a loss became non-finite
    assert curve_health([1.0, 0.5, None])["loss_end"] == 0.5
    assert curve_health([1.0, 0.99, 1.2])["health"] == "stalled"  # best not meaningfully below the start
    assert curve_health([2.0, 1.0, 1.0])["best_step"] == 1  # the first step at the lowest loss


def test_a_maximisation_is_labelled_by_whether_it_rose():
    assert ascent_health(1.0, 2.0) == "ok" and ascent_health(2.0, 1.0) == "stalled"
    assert ascent_health(1.0, float("inf")) == "diverged" and ascent_health(float("nan"), 1.0) == "diverged"


def test_items_without_a_label_are_judged_by_what_they_kept():
    assert health_of({"stopped": "loss became nan at step 3"}) == "diverged"
    assert health_of({"loss_curve": [1.0, 5.0]}) == "diverged"
    assert health_of({"loss_curve": [1.0, 0.1]}) == "ok"
    assert health_of({"token_accuracy": 1.0}) == "ok"  # a method without a loss curve


def _run(lm, **cfg):
    target = layer_model(lm, 1, "none")
    return list(invert(target, ["The sky is blue."], InvertConfig(**cfg), progress=False))[0]


def test_a_run_built_to_diverge_is_labelled_and_left_out_of_the_rates(tiny_gpt2):
    steps = 12
    bad = _run(tiny_gpt2, steps=steps, optimizer="sgd", lr=1e4, snapshots=tuple(range(steps + 1)))
    good = _run(tiny_gpt2, steps=30, optimizer="adam", lr=0.05)
    assert bad["health"] == "diverged" and good["health"] == "ok"
    assert bad["loss_end"] > 2 * bad["loss_start"] and bad["loss_best"] <= bad["loss_start"]
    s = summarize([good, bad])
    assert s["health"] == dict(ok=1, stalled=0, diverged=1)
    assert s["token_accuracy"]["n"] == 1  # the diverged run is not a zero in the rate
    assert s["token_accuracy"]["mean"] == pytest.approx(good["token_accuracy"])
    (row,) = group_stats([dict(good, c="x"), dict(bad, c="x")], ("c",), ("token_accuracy",))
    assert row["token_accuracy"]["n"] == 1 and row["health"]["diverged"] == 1
    assert [r["health"] for r in healthy([good, bad])] == ["ok"] and counts([bad])["diverged"] == 1


def test_best_so_far_is_what_gets_decoded(tiny_gpt2):
    steps = 12
    rec = _run(tiny_gpt2, steps=steps, optimizer="sgd", lr=1e4, snapshots=tuple(range(steps + 1)))
    curve = rec["loss_curve"]
    best = min(range(len(curve)), key=lambda n: (curve[n] if math.isfinite(curve[n]) else math.inf, n))
    assert rec["best_step"] == best < steps  # the run got worse after its best step
    assert rec["final_loss"] == pytest.approx(curve[best], rel=1e-5) == pytest.approx(rec["loss_best"], rel=1e-5)
    shots = {s["step"]: s["text"] for s in rec["snapshots"]}
    assert rec["recovered_text"] == shots[best]  # decoded from the best step's embedding ...
    assert any(shots[n] != shots[best] for n in range(best + 1, steps + 1))  # ... not from a later one
