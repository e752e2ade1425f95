"""The states reader on files made here, no model needed: quantised states come back as their values with each
value's rounding bound, noised ones with their noise scale, and nothing that is not a finite floating-point tensor
of (T, D) is taken for one. A silent slip here would certify a token against the wrong tolerance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lmrep.errors import LmrepError
from lmrep.inversion import states
from lmrep.inversion.degrade import Degraded, Quantisation


def _values(T=3, D=8, seed=0) -> torch.Tensor:
    return torch.randn(T, D, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind,group", [("int8", "channel"), ("int4", "token"), ("fp8_e4m3", "tensor")])
def test_quantised_states_read_back_as_values_within_their_bounds(tmp_path, kind, group):
    x = [_values(seed=0), _values(T=2, seed=1)]
    quant = Quantisation(kind, group)
    path = states.save(tmp_path / "q.safetensors", states.quantise(x, quant),
                       dict(quant=kind, quant_group=group, dtype="float32"))
    got = states.load(path)
    assert got.keys == ["0", "1"] and got.bounds is not None and len(got.bounds) == 2
    for true, v, b in zip(x, got.tensors, got.bounds):
        assert v.dtype == torch.float32 and v.shape == true.shape and b.shape == true.shape
        assert ((v - true).abs() <= b + 1e-7).all() and (b > 0).all()  # the true value lies within its bound
        assert not torch.equal(v, true)  # ... and quantising changed it: the bound is needed
    obs = got.observed(1)
    assert isinstance(obs, Degraded) and torch.equal(obs.values, got.tensors[1])
    assert torch.equal(obs.bound, got.bounds[1])
    assert obs.sigma is None and kind in obs.about and group in obs.about
    picked = got.select(["1"])
    assert torch.equal(picked.bounds[0], got.bounds[1]) and torch.equal(picked.tensors[0], got.tensors[1])


def test_plain_states_are_observed_as_they_are_and_noised_ones_with_their_scale(tmp_path):
    x = _values()
    plain = states.load(states.save(tmp_path / "a.safetensors", [x], {}))
    assert plain.bounds is None and plain.observed(0) is plain.tensors[0]
    noised = states.load(states.save(tmp_path / "b.safetensors", [x], dict(noise="0.5")))
    obs = noised.observed(0)
    rms = x.double().pow(2).mean(-1).sqrt()
    assert isinstance(obs, Degraded) and obs.bound is None and "noise 0.5 x RMS" in obs.about
    assert torch.allclose(obs.sigma, 0.5 * rms / (1 + 0.5 ** 2) ** 0.5)
    assert states.load(states.save(tmp_path / "c.safetensors", [x], dict(noise="0.0"))).observed(0) is not None
    assert not isinstance(states.load(tmp_path / "c.safetensors").observed(0), Degraded)


@pytest.mark.parametrize("case,meta,message", [
    ("int-no-quant", {}, "not floating-point and its header's quant is None"),
    ("unknown-quant", {"quant": "nf4"}, "header's quant is 'nf4'"),
    ("no-scale", {"quant": "int8"}, "tensor '0' has no scales: store them under '0.scale'"),
    ("wrong-dtype", {"quant": "int4"}, "tensor '0' is float32 of shape \\(3, 8\\); int4 states are \\(T, D\\) int8"),
    ("wrong-shape", {"quant": "int8"}, "tensor '0' is int8 of shape \\(2, 3, 8\\); int8 states are \\(T, D\\) int8"),
    ("fp8-as-int", {"quant": "fp8_e5m2"}, "is int8 of shape \\(3, 8\\); fp8_e5m2 states are \\(T, D\\) float8_e5m2")])
def test_quantised_files_that_do_not_fit_their_header_are_refused(tmp_path, case, meta, message):
    q = torch.ones(3, 8, dtype=torch.int8)
    tensors = {"int-no-quant": {"0": q}, "unknown-quant": {"0": q, "0.scale": torch.ones(())},
               "no-scale": {"0": q}, "wrong-dtype": {"0": q.float(), "0.scale": torch.ones(())},
               "wrong-shape": {"0": torch.ones(2, 3, 8, dtype=torch.int8), "0.scale": torch.ones(())},
               "fp8-as-int": {"0": q, "0.scale": torch.ones(())}}[case]
    save_file(tensors, str(tmp_path / "s.safetensors"), metadata=meta)
    with pytest.raises(LmrepError, match=message):
        states.load(tmp_path / "s.safetensors")


def test_scales_without_a_quant_header_and_floats_with_scales_are_not_plain_states(tmp_path):
    save_file({"0": _values(), "0.scale": torch.ones(())}, str(tmp_path / "s.safetensors"))
    with pytest.raises(LmrepError, match="header's quant is None"):
        states.load(tmp_path / "s.safetensors")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_states_are_refused_with_their_count(tmp_path, bad):
    x = _values()
    x[0, 1] = x[2, 3] = bad
    save_file({"7": x}, str(tmp_path / "s.safetensors"))
    with pytest.raises(LmrepError, match="tensor '7' holds 2 NaN or infinite values: states are finite numbers"):
        states.load(tmp_path / "s.safetensors")


def test_a_header_without_metadata_reads_as_empty_and_keys_as_numbers(tmp_path):
    save_file({"2": _values(T=1), "11": _values(T=2)}, str(tmp_path / "s.safetensors"))
    got = states.load(tmp_path / "s.safetensors")
    assert got.meta == {} and got.keys == ["2", "11"] and [len(t) for t in got.tensors] == [1, 2]
    save_file({"x": _values(T=1)}, str(tmp_path / "t.safetensors"), metadata={"model": "m", "ids": "[[5]]"})
    named = states.load(tmp_path / "t.safetensors")
    assert named.meta == {"model": "m", "ids": "[[5]]"} and named.ids == [[5]] and named.keys == ["x"]


def test_a_states_file_that_is_not_a_tensor_file_is_one_line(tmp_path):
    (tmp_path / "s.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(LmrepError, match="is not a tensor file \\(safetensors or .npy\\)"):
        states.load(tmp_path / "s.safetensors")
    (tmp_path / "e.safetensors").write_bytes(b"")
    with pytest.raises(LmrepError, match="is empty \\(0 bytes\\)"):
        states.load(tmp_path / "e.safetensors")


# ---- what capture writes, and what the reader makes of every field ----------------------------------------------

def test_a_quantised_capture_writes_its_values_scales_and_header(tiny_gpt2, tmp_path):
    from lmrep import layer_model
    O = layer_model(tiny_gpt2, 1)
    ids = [tiny_gpt2.encode("The sky is blue."), tiny_gpt2.encode("Hello")]
    quant = Quantisation("int8", "channel")
    got = states.capture_file(tmp_path / "q.safetensors", O, ids, quant=quant)
    assert got[0].dtype == torch.float32 and len(got) == 2  # the states as captured, before quantisation
    back = states.load(tmp_path / "q.safetensors")
    assert back.keys == ["0", "1"] and back.ids == ids
    assert (back.meta["quant"], back.meta["quant_group"], back.meta["dtype"]) == ("int8", "channel", "float32")
    assert not torch.equal(got[0], back.tensors[0])  # rounded to int8 steps (the one-token prompt's are exact)
    assert all(((x - y).abs() <= bound).all() for x, y, bound in zip(got, back.tensors, back.bounds))
    obs = back.observed(1)
    assert isinstance(obs, Degraded) and obs.about == "int8 (scale per channel)" and obs.values is back.tensors[1]
    plain = states.load(states.capture_file(tmp_path / "p.safetensors", O, ids, keep_ids=False) and
                        tmp_path / "p.safetensors")
    assert plain.ids is None and "quant" not in plain.meta and plain.bounds is None
    assert all(torch.equal(a, b) for a, b in zip(plain.tensors, got))  # float32, no noise: the states themselves


def _kivi(x: np.ndarray, bits: int, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric min-max quantisation written apart from lmrep, as KIVI stores a cache (keys per channel: axis 0,
    values per position: axis 1): codes, scales and the minimum each scale starts from."""
    lo, hi = x.min(axis, keepdims=True), x.max(axis, keepdims=True)
    scale = (hi - lo) / (2 ** bits - 1)
    return np.rint((x - lo) / scale).astype(np.uint8), scale, lo


