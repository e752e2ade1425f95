"""Exact inversion: left-to-right search with a key/value cache, verified token by token.

Recovery at the first, a middle and the last layer (and the heads) of tiny GPT-2- and Llama-style models and of
the trained default model; the certificate separates the true input from a one-token change; a noisy target is
reported unverified instead of a false success; random ids, duplicate embedding rows and float64 behave."""
import json

import pytest
import torch

from lmrep import InvertConfig, LmrepError, invert, layer_model
from lmrep.objective.decode import duplicate_groups
from lmrep.inversion import invert_outputs as invert_each
from lmrep.inversion.exact import relative_tolerance, residuals
from lmrep.inversion.exact.vocab_tables import vocab_table, weights_hash
from lmrep.inversion.exact.kvcache import Prefix
from lmrep.inversion.exact.guess import DESCENT_MAX_STEPS, DESCENT_STEPS
from lmrep.inversion.exact.proposal import Scores
from lmrep.inversion.exact.config import RANKINGS
from lmrep.inversion.exact.rank import FACTORIES

PROMPTS = ["The quick brown fox jumps over the lazy dog.", "In 1848, revolutions spread across Europe."]


def _exact(lm, prompts, layer, head="none", **cfg):
    return list(invert(layer_model(lm, layer, head), prompts, InvertConfig(method="exact", **cfg), progress=False))


def invert_outputs(O, outputs, cfg=None):
    """The one record of a single observed output (T, D) or (1, T, D), by the exact method."""
    (rec,) = invert_each(O, outputs, cfg or InvertConfig(method="exact"))
    return rec


def _check_recovered(rec):
    assert rec["exact_match"] and rec["token_accuracy"] == 1.0 and rec["verified"] and rec["next_token_match"] is True
    assert rec["max_residual"] <= rec["tolerance"]
    assert rec["candidates_max"] >= 1 and 1 <= rec["candidates_per_token"] <= rec["candidates_max"]
    for c in rec["certificate"]:
        assert c["verified"] and c["residual"] <= rec["tolerance"]
        assert c["runner_up_residual"] is None or c["runner_up_residual"] > rec["tolerance"]


@pytest.mark.parametrize("layer,head", [(1, "none"), (2, "none"), (3, "none"), (3, "norm"), (3, "logits"),
                                        (2, "logits_nonorm"), (0, "none")])
@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_tiny_models_recover_exactly_at_every_kind_of_layer(model, layer, head, request):
    lm = request.getfixturevalue(model)
    for rec in _exact(lm, PROMPTS, layer, head):
        _check_recovered(rec)


@pytest.mark.parametrize("layer", [1, 15, 30])
def test_default_model_recovers_exactly_at_first_middle_last_layer(smol, layer):
    """Default settings, nothing else: four ordinary tokens with a common word second (" is"), every one verified."""
    (rec,) = _exact(smol, ["Paris is the capital"], layer)
    _check_recovered(rec)
    assert smol.decode([rec["target_ids"][1]]) == " is"


def test_default_search_has_no_cap():
    cfg = InvertConfig(method="exact")
    assert cfg.max_candidates is None and cfg.cap(49152) == 49152
    assert InvertConfig(method="exact", max_candidates=100).cap(49152) == 100


def test_capped_search_says_unverified_and_never_claims_a_wrong_token(smol):
    """A cap of one candidate per position: where the first guess is wrong the position is reported unverified,
    and every position reported verified holds the true token."""
    ids = smol.encode("Paris is the capital of France.")
    O = layer_model(smol, 15)
    with torch.no_grad():
        outputs = O(smol.embed(torch.tensor([ids])))
    res = invert_outputs(O, outputs, InvertConfig(method="exact", max_candidates=1))
    cert = res["certificate"]
    assert all(c["candidates"] == 1 for c in cert)
    assert not res["verified"] and not all(c["verified"] for c in cert)
    for t, c in enumerate(cert):
        assert c["verified"] == (c["residual"] <= res["tolerance"])
        if c["verified"]:  # no false success: a verified position has the true prefix and the true token
            assert res["recovered_ids"][: t + 1] == ids[: t + 1]
    first_miss = next(t for t, c in enumerate(cert) if not c["verified"])
    assert res["recovered_ids"][first_miss] != ids[first_miss]


def test_random_ids_at_a_middle_layer_of_the_default_model(smol):
    ids = torch.randint(0, smol.vocab_size, (6,), generator=torch.Generator().manual_seed(11)).tolist()
    O = layer_model(smol, 8)
    with torch.no_grad():
        res = invert_outputs(O, O(smol.embed(torch.tensor([ids]))))
    assert res["verified"] and res["recovered_ids"] == ids


