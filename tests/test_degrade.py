"""Degraded states: quantisation keeps every value within the bound it states, the states file carries quantised
values and their scales and reads them back with that bound, and the exact method lists every token that fits a
degraded state (its ambiguity set), which never leaves out the true token."""
from __future__ import annotations

import pytest
import torch

from lmrep import InvertConfig, LmrepError, invert_outputs, layer_model
from lmrep.cli import main
from lmrep.inversion import states
from lmrep.inversion.degrade import QUANTS, Degraded, Quantisation, dequantise, noise_sigma, stored
from lmrep.inversion.formats import INTS, code_range

PROMPT = "The train to Edinburgh was delayed by snow."
GROUPS = ("tensor", "channel", "token", "8")


KINDS = [(kind, False) for kind in QUANTS] + [(kind, True) for kind in INTS]  # and with zero points


@pytest.mark.parametrize("kind,zero", KINDS)
@pytest.mark.parametrize("group", GROUPS)
def test_quantisation_stays_within_its_bound_and_the_bound_is_tight(kind, zero, group):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 32, generator=g) * torch.logspace(-2, 2, 32) + 3  # channels of very different scales, offset
    q, scale, zero_point = Quantisation(kind, group, zero).quantise(x)
    y, bound = dequantise(q, scale, zero_point, kind)
    assert q.shape == x.shape and y.dtype == torch.float32 and (zero_point is not None) == zero
    assert bool(((y - x).abs() <= bound * (1 + 1e-6) + 1e-6 * x.abs()).all())
    # not a vacuous bound: some value uses a good part of it, and the bound is below each value's scale share
    assert float(((y - x).abs() / bound).max()) > 0.25
    if kind in INTS:  # fewer bits, a wider bound; a zero point spends no code on the side the values never reach
        bits = sorted(INTS, key=INTS.get)
        widths = [float(dequantise(*Quantisation(b, group, zero).quantise(x), b)[1].mean()) for b in bits]
        assert widths == sorted(widths, reverse=True) and len(set(widths)) == len(widths)
        if zero:
            symmetric = float(dequantise(*Quantisation(kind, group).quantise(x), kind)[1].mean())
            assert float(bound.mean()) < symmetric
        lo, hi = code_range(kind, zero)
        assert int(q.min()) >= lo and int(q.max()) <= hi and (int(q.min()) == lo or int(q.max()) == hi)


def test_unknown_quantisation_and_groups_are_refused():
    with pytest.raises(LmrepError, match="unknown quantisation 'int3'"):
        Quantisation("int3")
    with pytest.raises(LmrepError, match="unknown quantisation group"):
        Quantisation("int8", "row")
    with pytest.raises(LmrepError, match="do not divide"):
        Quantisation("int8", "5").quantise(torch.ones(2, 32))
    with pytest.raises(LmrepError, match="fp8_e4m3 has no zero point"):
        Quantisation("fp8_e4m3", zero=True)


def _outputs(lm, name):
    ids = lm.encode(PROMPT)
    with torch.no_grad():
        return ids, layer_model(lm, name)(lm.embed(torch.tensor([ids])))[0]


@pytest.mark.parametrize("kind,group,zero", [("int8", "channel", False), ("int4", "token", False),
                                             ("fp8_e4m3", "tensor", False), ("int2", "8", True)])
def test_every_ambiguity_set_holds_the_true_token(kind, group, zero, arch_models):
    lm = arch_models("llama")
    name = "blocks.1.attn.hook_kv"
    ids, h = _outputs(lm, name)
    y, bound = dequantise(*Quantisation(kind, group, zero).quantise(h), kind)
    rec = next(invert_outputs(layer_model(lm, name), [Degraded(y, bound=bound, about=kind)],
                              InvertConfig(method="exact")))
    cert = rec["certificate"]
    assert all(truth in c["ambiguity"] for truth, c in zip(ids, cert))
    assert rec["ambiguity_sizes"] == [len(c["ambiguity"]) for c in cert]
    # exhaustive: every position verified the whole vocabulary, so the sets are complete
    assert all(c["candidates"] == lm.vocab_size for c in cert)
    assert rec["certified_positions"] == sum(c["unique"] for c in cert) <= len(ids)


@pytest.mark.slow
def test_noisier_states_give_larger_sets_and_noise_is_tested_by_its_scale(arch_models):
    lm = arch_models("llama")
    name = "blocks.0.attn.hook_k[0]"  # one head of keys: little to go on, so noisy states become ambiguous
    ids, h = _outputs(lm, name)
    target, cfg = layer_model(lm, name), InvertConfig(method="exact")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(h.shape, generator=g)
    sizes = {}
    for noise in (0.05, 3.0):
        y = h + noise * h.pow(2).mean(-1, keepdim=True).sqrt() * z
        rec = next(invert_outputs(target, [Degraded(y, sigma=noise_sigma(y, noise))], cfg))
        assert all(truth in c["ambiguity"] for truth, c in zip(ids, rec["certificate"])), noise
        sizes[noise] = rec["mean_ambiguity"]
        if noise == 0.05:  # the same noisy states tested as if they were clean are not certified at all
            assert not next(invert_outputs(target, [y], cfg))["verified"]
    assert sizes[3.0] > sizes[0.05] >= 1


