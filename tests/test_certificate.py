"""The exact method's certificate, on hand-made residuals: the tolerance per stage, the relative residual, one
position's entry (ties, runner-up, closest candidates) and the record's summary. A silent slip here would certify a
wrong token, so each rule is checked where it bites."""
from __future__ import annotations

import math

import pytest
import torch

from lmrep import layer_model
from lmrep.inversion.exact.certificate import (CLOSEST, certify, elementwise_excess, entry, observed_dtype,
                                                relative_tolerance, residuals, storage_tolerance, tolerances)


@pytest.mark.parametrize("depth,head,stages", [(0, "none", 1), (1, "none", 2), (3, "none", 4), (3, "norm", 4),
                                               (3, "logits", 5), (2, "logits_nonorm", 4)])
def test_tolerance_is_epsilon_times_root_width_per_stage(tiny_gpt2, depth, head, stages):
    """eps(dtype) * sqrt(d_model) * (blocks run + 1, + 1 for an LM head)."""
    eps = torch.finfo(torch.float32).eps
    tol = relative_tolerance(layer_model(tiny_gpt2, depth, head))
    assert tol == pytest.approx(eps * math.sqrt(64) * stages, rel=1e-12)


def test_residual_is_the_largest_difference_relative_to_the_largest_target_value():
    h = torch.tensor([1.0, -4.0, 2.0])
    out = torch.tensor([[1.0, -4.0, 2.0], [1.0, -4.0, 3.0], [0.0, 0.0, 0.0], [1.0, -2.0, 2.5]])
    assert residuals(out, h).tolist() == [0.0, 0.25, 1.0, 0.5]
    zero = torch.zeros(3)  # a zero target: no division by zero, and anything else is far from it
    got = residuals(torch.stack([zero, torch.tensor([0.0, 1e-3, 0.0])]), zero)
    assert got[0] == 0 and math.isfinite(float(got[1])) and got[1] > 1e30


def _groups(lm, same=()):
    """(V,) group ids, each token its own, except the ``same`` ids, which share one (identical rows)."""
    groups = torch.arange(lm.vocab_size)
    for i in same:
        groups[i] = same[0]
    return groups


def test_entry_of_a_verified_position(tiny_gpt2):
    ids, res = torch.tensor([5, 9, 7, 3]), torch.tensor([0.5, 1e-9, 2e-9, 0.3])
    e = entry(tiny_gpt2, 4, 9, ids, res, 1e-8, _groups(tiny_gpt2), verified=True)
    assert (e["position"], e["token"], e["verified"], e["candidates"]) == (4, 9, True, 4)
    assert e["text"] == tiny_gpt2.decode([9]) and e["residual"] == pytest.approx(1e-9)
    assert e["ties"] == [7]  # another candidate inside the tolerance: said, not hidden
    assert (e["runner_up"], e["runner_up_text"]) == (7, tiny_gpt2.decode([7]))
    assert e["runner_up_residual"] == pytest.approx(2e-9)
    assert "closest" not in e


def test_a_residual_at_the_tolerance_is_inside_it(tiny_gpt2):
    """The same rule as verification (residual <= tolerance): a candidate exactly at it is a tie."""
    ids, res = torch.tensor([5, 9, 7]), torch.tensor([0.5, 0.125, 0.25])
    e = entry(tiny_gpt2, 0, 9, ids, res, 0.25, _groups(tiny_gpt2), verified=True)
    assert e["ties"] == [7]
    assert entry(tiny_gpt2, 0, 9, ids, res, 0.2, _groups(tiny_gpt2), verified=True)["ties"] == []


def test_entry_with_identical_rows(tiny_gpt2):
    """A token with the accepted one's embedding row is a tie, never the runner-up."""
    ids, res = torch.tensor([5, 9, 7, 3]), torch.tensor([0.5, 0.4, 1e-9, 0.3])
    e = entry(tiny_gpt2, 0, 7, ids, res, 1e-8, _groups(tiny_gpt2, same=(7, 11, 5)), verified=True)
    assert e["ties"] == [5, 11]  # the duplicates, tried (5) or not (11)
    assert e["runner_up"] == 3 and e["runner_up_residual"] == pytest.approx(0.3)
    alone = entry(tiny_gpt2, 0, 7, torch.tensor([7, 11]), torch.tensor([0.0, 0.0]), 1e-8,
                  _groups(tiny_gpt2, same=(7, 11)), verified=True)
    assert alone["runner_up"] is None and alone["runner_up_text"] is None and alone["runner_up_residual"] is None
    assert alone["ties"] == [11]