def test_random_ids_recover(tiny_llama, smol):
    g = torch.Generator().manual_seed(3)
    for lm, layer in ((tiny_llama, 2), (smol, 1)):
        ids = torch.randint(0, lm.vocab_size, (10,), generator=g).tolist()
        O = layer_model(lm, layer)
        with torch.no_grad():
            outputs = O(lm.embed(torch.tensor([ids])))  # (1, T, D): a target given as a tensor
        res = invert_outputs(O, outputs)
        assert res["verified"] and res["recovered_ids"] == ids


def test_table_ranking_finds_random_ids_first_time(smol):
    """Every token's output after random prefixes, offset by what this prefix adds: on random ids, the first
    batch of two holds the answer at nearly every position."""
    ids = torch.randint(0, smol.vocab_size, (12,), generator=torch.Generator().manual_seed(5)).tolist()
    O = layer_model(smol, 1)
    with torch.no_grad():
        outputs = O(smol.embed(torch.tensor([ids])))
    res = invert_outputs(O, outputs, InvertConfig(method="exact", ranking="table"))
    assert res["verified"] and res["recovered_ids"] == ids
    assert res["candidates_per_token"] <= 3 and res["table_seconds"] > 0


def test_certificate_separates_the_input_from_a_one_token_change(tiny_gpt2):
    O = layer_model(tiny_gpt2, 2)
    ids = tiny_gpt2.encode(PROMPTS[0])
    changed = list(ids)
    changed[4] = (ids[4] + 1) % tiny_gpt2.vocab_size
    with torch.no_grad():
        out = O(tiny_gpt2.embed(torch.tensor([ids, changed])))  # (2, T, D)
    tol = relative_tolerance(O)
    prefix = Prefix(O)
    for t, token in enumerate(ids):  # the true input, position by position through the cache
        got, cache = prefix.step(tiny_gpt2.embed(torch.tensor([token])))
        assert residuals(got, out[0, t]) <= tol
        prefix = prefix.extend(cache, 0)
    per_position = torch.stack([residuals(out[1, t][None], out[0, t]) for t in range(len(ids))]).flatten()
    assert (per_position[:4] <= tol).all()  # causality: positions before the change are untouched
    assert (per_position[4:] > 100 * tol).all()  # from the change on, far outside tolerance


def _noisy(O, ids: list[int]) -> torch.Tensor:
    """The layer output of ``ids``, (T, D), with noise of 1e-3 of each position's largest value: no token matches."""
    with torch.no_grad():
        out = O(O.lm.embed(torch.tensor([ids])))[0]
    return out + 1e-3 * out.abs().amax(-1, keepdim=True) * torch.randn(out.shape, generator=torch.Generator()
                                                                       .manual_seed(0))


def test_noisy_target_is_reported_unverified(tiny_llama):
    O = layer_model(tiny_llama, 2)
    ids = tiny_llama.encode(PROMPTS[1])
    noisy = _noisy(O, ids)
    res = invert_outputs(O, noisy, InvertConfig(method="exact", max_candidates=32))
    assert not res["verified"] and res["max_residual"] > res["tolerance"]
    for c in res["certificate"]:
        assert not c["verified"] and c["residual"] > res["tolerance"]
        assert 1 <= len(c["closest"]) <= 5 and c["closest"][0]["residual"] == c["residual"]
        assert c["candidates"] <= 32
    # a tolerance wide enough for the noise accepts it again, and says how far off it was
    loose = invert_outputs(O, noisy, InvertConfig(method="exact", tolerance=0.05))
    assert loose["verified"] and loose["recovered_ids"] == ids and loose["max_residual"] > res["tolerance"]


def test_duplicate_rows_are_reported_as_ties(smol):
    W, groups = smol.embedding_matrix, duplicate_groups(smol)
    counts = torch.bincount(groups)
    a = int(torch.nonzero(counts[groups] > 1)[0])
    b = int(torch.nonzero((groups == groups[a]) & (torch.arange(len(groups)) != a))[0])
    assert torch.equal(W[a], W[b])  # the default model has identical rows for some ids (11 pairs' worth)
    ids = smol.encode("The sky is") + [a] + smol.encode(" blue")
    (rec,) = list(invert(layer_model(smol, 1), [smol.decode(ids)], InvertConfig(method="exact"), progress=False)) \
        if smol.encode(smol.decode(ids)) == ids else [None]
    O = layer_model(smol, 1)
    with torch.no_grad():
        res = invert_outputs(O, O(smol.embed(torch.tensor([ids]))))
    entry = res["certificate"][3]
    assert res["verified"] and entry["verified"] and {a, b} <= set(entry["ties"]) | {entry["token"]}
    assert [t for i, t in enumerate(res["recovered_ids"]) if i != 3] == [t for i, t in enumerate(ids) if i != 3]
    assert rec is None or rec["token_accuracy_with_ties"] == 1.0


