"""The exact search's calibration on a first run: fitted a group of prefixes at a time as the search goes, so the
first token does not wait for all of it; the whole fit is the same however it was split, and it is kept on disk
once the search ends."""
from __future__ import annotations

import torch

from lmrep import InvertConfig, invert, layer_model
from lmrep.inversion.exact.calibration import FIRST_GROUPS, Fitter, calibrate, ready
from lmrep.inversion.exact.guess import Predicted, predicted_sqnorm

PROMPT = "The quick brown fox jumps over the lazy dog."


def test_a_calibration_fitted_in_parts_is_the_whole_fit(tiny_gpt2):
    O = layer_model(tiny_gpt2, 2)
    whole = Fitter(O, contexts=32, per_context=8).finish()
    part = Fitter(O, contexts=32, per_context=8).grow(1)
    early = part.calibration()
    assert early.later.A.shape == whole.later.A.shape
    assert not torch.allclose(early.later.A, whole.later.A, atol=1e-4)  # fewer pairs: another map
    assert torch.equal(early.first.A, whole.first.A)  # position 0's map is whole from the start
    late = part.grow(2).grow(10).calibration()  # past the end: no more than the groups there are
    assert part.done == part.groups == 4
    for a, b in ((late.later.A, whole.later.A), (late.secant, whole.secant), (late.later.mu, whole.later.mu)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_first_run_starts_before_its_calibration_is_whole_and_keeps_it(tiny_gpt2, tmp_path, monkeypatch):
    monkeypatch.setenv("LMREP_CACHE", str(tmp_path))
    tiny_gpt2._memo.clear()
    O = layer_model(tiny_gpt2, 3)
    assert not ready(O)
    ids = tiny_gpt2.encode(PROMPT)
    (rec,) = invert(O, [PROMPT], InvertConfig(method="exact"), progress=False)
    assert rec["recovered_ids"] == ids and rec["verified"]
    assert 0 < rec["setup_before_first_token"] < rec["setup_seconds"]  # the first token waited for a part only
    assert ready(O) and list((tmp_path / "exact").glob("calibration-*"))  # the whole fit, kept when it ended
    tiny_gpt2._memo.clear()  # a new process: read from disk, nothing to wait for before the first token
    (again,) = invert(O, [PROMPT], InvertConfig(method="exact"), progress=False)
    assert again["recovered_ids"] == ids and again["setup_seconds"] < rec["setup_seconds"]
    assert calibrate(O).cached
    tiny_gpt2._memo.clear()
    assert FIRST_GROUPS < Fitter(O, contexts=128, per_context=32).groups  # a first run waits for a part


def test_predicted_outputs_rank_the_token_whose_output_is_the_target_first():
    """Through an exactly linear layer (output = row @ slope + offset) the prediction is exact: one evaluated
    point, anywhere, puts the true token first; a ranking by distance to the start does not."""
    g = torch.Generator().manual_seed(0)
    V, d, F = 500, 16, 24
    W = torch.randn(V, d, generator=g)
    slope = torch.randn(d, F, generator=g) * torch.linspace(0.01, 3, d)[:, None]  # directions weigh unequally
    offset = torch.randn(F, generator=g)
    true = 123
    target = W[true] @ slope + offset
    start = W[true] + 2.0 * torch.randn(d, generator=g)  # a poor guess of the embedding
    p = Predicted(W, target, start, slope, predicted_sqnorm(W, slope))
    tried = torch.zeros(V, dtype=torch.bool)
    assert torch.equal(p.probes(), start[None])  # the start is evaluated with the first batch
    point = W[7] + torch.randn(d, generator=g)  # any point, with its true output
    p.observe(torch.tensor([7]), point[None], (point @ slope + offset)[None])
    assert p.probes() is None
    assert int(p.next(1, tried)[0]) == true
    tried[true] = True
    assert int(p.next(1, tried)[0]) != true  # a verified token is not proposed again
    dist = ((W - start) ** 2).sum(-1)
    assert int((dist < dist[true]).sum()) > 0  # the guess's own order would not have found it first


def test_the_calibrated_slope_of_a_layer_without_blocks_is_the_identity(tiny_gpt2):
    """At depth 0 the output at a position is the token's embedding plus the position's: the slope between two
    tokens under one prefix is the identity (a fit on mismatched pairs, or of another map, is not)."""
    cal = Fitter(layer_model(tiny_gpt2, 0), contexts=16, per_context=8).finish()
    eye = torch.eye(cal.forward.shape[0])
    assert torch.allclose(cal.forward, eye, atol=0.05), float((cal.forward - eye).abs().max())


class _Fixed:
    """A part of a fusion whose scores are whatever was last set."""

    def __init__(self, scores: torch.Tensor):
        self.scores = scores

    def score(self) -> torch.Tensor:
        return self.scores


def test_a_fusion_trusts_the_part_that_ranked_the_accepted_tokens_better():
    """Each part is judged by the rank of the token its position accepted, read from the part's scores as they
    stood when the position ended (a part that moved is judged where it moved to); weights go to the better one."""
    from types import SimpleNamespace

    from lmrep.inversion.exact.rank import _trust
    V, token = 50, 7
    good = torch.zeros(V)
    good[token] = 1.0  # ranks the token first
    bad = torch.arange(V, dtype=torch.float32)  # ranks it 43rd
    pos = SimpleNamespace(memory={}, tokens=[])
    moving = _Fixed(bad.clone())
    assert _trust(pos, [moving, _Fixed(bad)], "test") == [0.5, 0.5]  # nothing judged yet: equal
    moving.scores = good  # the first part moved onto the token before its position ended
    pos.tokens = [token]
    first, second = _trust(pos, [_Fixed(good), _Fixed(good)], "test")
    assert first > 2 * second
    pos2 = SimpleNamespace(memory={}, tokens=[])
    _trust(pos2, [_Fixed(bad), _Fixed(good)], "other")
    pos2.tokens = [token]
    first, second = _trust(pos2, [_Fixed(bad), _Fixed(bad)], "other")
    assert second > 2 * first
    assert "test" in pos.memory and "other" in pos2.memory  # each fusion keeps its own record
