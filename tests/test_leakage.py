"""The leakage audit and its defence: the KV-Cloak-style obfuscation round-trips with its secret and defeats the
exact attack without it; the audit, run as an experiment on a tiny untrained GPT-2, records rates in [0, 1],
recovers and certifies every token from float32 states, never leaves the true token out of an honest ambiguity
set, loses certification under heavy noise, and rebuilds its report from its files alone."""
from __future__ import annotations

import json

import pytest
import torch

from lmrep import InvertConfig, LmrepError, invert_outputs, layer_model
from lmrep.cli import main
from lmrep.engine import ITEMS
from lmrep.experiments import ReproduceConfig, experiments, get, reproduce
from lmrep.experiments import leakage
from lmrep.experiments.leakage_report import stop_sentences, stop_text, where_it_stops
from lmrep.experiments.pool import ModelPool
from lmrep.inversion.cloak import Cloak, block_of
from lmrep.inversion.exact.rank import PLAIN
from lmrep.inversion.exposure import Exposure, observe

PROMPT = "The sky is blue."


def test_the_cloak_round_trips_with_its_secret_and_only_with_it():
    h = torch.randn(7, 32, generator=torch.Generator().manual_seed(0)) * torch.logspace(-1, 1, 32)
    cloak = Cloak(secret=5, block=8)
    stored = cloak.apply(h, "blocks.0.attn.hook_k")
    assert stored.shape == h.shape and stored.dtype == h.dtype
    assert float((stored - h).abs().max()) > 0.1 * float(h.abs().max())  # what is stored is not the states
    back, bound = cloak.remove(stored, "blocks.0.attn.hook_k")
    assert bool(((back - h).abs() <= bound).all())  # the round trip stays within the bound it states
    assert float(bound.max()) < 1e-5 * float(h.abs().max())  # ... and that bound is float32 rounding, not slack
    for other in (Cloak(6, 8), Cloak(5, 16)):  # another secret, or the same secret per other blocks
        assert float((other.remove(stored, "blocks.0.attn.hook_k")[0] - h).abs().max()) > 0.1
    assert not torch.equal(cloak.matrices("blocks.0.attn.hook_k", 32), cloak.matrices("blocks.1.attn.hook_k", 32))
    M = cloak.matrices("x", 32)  # each head's matrix is well conditioned
    assert float(torch.linalg.cond(M).max()) <= 2 + 1e-9
    with pytest.raises(LmrepError, match="do not divide"):
        Cloak(5, 5).apply(h, "x")


def test_the_attack_fails_without_the_secret_and_succeeds_with_it(arch_models):
    lm = arch_models("gpt2")
    target = layer_model(lm, "blocks.0.attn.hook_k")
    assert block_of(target) == 8 and block_of(layer_model(lm, 1)) == 32  # a head's size; a hidden state's width
    ids, cfg = lm.encode(PROMPT), InvertConfig(method="exact", ranking=PLAIN)
    rates = {}
    for attacker in ("unaware", "guess", "secret"):
        rec = next(invert_outputs(target, [observe(target, ids, Exposure(attacker, cloak=True, attacker=attacker),
                                                   secret=11)], cfg))
        rates[attacker] = (sum(a == b for a, b in zip(ids, rec["recovered_ids"])) / len(ids),
                           rec["certified_positions"])
    assert rates["secret"] == (1.0, len(ids))
    for attacker in ("unaware", "guess"):
        recovery, certified = rates[attacker]
        assert recovery <= 0.5 and certified == 0, (attacker, rates)
    with pytest.raises(LmrepError, match="secret"):
        Exposure("x", attacker="guess")  # a secret to guess needs an obfuscation


@pytest.fixture(scope="module")
def audit(arch_dirs, tmp_path_factory):
    """The quick profile on a tiny untrained GPT-2 (4 blocks, d = 32, 384 tokens): one prompt and one random
    sequence, its first block."""
    cfg = ReproduceConfig("leakage", quick=True, model=str(arch_dirs("gpt2")), prompts=(PROMPT,))
    run = reproduce(cfg, tmp_path_factory.mktemp("leakage"), progress=False, pool=ModelPool("cpu"))
    return run, run.read_jsonl(ITEMS)