def test_entry_of_an_unverified_position_lists_the_closest(tiny_gpt2):
    ids = torch.arange(10, 18)  # 8 candidates, residuals falling with the id
    res = torch.linspace(0.9, 0.2, 8)
    e = entry(tiny_gpt2, 2, 17, ids, res, 1e-8, _groups(tiny_gpt2), verified=False)
    assert not e["verified"] and e["ties"] == [] and e["residual"] == pytest.approx(0.2)
    assert len(e["closest"]) == CLOSEST == 5
    assert [c["token"] for c in e["closest"]] == [17, 16, 15, 14, 13]  # nearest first
    assert [c["residual"] for c in e["closest"]] == pytest.approx(res.flip(0)[:5].tolist())
    assert e["closest"][1]["text"] == tiny_gpt2.decode([16])
    assert e["runner_up"] == 16  # the best of the others


def test_entry_takes_the_tokens_best_residual(tiny_gpt2):
    """A token verified twice (two batches) keeps its lower residual."""
    ids, res = torch.tensor([4, 6, 4]), torch.tensor([3e-9, 0.5, 1e-9])
    e = entry(tiny_gpt2, 0, 4, ids, res, 1e-8, _groups(tiny_gpt2), verified=True)
    assert e["residual"] == pytest.approx(1e-9) and e["candidates"] == 3 and e["runner_up"] == 6


def test_summary_of_the_positions():
    def cert():
        return [dict(verified=True, candidates=2, residual=1e-9, ties=[], runner_up_residual=1.0),
                dict(verified=True, candidates=6, residual=3e-9, ties=[], runner_up_residual=1.0),
                dict(verified=True, candidates=1, residual=2e-9, ties=[5], runner_up_residual=1.0)]
    tol = torch.full((3,), 1e-8, dtype=torch.float64)
    s = certify(cert(), tol)
    assert (s["verified"], s["candidates_per_token"], s["candidates_max"], s["max_residual"]) == (True, 3.0, 6, 3e-9)
    assert s["uniquely_verified"] == pytest.approx(2 / 3) and s["ties_found"] == 1 and s["tolerance"] == 1e-8
    one_off = cert()
    one_off[1]["verified"] = False  # one position unverified: the record is not verified
    assert certify(one_off, tol)["verified"] is False
    first = certify(cert()[:1], tol[:1])
    assert (first["candidates_per_token"], first["candidates_max"], first["max_residual"]) == (2.0, 2, 1e-9)



# ---- observed precision: the tolerance of states stored coarser than the model computes ----------------------------

def test_observed_dtype_is_the_coarsest_in_which_every_value_is_exact():
    assert observed_dtype(torch.tensor([0.3], dtype=torch.bfloat16)) == torch.bfloat16
    assert observed_dtype(torch.tensor([0.3], dtype=torch.float16)) == torch.float16
    # 1 + 2^-9 needs 10 bits of mantissa: exact in float16, not in bfloat16 (8 bits)
    assert observed_dtype(torch.tensor([1.0 + 2 ** -9, 0.5])) == torch.float16
    # exact in both: bfloat16, the coarser of the two (its eps is 8x float16's)
    assert observed_dtype(torch.tensor([1.0, 0.5, -3.0])) == torch.bfloat16
    assert observed_dtype(torch.tensor([0.1, 1.0])) == torch.float32  # 0.1 in float32 is exact in neither
    assert observed_dtype(torch.tensor([0.1], dtype=torch.float64)) == torch.float64


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_storage_tolerance_bounds_the_rounding_of_every_position_and_is_half_an_ulp(dtype):
    g = torch.Generator().manual_seed(0)
    scales = torch.logspace(-3, 3, 50, dtype=torch.float64)[:, None]  # (T, 1): positions of every magnitude
    true = torch.randn(50, 32, generator=g, dtype=torch.float64) * scales
    stored = true.to(dtype).double()  # (T, D): each value rounded to nearest
    tol = storage_tolerance(stored, dtype)  # (T,)
    err = (true - stored).abs().amax(-1) / stored.abs().amax(-1)
    assert tol.shape == (50,) and (err <= tol).all()
    assert (err > tol / 4).float().mean() > 0.9  # a bound, but not a loose one
    eps = torch.finfo(dtype).eps
    pos = torch.tensor([[1.0, 0.25], [-1.5, 1.0], [0.75, 0.0]], dtype=torch.float64)  # largest: 1, 1.5, 0.75
    assert storage_tolerance(pos, dtype).tolist() == pytest.approx([eps / 2, eps / 2 / 1.5, eps / 4 / 0.75])
    assert torch.isfinite(storage_tolerance(torch.zeros(2, 3), dtype)).all()  # an all-zero position: no 0/0