@pytest.mark.slow
def test_float64_and_brute_force(tiny_llama_dir):
    from lmrep import load_model
    lm = load_model(str(tiny_llama_dir), dtype="float64")
    (rec,) = _exact(lm, [PROMPTS[0]], 2)
    _check_recovered(rec)
    assert rec["tolerance"] < 1e-12  # scaled by float64's epsilon
    (brute,) = _exact(lm, [PROMPTS[0]], 2, ranking="vocab", candidate_batch=4096)
    _check_recovered(brute)
    assert brute["candidates_per_token"] > rec["candidates_per_token"]


@pytest.mark.slow
def test_first_token_table(tiny_gpt2):
    (rec,) = _exact(tiny_gpt2, [PROMPTS[1]], 3, first_token="table")
    _check_recovered(rec)
    assert rec["table_seconds"] > 0 and rec["certificate"][0]["candidates"] <= 2


def test_cache_is_not_corrupted_by_steps(tiny_llama):
    O = layer_model(tiny_llama, 3)
    ids = tiny_llama.encode(PROMPTS[0])
    prefix = Prefix.of(O, ids[:5])
    cand = tiny_llama.embed(torch.tensor([ids[5], 11, 12]))
    first, _ = prefix.step(cand)
    prefix.step(tiny_llama.embed(torch.tensor(list(range(20)))))
    again, _ = prefix.step(cand)
    with torch.no_grad():
        full = O(tiny_llama.embed(torch.tensor([ids[:6]])))[0, 5]
    assert torch.equal(first, again) and residuals(first[:1], full) <= relative_tolerance(O)


def test_bad_inputs_say_what_to_do(tiny_gpt2):
    O = layer_model(tiny_gpt2, 1)
    with pytest.raises(LmrepError, match="shape"):
        invert_outputs(O, torch.zeros(2, 3, 4, 5))
    with pytest.raises(LmrepError, match="tolerance"):
        InvertConfig(method="exact", tolerance=-1.0)  # checked when it is made