@pytest.mark.parametrize("bits,axis", [(2, 0), (4, 1), (8, 0)])
def test_a_cache_quantised_elsewhere_with_zero_points_reads_back_within_its_bounds(tmp_path, bits, axis):
    x = _values(T=6, D=16).numpy() * np.logspace(-1, 1, 16, dtype=np.float32) + 2
    codes, scale, lo = _kivi(x, bits, axis)
    shape = (16,) if axis == 0 else (6, 1)  # per channel, per position
    scale_t = torch.from_numpy(scale.reshape(shape).astype(np.float32))
    zero = torch.from_numpy((-lo / scale).reshape(shape).astype(np.float32))  # the minimum, in codes
    path = tmp_path / "kivi.safetensors"
    save_file({"0": torch.from_numpy(codes), "0.scale": scale_t, "0.zero": zero}, str(path),
              metadata=dict(quant=f"int{bits}"))
    got = states.load(path)
    v, b = got.tensors[0], got.bounds[0]
    assert ((v - torch.from_numpy(x)).abs() <= b * (1 + 1e-5)).all()  # every true value within its bound
    assert torch.allclose(b, (scale_t / 2).expand(6, 16))  # and the bound is half a step, no wider
    assert float((v - torch.from_numpy(x)).abs().max()) > 0.2 * float(b.max())  # and it is needed
    save_file({"0": torch.from_numpy(codes), "0.scale": scale_t}, str(tmp_path / "lost.safetensors"),
              metadata=dict(quant=f"int{bits}"))  # the zero points lost
    with pytest.raises(LmrepError, match="unsigned codes without zero points"):  # never read as symmetric
        states.load(tmp_path / "lost.safetensors")