def test_tolerances_from_the_option_the_model_or_the_stored_precision(tiny_gpt2):
    from lmrep.inversion.exact import ExactConfig
    target = layer_model(tiny_gpt2, 1, "none")
    compute = relative_tolerance(target)
    h = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))  # float32 values, the model's precision
    tol, why, coarse = tolerances(target, h, ExactConfig())
    assert tol.tolist() == pytest.approx([compute] * 4) and coarse is None and why["observed_dtype"] == "float32"
    given, why, coarse = tolerances(target, h, ExactConfig(tolerance=0.01))
    assert given.tolist() == [0.01] * 4 and why == dict(tolerance_from="--tolerance") and coarse is None
    stored = h.to(torch.bfloat16).float()
    tol, why, coarse = tolerances(target, stored, ExactConfig())
    assert coarse == torch.bfloat16 and why["observed_dtype"] == "bfloat16" and "half an ulp" in why["tolerance_from"]
    assert torch.allclose(tol, compute + storage_tolerance(stored, torch.bfloat16))
    assert (tol > compute).all()


def test_elementwise_excess_passes_the_true_tokens_and_not_others(tiny_gpt2):
    target = layer_model(tiny_gpt2, 2, "none")
    ids = [464, 6766, 318, 4171]
    h = target(tiny_gpt2.embed(torch.tensor([ids])))[0].detach()  # (T, D)
    for dtype in (torch.bfloat16, torch.float16):
        stored = h.to(dtype).float()
        true = elementwise_excess(target, stored, ids, dtype)
        assert true.shape == (4,) and (true <= relative_tolerance(target)).all()
        other = elementwise_excess(target, stored, [464, 6766, 318, 11], dtype)
        assert (other[:3] <= relative_tolerance(target)).all() and other[3] > 100 * relative_tolerance(target)
        # a value moved by a few of its own ulps is outside its rounding interval, however small the value
        small = stored.abs().argmin(-1)[0]
        bumped = stored.clone()
        bumped[0, small] = stored[0, small] * (1 + 8 * torch.finfo(dtype).eps) + 1e-30
        assert elementwise_excess(target, bumped, ids, dtype)[0] > 0


def test_a_token_outside_the_stored_values_rounding_is_not_certified():
    def cert():
        return [dict(verified=True, candidates=1, residual=1e-9, ties=[], runner_up_residual=1.0),
                dict(verified=True, candidates=1, residual=1e-9, ties=[], runner_up_residual=5e-9)]
    tol = torch.tensor([1e-8, 1e-8], dtype=torch.float64)
    s = certify(cert(), tol, excess=torch.tensor([1e-7, 0.0]), compute=1e-8)
    first, second = s["certificate"]
    assert not first["verified"] and "not certified" in first["why"] and first["value_excess"] == pytest.approx(1e-7)
    assert second["verified"] and second["value_excess"] == 0.0 and "why" not in second
    assert s["verified"] is False and s["uniquely_verified"] == 0.0  # the second's runner-up is inside: not unique
    assert first["margin"] == pytest.approx(1.0 / 1e-8) and second["margin"] == pytest.approx(0.5)
    at_compute = certify(cert(), tol, excess=torch.tensor([1e-8, 1e-8]), compute=1e-8)
    assert at_compute["verified"] is True  # an excess equal to the computation's rounding is within it


def test_each_position_carries_its_tolerance_margin_and_uniqueness_at_the_boundary():
    cert = [dict(verified=True, candidates=1, residual=0.0, ties=[], runner_up_residual=None),  # nothing else tried
            dict(verified=True, candidates=2, residual=0.0, ties=[], runner_up_residual=2e-8),  # exactly at it
            dict(verified=True, candidates=2, residual=0.0, ties=[], runner_up_residual=3e-8)]
    tol = torch.tensor([1e-8, 2e-8, 2e-8], dtype=torch.float64)
    s = certify(cert, tol, excess=torch.tensor([0.0, 0.0, 1e-30]))  # the computation's rounding: 0 by default
    a, b, c = s["certificate"]
    assert [x["tolerance"] for x in (a, b, c)] == [1e-8, 2e-8, 2e-8]
    assert a["margin"] is None and not a["unique"]  # no runner-up verified: nothing says it is alone
    assert b["margin"] == pytest.approx(1.0) and not b["unique"]  # a runner-up at the tolerance would match too
    assert b["verified"] and not c["verified"]  # an excess above 0 with no computation's rounding given


def test_the_tolerance_of_states_at_the_models_precision_says_where_it_comes_from(tiny_gpt2):
    from lmrep.inversion.exact import ExactConfig
    target = layer_model(tiny_gpt2, 1, "none")
    tol, why, _ = tolerances(target, torch.randn(3, 64), ExactConfig())
    assert tol.dtype == torch.float64 and why["tolerance_from"] == "float32 states: the computation's rounding"
    _, why, _ = tolerances(target, torch.randn(3, 64).to(torch.float16).float(), ExactConfig())
    assert why["tolerance_from"] == ("float16 states: half an ulp of each position's magnitude + the computation's "
                                     "rounding")