def test_cli_exact_json(tiny_gpt2_dir, tmp_path, capsys):
    from lmrep.cli import main
    assert main(["invert", "--model", str(tiny_gpt2_dir), "--layer", "2", "--method", "exact", "--json",
                 "--out", str(tmp_path / "run"), PROMPTS[0]]) == 0
    (rec,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rec["exact_match"] and rec["verified"] and rec["method"] == "exact"
    for key in ("candidates_per_token", "candidates_max", "max_residual", "certificate"):
        assert key in rec


DESCENDS = {"guided": True, "probe": True, "fused": True, "table": True, "secant": False,
            "vocab": False}  # ranking -> takes gradient steps


@pytest.mark.slow
@pytest.mark.parametrize("ranking", sorted(RANKINGS))
def test_rankings_recover_and_count_their_costs(tiny_llama, ranking):
    (rec,) = _exact(tiny_llama, [PROMPTS[1]], 3, ranking=ranking)
    _check_recovered(rec)
    cert = rec["certificate"]
    candidates = sum(c["candidates"] for c in cert)
    assert rec["candidates_per_token"] == pytest.approx(candidates / len(cert))
    assert rec["prior_positions"] <= len(cert)
    assert len(cert) <= rec["forward_calls"] <= candidates  # a call per batch, each of one candidate or more
    # rows: every candidate verified, plus at most one probe (the continuous guess) per call
    assert candidates <= rec["rows"] <= candidates + rec["forward_calls"]
    if ranking == "vocab":  # brute force probes nothing
        assert rec["rows"] == candidates
    # a noisy target: every batch misses, so the rankings that take gradient steps take them, DESCENT_STEPS after
    # each missed batch and at most DESCENT_MAX_STEPS per position; the others take none
    assert set(DESCENDS) == set(RANKINGS), "say here whether a new ranking takes gradient steps"
    O = layer_model(tiny_llama, 2)
    ids = tiny_llama.encode(PROMPTS[1])
    res = invert_outputs(O, _noisy(O, ids), InvertConfig(method="exact", max_candidates=32, ranking=ranking))
    assert not res["verified"] and (res["gradient_steps"] > 0) == DESCENDS[ranking]
    assert res["gradient_steps"] % DESCENT_STEPS == 0 and res["gradient_steps"] <= DESCENT_MAX_STEPS * len(ids)


@pytest.mark.slow
def test_exact_from_the_command_line(tiny_gpt2_dir, tmp_path, capsys):
    from lmrep.cli import main
    assert main(["invert", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--layer", "2", "--method", "exact",
                 "--ranking", "secant", "--max-candidates", "512", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "verified   yes" in out and "exact yes" in out
    rec = json.loads((tmp_path / "run" / "items.jsonl").read_text().splitlines()[0])
    assert rec["verified"] and rec["certificate"][0]["verified"]
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "secant" in json.dumps(cfg) and "512" in json.dumps(cfg)


def test_vocab_tables_are_cached_on_disk_per_weights(tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREP_CACHE", str(tmp_path))
    O = layer_model(tiny_gpt2, 1)
    built = vocab_table(O, 1)
    assert not built.cached and built.features.shape[0] == tiny_gpt2.vocab_size
    (path,) = (tmp_path / "tables").glob(f"{weights_hash(tiny_gpt2)}-*-c1-s0.safetensors")
    tiny_gpt2._memo.clear()  # a new process: the table comes from disk
    again = vocab_table(O, 1)
    assert again.cached and torch.equal(again.features, built.features) and again.seconds == built.seconds
    before = weights_hash(tiny_gpt2)
    tiny_gpt2._memo.clear()
    with torch.no_grad():
        w = next(tiny_gpt2.model.parameters())
        w[0, 0] += 1.0  # other weights: another table
        assert weights_hash(tiny_gpt2) != before
        w[0, 0] -= 1.0
    tiny_gpt2._memo.clear()


def test_the_ranking_table_is_the_only_place_a_ranking_is_named():
    """No module but the table (exact/config.py) and its factories (rank.py) spells a ranking's name as a string (no
    special case of one ranking elsewhere), both name the same rankings, and the config's check and the CLI's
    choices are the table's keys."""
    import ast
    from pathlib import Path

    import lmrep
    from lmrep.cli import build_parser
    root = Path(lmrep.__file__).parent
    homes = {Path("inversion/exact/config.py"), Path("inversion/exact/rank.py")}
    named = [(str(p.relative_to(root)), node.value) for p in root.rglob("*.py") if p.relative_to(root) not in homes
             for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and node.value in RANKINGS]
    assert named == []
    assert list(FACTORIES) == list(RANKINGS)
    invert_parser = next(a for a in build_parser()._actions if a.dest == "command").choices["invert"]
    (flag,) = [a for a in invert_parser._actions if a.dest == "ranking"]
    assert list(flag.choices) == list(RANKINGS)


@pytest.mark.slow
def test_a_new_ranking_is_a_row_in_each_table(tiny_llama, monkeypatch):
    """A ranking added to the table and its factories alone is accepted by the config and the CLI and used by the
    search."""
    def reverse(pos):
        """vocabulary order from the end."""
        return Scores(torch.arange(len(pos.W), dtype=torch.float32))
    monkeypatch.setitem(RANKINGS, "reverse", "vocabulary order from the end")
    monkeypatch.setitem(FACTORIES, "reverse", reverse)
    (rec,) = _exact(tiny_llama, ["The sky"], 2, ranking="reverse", candidate_batch=4096)
    _check_recovered(rec)
    assert rec["certificate"][0]["candidates"] > 2  # brute force from the end: many candidates, still exact
    from lmrep.cli import build_parser
    args = build_parser().parse_args(["invert", "x", "--method", "exact", "--ranking", "reverse"])
    assert args.ranking == "reverse"


def test_a_long_prefix_at_depth_takes_batches_its_cache_copies_fit(tiny_llama):
    """Each candidate row gets its own copy of the prefix's keys and values: the rows of one pass are bounded so
    that the copies stay within a budget, and the search still finds every token with smaller batches."""
    from lmrep.inversion.exact.kvcache import Prefix
    O = layer_model(tiny_llama, 2)
    ids = tiny_llama.encode("The sky is blue and the grass is green.")
    p = Prefix.of(O, ids)
    k, v = p.kv[0]
    per_row = 2 * sum(k[0].numel() for k, _ in p.kv) * k.element_size() * (len(ids) + 1) // len(ids)
    assert p.rows_within(10 * per_row) == 10 and p.rows_within(per_row - 1) == 1
    assert Prefix(O).rows_within(123) == 123  # no prefix yet: nothing to copy
    out, cache = p.step(tiny_llama.embed(torch.tensor([ids[:3]]))[0])  # 3 rows: what the budget counts is copied
    assert sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers[:2]) * 4 == 3 * per_row