def test_quantised_capture_round_trips_through_the_states_file(arch_dirs, tmp_path):
    model = str(arch_dirs("gpt2"))
    out = tmp_path / "kv.safetensors"
    assert main(["capture", PROMPT, "--model", model, "--layer", "blocks.1.attn.hook_v", "--quant", "int4",
                 "--quant-group", "token", "--out", str(out)]) == 0
    st = states.load(out)
    assert st.meta["quant"] == "int4" and st.bounds is not None and st.tensors[0].dtype == torch.float32
    obs = st.observed(0)
    assert isinstance(obs, Degraded) and obs.bound.shape == st.tensors[0].shape
    run = tmp_path / "run"
    assert main(["invert", "--states", str(out), "--model", model, "--layer", "blocks.1.attn.hook_v",
                 "--method", "exact", "--out", str(run), "--json"]) == 0


def test_bad_quantised_files_get_one_line(tmp_path):
    from safetensors.torch import save_file
    q = torch.zeros(3, 8, dtype=torch.int8)
    cases = {"noquant": ({"0": q, "0.scale": torch.ones(())}, {}, "header's quant"),
             "noscale": ({"0": q}, {"quant": "int8"}, "has no scales"),
             "badscale": ({"0": q, "0.scale": torch.ones(5)}, {"quant": "int8"}, "fits no granularity"),
             "negscale": ({"0": q, "0.scale": -torch.ones(())}, {"quant": "int8"}, "positive and finite"),
             "wrongdtype": ({"0": q.float(), "0.scale": torch.ones(())}, {"quant": "int8"}, "are \\(T, D\\) int8"),
             "unknown": ({"0": q, "0.scale": torch.ones(())}, {"quant": "nf4"}, "header's quant"),
             "range": ({"0": q + 9, "0.scale": torch.ones(())}, {"quant": "int4"}, "codes from 9 to 9, outside int4's"),
             "negzero": ({"0": q.to(torch.uint8) + 5, "0.scale": torch.ones(()), "0.zero": torch.ones(())},
                         {"quant": "int2"}, "codes from 5 to 5, outside int2's \\[0, 3\\] \\(with zero"),
             "zeroshape": ({"0": q, "0.scale": torch.ones(8), "0.zero": torch.ones(3, 1)}, {"quant": "int8"},
                           "zero points of shape \\(3, 1\\) do not match its scales' \\(8,\\)"),
             "zeronan": ({"0": q, "0.scale": torch.ones(()), "0.zero": torch.tensor(float("nan"))}, {"quant": "int8"},
                         "one finite zero point per scale")}
    for name, (tensors, meta, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        with pytest.raises(LmrepError, match=message):
            states.load(path)
        assert main(["invert", "--states", str(path), "--model", "gpt2", "--untrained", "--layer", "1"]) == 2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_float_states_carry_their_storage_rounding_as_their_bound(dtype):
    x = torch.randn(5, 32, generator=torch.Generator().manual_seed(2)) * torch.logspace(-2, 2, 32)
    held = stored(x.to(dtype))
    assert held.values.dtype == torch.float32 and held.bound.shape == x.shape
    assert bool(((held.values - x).abs() <= held.bound).all())
    assert float(((held.values - x).abs() / held.bound).max()) > 0.25  # the bound is half an ulp, not slack
    assert float(stored(x).bound.abs().max()) == 0.0  # float32: only the computation's rounding is left


def test_a_cut_bounds_the_work_only_where_something_fits_within_it(arch_models):
    """Candidates in vocabulary order, a cut of 2: where neither of tokens 0 and 1 fits, the search goes on through
    the rest of the vocabulary, so the set holds the true token instead of coming out empty."""
    lm = arch_models("llama")
    name = "blocks.1.attn.hook_kv"
    ids, h = _outputs(lm, name)
    y, bound = dequantise(*Quantisation("int8", "channel").quantise(h), "int8")
    cfg = InvertConfig(method="exact", max_candidates=2, ranking="vocab")
    rec = next(invert_outputs(layer_model(lm, name), [Degraded(y, bound=bound, about="int8")], cfg))
    cert = rec["certificate"]
    assert rec["recovered_ids"] == ids and all(truth in c["ambiguity"] for truth, c in zip(ids, cert))
    assert any(t >= 2 for t in ids)
    for truth, c in zip(ids, cert):
        fits_in_cut = any(t < 2 for t in c["ambiguity"])
        assert c["candidates"] == (2 if fits_in_cut else lm.vocab_size), (truth, c["candidates"])
