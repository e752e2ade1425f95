"""The probe ranking of exact search: a map from a layer's state back to the token there, fitted in seconds on the
model's own states, cached per model and layer, refined by what the search verifies, and a registered ranking."""
import pytest
import torch

from lmrep import InvertConfig, invert, layer_model
from lmrep.inversion.exact.probe import RidgeStats, probe
from lmrep.inversion.exact.config import RANKINGS

PROMPT = "In 1848, revolutions spread across Europe."


def _held_out(lm, O, n: int = 4, T: int = 16):
    """Random ids not in the probe's sample (another seed) and the layer's states for them, (n, T, D)."""
    ids = torch.randint(0, lm.vocab_size, (n, T), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        return ids, O(lm.embed(ids))


def _nearest(lm, x: torch.Tensor) -> torch.Tensor:
    """The embedding rows nearest each of x (n, d), as token ids (n,)."""
    W = lm.embedding_matrix
    return ((W * W).sum(-1)[None] - 2 * x @ W.T).argmin(-1)


@pytest.mark.parametrize("ranking", ["probe", "fused"])
@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_probe_rankings_recover_the_prompt_exactly(model, ranking, request):
    lm = request.getfixturevalue(model)
    (rec,) = invert(layer_model(lm, 2), [PROMPT], InvertConfig(method="exact", ranking=ranking), progress=False)
    assert rec["exact_match"] and rec["verified"] and rec["recovered_ids"] == rec["target_ids"]
    assert rec["probe_seconds"] is not None and rec["calibration_seconds"] is None  # the probe, no calibration


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_probe_ranks_the_true_token_first_at_most_positions(model, request):
    """On held-out random ids, the nearest row to the probe's prediction is the token at nearly every position (a
    probe paired with the wrong position's token, or the wrong position kind, gets next to none); and the probe
    of this layer predicts this layer's states better than the probe of another layer does."""
    lm = request.getfixturevalue(model)
    O, other = layer_model(lm, 3), layer_model(lm, 1)
    ids, h = _held_out(lm, O)
    fit, dtype = probe(O), lm.embedding_matrix.dtype
    first = _nearest(lm, fit.first.map(dtype)(h[:, 0]))
    later = _nearest(lm, fit.later.map(dtype)(h[:, 1:].flatten(0, 1)))
    assert (first == ids[:, 0]).float().mean() >= 0.9
    assert (later == ids[:, 1:].flatten()).float().mean() >= 0.9
    truth = lm.embedding_matrix[ids[:, 1:].flatten()]
    own = ((fit.later.map(dtype)(h[:, 1:].flatten(0, 1)) - truth) ** 2).sum(-1).mean()
    theirs = ((probe(other).later.map(dtype)(h[:, 1:].flatten(0, 1)) - truth) ** 2).sum(-1).mean()
    assert own < theirs


def test_probe_is_cached_per_model_and_layer(tiny_gpt2, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREP_CACHE", str(tmp_path))
    for lm in (tiny_gpt2, tiny_llama):
        lm._memo.clear()
    made = probe(layer_model(tiny_gpt2, 2))
    assert not made.cached and probe(layer_model(tiny_gpt2, 2)) is made  # memoised in memory
    other_layer, other_model = probe(layer_model(tiny_gpt2, 1)), probe(layer_model(tiny_llama, 2))
    assert not other_layer.cached and not other_model.cached  # neither reuses the first
    assert not torch.equal(other_layer.later.s["zx"], made.later.s["zx"])
    assert len(list((tmp_path / "exact").glob("probe-*.safetensors"))) == 3
    tiny_gpt2._memo.clear()  # a new process: the fit comes from disk
    again = probe(layer_model(tiny_gpt2, 2))
    assert again.cached and again.seconds == made.seconds
    for part in ("first", "later"):
        for key, value in getattr(made, part).s.items():
            assert torch.equal(getattr(again, part).s[key], value), (part, key)
    for lm in (tiny_gpt2, tiny_llama):
        lm._memo.clear()


def test_the_search_refines_the_probe_with_what_it_verifies(tiny_llama):
    """Every candidate verified after position 0 is one more pair of the later fit (position 0's of the first)."""
    O = layer_model(tiny_llama, 2)
    fit = probe(O)
    before = fit.first.n, fit.later.n
    (rec,) = invert(O, [PROMPT], InvertConfig(method="exact", ranking="probe"), progress=False)
    cert = rec["certificate"]
    assert fit.first.n - before[0] == cert[0]["candidates"]
    assert fit.later.n - before[1] == sum(c["candidates"] for c in cert[1:])


def test_ridge_stats_added_in_parts_equal_one_fit():
    """Pairs added later give the map a fit of all of them at once would (the standardisation of the first sample
    kept): the sums are the ridge's sufficient statistics."""
    g = torch.Generator().manual_seed(0)
    F, A = torch.randn(300, 8, generator=g, dtype=torch.float64), torch.randn(8, 5, generator=g, dtype=torch.float64)
    X = F @ A + 0.01 * torch.randn(300, 5, generator=g, dtype=torch.float64)
    whole = RidgeStats.fit(F[:100], X[:100])
    whole.add(F[100:], X[100:])
    parts = RidgeStats.fit(F[:100], X[:100])
    parts.add(F[100:200], X[100:200])
    parts.map(torch.float64)  # solved in between: a later add must invalidate it
    parts.add(F[200:], X[200:])
    assert whole.n == parts.n == 300
    assert torch.allclose(whole.map(torch.float64).A, parts.map(torch.float64).A)
    assert torch.allclose(parts.map(torch.float64)(F), X, atol=0.1)  # and it fits


def test_probe_rankings_are_valid_choices():
    from lmrep.cli import build_parser
    for name in ("probe", "fused"):
        assert name in RANKINGS
        assert InvertConfig(method="exact", ranking=name).ranking == name
        assert build_parser().parse_args(["invert", "x", "--method", "exact", "--ranking", name]).ranking == name
