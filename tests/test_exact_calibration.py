"""The exact search's calibration on a first run: fitted a group of prefixes at a time as the search goes, so the
first token does not wait for all of it; the whole fit is the same however it was split, and it is kept on disk
once the search ends."""
from __future__ import annotations

import torch

from lmrep import InvertConfig, invert, layer_model
from lmrep.inversion.exact.calibration import FIRST_GROUPS, Fitter, calibrate, ready

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