def test_a_capture_with_zero_points_says_so_and_holds_the_states_within_its_bounds(tiny_gpt2, tiny_gpt2_dir,
                                                                                     tmp_path):
    from lmrep import layer_model
    from lmrep.cli import main
    O = layer_model(tiny_gpt2, "blocks.0.attn.hook_k")
    out = tmp_path / "k2.safetensors"
    assert main(["capture", "The sky is blue.", "--model", str(tiny_gpt2_dir), "--layer", "blocks.0.attn.hook_k",
                 "--quant", "int2", "--quant-zero", "--quant-group", "token", "--out", str(out)]) == 0
    back = states.load(out)
    assert back.meta["quant_zero"] == "true" and back.meta["quant"] == "int2"
    obs = back.observed(0)
    assert obs.about == "int2 (scale per token with zero points)"
    with torch.no_grad():
        true = O(tiny_gpt2.embed(torch.tensor(back.ids)))[0]
    assert ((obs.values - true).abs() <= obs.bound * (1 + 1e-5)).all() and obs.values.unique().numel() > 4
    assert all(row.unique().numel() <= 4 for row in obs.values)  # four levels a position: two bits
    assert main(["capture", "x", "--model", str(tiny_gpt2_dir), "--layer", "1", "--quant", "fp8_e4m3",
                 "--quant-zero", "--out", str(tmp_path / "no.safetensors")]) == 2