def test_the_audit_is_an_experiment_run_by_name_not_by_all():
    assert "leakage" not in experiments() and "leakage" in experiments(audits=True)
    assert get("leakage").module is leakage
    assert leakage.layers_for(30, ReproduceConfig("leakage").resolved()) == [1, 15, 30]
    assert len(ReproduceConfig("leakage").resolved().prompts) >= 20  # the evaluation set


@pytest.mark.slow
def test_the_audit_covers_every_source_and_exposure_with_rates_in_range(audit):
    run, items = audit
    groups = leakage.exposures(leakage.QUICK)
    assert {(r["source"], r["condition"]) for r in items} == {(s, e.name) for s in leakage.SOURCES for g, e in groups
                                                              if g != "defence" or s in leakage.DEFENDED}
    assert {r["kind"] for r in items} == {"text", "random"} and all(r["candidates_cut"] == 384 for r in items)
    for r in items:
        for rate in ("recovery", "certified", "fits"):
            assert 0 <= r[rate] <= 1, (rate, r)
        assert r["certified"] <= r["fits"] and len(r["ambiguity_sizes"]) == r["n_tokens"]
        assert r["seconds_per_token"] > 0


def test_float32_states_give_every_token_back_certified(audit):
    _, items = audit
    fp32 = [r for r in items if r["condition"] == "fp32"]
    assert len(fp32) == 6
    assert all(r["recovery"] == r["certified"] == 1.0 and r["recovered_ids"] == r["target_ids"] for r in fp32)


def test_honest_sets_always_hold_the_true_token_and_heavy_noise_blurs_them(audit):
    _, items = audit
    honest = [r for r in items if r["attacker"] in ("aware", "secret")]
    assert all(r["missed"] == 0 and r["checked"] >= 1 for r in honest)
    for source in leakage.SOURCES:
        rate = {c: sum(r["certified"] for r in items if r["source"] == source and r["condition"] == c) / 2
                for c in ("fp32", "noise 0.1", "noise 1")}
        assert rate["noise 1"] < rate["noise 0.1"] <= rate["fp32"] == 1.0, (source, rate)
        heavy = [r for r in items if r["source"] == source and r["condition"] == "noise 1"]
        assert all(r["mean_set"] is None or r["mean_set"] > 1 for r in heavy)
    for r in items:  # the obfuscation read as plain states, or with a wrong secret: nothing is certified
        if r["attacker"] in ("unaware", "guess"):
            assert r["certified"] == 0 and r["recovery"] <= 0.5


@pytest.mark.slow
def test_the_report_says_where_each_layer_stops_and_rebuilds_from_its_files(audit):
    run, items = audit
    summary = json.loads((run / "summary.json").read_text())
    lines = stop_sentences(summary)
    assert len(lines) == 3 and all("noise: recovered exactly through noise 0.1, not at noise 1" in x for x in lines)
    report = (run / "report.md").read_text()
    assert "## Where each layer stops leaking the prompt exactly" in report and "leakage.png" in report
    assert "ambiguity sets over the whole vocabulary (384 tokens)" in report
    (run / "summary.json").unlink()
    (run / "leakage.png").unlink()
    assert main(["report", str(run.path)]) == 0
    assert json.loads((run / "summary.json").read_text()) == summary and (run / "leakage.png").stat().st_size > 10_000
    assert (run / "report.md").read_text() == report


def test_the_rule_names_the_first_exposure_of_the_ladder_that_fails():
    def row(name, recovery, certified, missed=0):
        return dict(condition=name, recovery=dict(mean=recovery), certified=dict(mean=certified), missed=missed)
    ladder = [row("fp32", 1.0, 1.0), row("bf16", 1.0, 0.9), row("int8", 0.95, 0.5, 2), row("int4", 1.0, 1.0)]
    stop = where_it_stops(ladder)  # int4 after the first failure does not count
    assert stop["exact"] == dict(through="bf16", fails_at="int8", rate=0.95, tried=4, beyond_cut=2)
    assert stop["certified"] == dict(through="fp32", fails_at="bf16", rate=0.9, tried=4, beyond_cut=0)
    assert where_it_stops(ladder[:2])["exact"] == dict(through="bf16", fails_at=None, rate=None, tried=2,
                                                       beyond_cut=0)
    assert where_it_stops([row("fp32", 0.5, 0.0)])["exact"]["through"] is None
    assert stop_text(stop["exact"], "recovered exactly", "precision") == \
        "recovered exactly through bf16, not at int8 (0.95, a lower bound: the true token was beyond the cut at 2 " \
        "position(s))"