def test_a_noised_capture_draws_each_prompts_own_noise_under_the_seed(tiny_gpt2, tmp_path):
    from lmrep import layer_model
    O = layer_model(tiny_gpt2, 1)
    ids = [tiny_gpt2.encode("The sky is blue.")]
    clean = states.capture(O, ids)[0]
    a = states.capture_file(tmp_path / "a.safetensors", O, ids, noise=0.5, seed=3)[0]
    b = states.capture_file(tmp_path / "b.safetensors", O, ids, noise=0.5, seed=3)[0]
    c = states.capture_file(tmp_path / "c.safetensors", O, ids, noise=0.5, seed=4)[0]
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, clean)
    rel = ((a - clean).pow(2).mean(-1) / clean.pow(2).mean(-1)).sqrt()  # noise RMS over the state's, per position
    assert ((rel > 0.3) & (rel < 0.7)).all()
    back = states.load(tmp_path / "a.safetensors")
    obs = back.observed(0)
    assert back.meta["noise"] == "0.5" and isinstance(obs, Degraded) and obs.values is back.tensors[0]
    assert obs.about == "noise 0.5 x RMS"


def test_a_quantised_and_noised_file_says_both_and_a_header_without_a_group_says_so(tmp_path):
    q, scale, _ = Quantisation("int8", "tensor").quantise(_values())
    states.save(tmp_path / "q.safetensors", {"0": q, "0.scale": scale}, dict(quant="int8", noise="0.25"))
    obs = states.load(tmp_path / "q.safetensors").observed(0)
    assert obs.about == "int8 (scale per ?), noise 0.25 x RMS" and obs.bound is not None


def test_ids_may_be_zero_and_wrong_types_are_refused_in_words(tmp_path):
    states.save(tmp_path / "s.safetensors", [torch.zeros(3, 4)], {"ids": "[[0, 1, 0]]"})
    assert states.load(tmp_path / "s.safetensors").ids == [[0, 1, 0]]
    save_file({"0": torch.zeros(3, 4, dtype=torch.int32)}, str(tmp_path / "i.safetensors"))
    with pytest.raises(LmrepError, match="not floating-point"):
        states.load(tmp_path / "i.safetensors")
    with pytest.raises(LmrepError, match=r"tensor 'x' holds int64 values: give floating-point states$"):
        states._split(tmp_path, {"x": torch.zeros(2, 3, dtype=torch.int64)})


def test_a_file_from_other_weights_names_its_model_and_weights(tiny_gpt2):
    s = states.States(["0"], [torch.zeros(2, 64)], dict(model="some-model", fingerprint="abc123"))
    with pytest.raises(LmrepError, match=r"captured from 'some-model' \(weights 'abc123'\), not from "):
        states.check_made_by(s, tiny_gpt2, "s")
    s = states.States(["0"], [torch.zeros(2, 64)], dict(fingerprint="abc123"))
    with pytest.raises(LmrepError, match=r"captured from 'another model' \(weights"):
        states.check_made_by(s, tiny_gpt2, "s")


def test_keys_sort_numbers_first_then_names_and_selection_keeps_the_digest():
    assert sorted(["b", "10", "", "2", "a"], key=states._order) == ["2", "10", "", "a", "b"]
    s = states.States([str(i) for i in range(9)], [torch.zeros(1, 2)] * 9, digest="d1")
    assert s.select(["8"]).digest == "d1"
    with pytest.raises(LmrepError, match=r"'7', \.\.\.$"):
        s.select(["x"])
    with pytest.raises(LmrepError, match=r"'6', '7'$"):
        states.States([str(i) for i in range(8)], [torch.zeros(1, 2)] * 8).select(["x"])


def test_every_refusal_names_the_file(tmp_path):
    """One line that names the file it is about, whichever reader refused it."""
    import numpy as np
    cases = {}
    p = tmp_path / "nan.safetensors"
    save_file({"0": torch.tensor([[1.0, float("nan")]])}, str(p))
    cases[p] = "NaN or infinite"
    p = tmp_path / "ids.safetensors"
    states.save(p, [torch.zeros(2, 3)], {"ids": "[[1]]"})
    cases[p] = "token ids do not match"
    p = tmp_path / "ints.npy"
    np.save(p, np.zeros((2, 3), dtype=np.int32))
    cases[p] = "holds int32 values"
    p = tmp_path / "shape.npy"
    np.save(p, np.zeros((2, 3, 4, 5, 6), dtype=np.float32))
    cases[p] = "has shape"
    p = tmp_path / "scale.safetensors"
    q, _, _ = Quantisation("int8", "channel").quantise(_values())
    save_file({"0": q, "0.scale": torch.ones(5)}, str(p), metadata=dict(quant="int8"))
    cases[p] = "tensor '0'"
    p = tmp_path / "quant.safetensors"
    save_file({"0": q}, str(p), metadata=dict(quant="nf4"))
    cases[p] = "one of int8, int4, int2, fp8_e4m3, fp8_e5m2 in the header"
    p = tmp_path / "text.safetensors"
    p.write_text("not a tensor file at all, just some words")
    cases[p] = "is not a tensor file"
    for path, words in cases.items():
        with pytest.raises(LmrepError) as e:
            states.load(path)
        assert f"'{path}'" in str(e.value) and words in str(e.value) and "\n" not in str(e.value), path


def test_npy_is_known_by_its_name_or_by_its_magic(tmp_path):
    import numpy as np
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "states.bin").write_bytes((tmp_path / "a.npy").read_bytes())  # numpy's magic, another name
    got = states.load(tmp_path / "states.bin")
    assert got.keys == ["0"] and torch.equal(got.tensors[0], torch.from_numpy(x)) and got.bounds is None
    assert states.load(tmp_path / "a.npy").observed(0) is not None
    (tmp_path / "b.npy").write_bytes(b"PK\x03\x04 a zip, not an array")  # the name says .npy: read as one
    with pytest.raises(LmrepError, match="not a readable .npy array"):
        states.load(tmp_path / "b.npy")
    np.savez(tmp_path / "c.npz", a=x)
    (tmp_path / "c.npy").write_bytes((tmp_path / "c.npz").read_bytes())  # an archive under an array's name
    with pytest.raises(LmrepError, match=r"is an \.npz archive, not one array"):
        states.load(tmp_path / "c.npy")


def test_a_batch_of_one_token_prompts_is_states_and_headers_say_the_stored_dtype(tiny_gpt2, tmp_path):
    from lmrep import layer_model
    save_file({"b": torch.ones(2, 1, 4)}, str(tmp_path / "b.safetensors"))
    got = states.load(tmp_path / "b.safetensors")
    assert got.keys == ["b.0", "b.1"] and [tuple(t.shape) for t in got.tensors] == [(1, 4), (1, 4)]
    O, ids = layer_model(tiny_gpt2, 1), [tiny_gpt2.encode("The sky")]
    states.capture_file(tmp_path / "h.safetensors", O, ids, dtype=torch.float16)
    assert states.load(tmp_path / "h.safetensors").meta["dtype"] == "float16"
    states.capture_file(tmp_path / "q.safetensors", O, ids, dtype=torch.float16, quant=Quantisation("int8", "token"))
    assert states.load(tmp_path / "q.safetensors").meta["dtype"] == "float32"  # what the reader dequantises to


class _Opens:
    """An object whose unpickling opens (creates) a file: what a hostile .npy of objects could run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_npy_of_pickled_objects_is_refused_unopened(tmp_path):
    import numpy as np
    marker = tmp_path / "ran"
    np.save(tmp_path / "objects.npy", np.array([_Opens(marker)], dtype=object), allow_pickle=True)
    assert not marker.exists()
    with pytest.raises(LmrepError, match="not a readable .npy array"):
        states.load(tmp_path / "objects.npy")
    assert not marker.exists()  # nothing in the file was run
