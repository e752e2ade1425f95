"""Observed states in, prompt out: capture, invert --states, observed precision, --layer auto, and one-line errors.

Round trips in float32 at a middle layer of tiny GPT-2- and Llama-style models; bf16 states at layer 1 are
recovered with the bf16 tolerance; --layer auto finds the layer of untrained GPT-2 and tiny models; noisy states
are reported unverified, never falsely certified; hidden states that transformers computed and safetensors saved
invert too."""
import json

import pytest
import torch
from safetensors.torch import save_file

from lmrep import InvertConfig, LmrepError, invert, invert_outputs, layer_model
from lmrep.cli import main
from lmrep.inversion import score
from lmrep.inversion.exact import relative_tolerance
from lmrep.inversion.locate import locate
from lmrep.inversion.exact.certificate import observed_dtype
from lmrep.models.load import weights_hash
from lmrep.inversion import states

EXACT = InvertConfig(method="exact")


def _round_trip(lm, layer, prompts, tmp_path, dtype=torch.float32):
    """capture -> file -> load -> invert_outputs -> scored records, and the loaded file."""
    O = layer_model(lm, layer)
    ids = [lm.encode(p) for p in prompts]
    path = tmp_path / "states.safetensors"
    states.save(path, states.capture(O, ids, dtype), states.header(O, dtype, 0.0, ids))
    got = states.load(path)
    states.check_made_by(got, lm, path)
    recs = [score(O, r, x) for r, x in zip(invert_outputs(O, got.tensors, EXACT), got.ids)]
    return recs, got


@pytest.mark.parametrize("arch,layer", [("gpt2", 2), ("llama", 3)])
def test_capture_then_invert_round_trips_exactly_in_float32(arch, layer, arch_models, tmp_path):
    lm = arch_models(arch)
    (rec,), got = _round_trip(lm, layer, ["Paris is the capital"], tmp_path)
    assert got.meta["model"] == lm.name and got.meta["fingerprint"] == weights_hash(lm)
    assert got.meta["layer_name"] == layer_model(lm, layer).name and got.meta["dtype"] == "float32"
    assert got.ids == [lm.encode("Paris is the capital")] and got.keys == ["0"]
    assert rec["exact_match"] and rec["verified"] and rec["observed_dtype"] == "float32"
    assert all(c["unique"] and c["margin"] > 1 for c in rec["certificate"])


def test_bf16_states_at_layer_1_are_recovered_with_the_bf16_tolerance(smol, tmp_path):
    (rec,), got = _round_trip(smol, 1, ["The sky is blue."], tmp_path, torch.bfloat16)
    assert got.tensors[0].dtype == torch.bfloat16 and rec["observed_dtype"] == "bfloat16"
    assert rec["exact_match"] and rec["verified"]
    f32 = relative_tolerance(layer_model(smol, 1))
    for c in rec["certificate"]:  # per position: half a bf16 ulp of its magnitude (2^-9..2^-8) + the computation's
        assert f32 + 2 ** -9 <= c["tolerance"] <= f32 + 2 ** -8 and c["residual"] <= c["tolerance"]
        assert c["unique"] == (c["runner_up_residual"] > c["tolerance"] and not c["ties"])
        assert c["value_excess"] <= f32  # the true tokens lie inside every stored value's own rounding interval
    # float32 values that went through a bf16 cast carry bf16 precision, and are treated as such
    assert observed_dtype(got.tensors[0].float()) == torch.bfloat16
    assert observed_dtype(torch.randn(4, 8)) == torch.float32


@pytest.mark.slow
def test_a_wide_tolerance_reports_ties_instead_of_guessing(tiny_llama):
    O = layer_model(tiny_llama, 2)
    ids = tiny_llama.encode("The sky is blue.")
    (rec,) = invert_outputs(O, states.capture(O, [ids])[0], InvertConfig(method="exact", tolerance=10.0))
    assert rec["tolerance_from"] == "--tolerance" and rec["verified"]
    assert rec["uniquely_verified"] == 0 and not any(c["unique"] for c in rec["certificate"])
    assert all(c["ties"] for c in rec["certificate"])  # everything is inside such a tolerance: all said


def test_layer_auto_finds_the_layer_of_untrained_gpt2(gpt2_untrained):
    O = layer_model(gpt2_untrained, 7)
    h = states.capture(O, [gpt2_untrained.encode("The sky is blue.")])[0]
    found = locate(gpt2_untrained, h[0])
    assert found.target.name == O.name and found.matching == [O.name]
    assert len(found.evidence) == 2 * 12 + 1 and O.name in found.text()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_layer_auto_finds_every_layer_and_head_of_tiny_models(arch, arch_models):
    lm = arch_models(arch)
    ids = lm.encode("The sky is blue.")
    for layer, head in [(0, "none"), (1, "none"), (2, "none"), (4, "none"), (2, "norm"), (4, "norm")]:
        O = layer_model(lm, layer, head)
        found = locate(lm, states.capture(O, [ids])[0][0])
        assert (found.target.spec.depth, found.target.spec.head) == (layer, head), (layer, head, found.text())


@pytest.mark.slow
def test_layer_auto_says_when_no_layer_matches(tiny_gpt2):
    with pytest.raises(LmrepError, match="no layer of .* matches"):
        locate(tiny_gpt2, torch.randn(64, generator=torch.Generator().manual_seed(0)))


def test_noise_gives_unverified_results_not_false_ones(tiny_llama):
    O = layer_model(tiny_llama, 2)
    ids = tiny_llama.encode("In 1848, revolutions spread across Europe.")
    (h,) = states.capture(O, [ids], noise=1e-2, seed=0)
    (clean,) = states.capture(O, [ids])
    rel = (h - clean).pow(2).mean(-1).sqrt() / clean.pow(2).mean(-1).sqrt()  # (T,): the noise per position's RMS
    assert torch.allclose(rel, torch.full_like(rel, 1e-2), rtol=0.3)
    (rec,) = invert_outputs(O, h, InvertConfig(method="exact", max_candidates=32))
    assert not rec["verified"] and rec["uniquely_verified"] == 0
    assert all(not c["verified"] and c["closest"] for c in rec["certificate"])
    for method in ("gd", "nearest"):  # the gradient methods still return their best tokens
        (r,) = invert_outputs(O, h, InvertConfig(method=method, steps=5))
        assert len(r["recovered_ids"]) == len(ids) and "threshold" not in r


def test_every_method_takes_one_many_or_a_list_of_outputs(tiny_gpt2):
    O = layer_model(tiny_gpt2, 1)
    a, b = (tiny_gpt2.encode(p) for p in ("The sky is blue.", "Hello there world"))
    outs = states.capture(O, [a, b])
    assert [r["recovered_ids"] for r in invert_outputs(O, outs, EXACT)] == [a, b]
    assert [r["recovered_ids"] for r in invert_outputs(O, torch.stack([outs[0][:3], outs[1][:3]]), EXACT)] == \
        [a[:3], b[:3]]
    (one,) = invert_outputs(O, outs[0], InvertConfig(steps=10))
    (known,) = invert(O, ["The sky is blue."], InvertConfig(steps=10), progress=False)
    # the truth adds scores and diagnostics (seeded by the ids, as always); the record of what came back is alike
    assert set(one) < set(known) and {"token_accuracy", "threshold", "true_rank", "prompt"} <= set(known) - set(one)
    with pytest.raises(LmrepError, match="width"):
        list(invert_outputs(O, torch.zeros(3, 5), EXACT))


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.mark.slow
def test_cli_capture_then_invert_with_resume(tiny_gpt2_dir, tmp_path, capsys):
    f = tmp_path / "s.safetensors"
    assert _cli(capsys, "capture", "The sky is blue.", "Hello world", "--model", tiny_gpt2_dir, "--layer", 2,
                "--dtype", "float16", "--out", f)[0] == 0
    run = tmp_path / "run"
    argv = ["invert", "--states", f, "--model", tiny_gpt2_dir, "--layer", "auto", "--method", "exact", "--json",
            "--out", run]
    code, out, err = _cli(capsys, *argv)
    assert code == 0 and "--layer auto: blocks.1.hook_resid_post" in err
    recs = [json.loads(x) for x in out.splitlines()]
    assert [(r["source"], r["key"], r["layer"]) for r in recs] == [("states", "0", 2), ("states", "1", 2)]
    assert all(r["exact_match"] and r["observed_dtype"] == "float16" for r in recs)
    assert json.loads((run / "layer_search.json").read_text())["found"] == "blocks.1.hook_resid_post"
    code, again, err = _cli(capsys, *argv)  # the same command resumes: nothing redone
    assert code == 0 and "2 of 2 tensor(s) already finished" in err and again == out
    g = tmp_path / "other.safetensors"
    _cli(capsys, "capture", "Other text", "--model", tiny_gpt2_dir, "--layer", 2, "--out", g)
    code, _, err = _cli(capsys, *(argv[:2] + [g] + argv[3:]))  # another file, the same folder: refused
    assert code == 2 and "another configuration" in err and len(err.strip().splitlines()) == 1  # the refusal alone


@pytest.mark.slow
def test_states_that_transformers_computed_invert_too(tiny_gpt2, tmp_path, capsys):
    ids = [tiny_gpt2.encode(p) for p in ("The sky is blue.", "A cat sat here.")]
    T = min(map(len, ids))
    with torch.no_grad():
        hs = tiny_gpt2.model(input_ids=torch.tensor([x[:T] for x in ids]), output_hidden_states=True).hidden_states
    f = tmp_path / "hidden.safetensors"
    save_file({"layer2": hs[2].contiguous()}, str(f))  # (2, T, D) under one key: keys layer2.0, layer2.1
    code, out, _ = _cli(capsys, "invert", "--states", f, "--model", tiny_gpt2.model.name_or_path, "--layer", 2,
                        "--method", "exact", "--json", "--key", "layer2.1", "--out", tmp_path / "r")
    (rec,) = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and rec["key"] == "layer2.1" and rec["recovered_ids"] == ids[1][:T] and rec["verified"]
    assert "token_accuracy" not in rec  # no ids in the file: nothing to score against


@pytest.fixture()
def captured(tiny_gpt2_dir, tmp_path, capsys):
    f = tmp_path / "s.safetensors"
    assert _cli(capsys, "capture", "The sky is blue.", "--model", tiny_gpt2_dir, "--layer", 2, "--out", f)[0] == 0
    return f


def _bad(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("not tensors")
    ints = tmp_path / "ints.safetensors"
    save_file({"0": torch.zeros(3, 64, dtype=torch.long)}, str(ints))
    return text, ints


@pytest.mark.parametrize("case,message", [
    ("fingerprint", "was captured from"), ("shape", "outputs width 50257"), ("key", "key '5' is not in"),
    ("text", "is not a tensor file"), ("ints", "floating-point"), ("both", "not both"),
    ("auto-head", "finds the head too"), ("auto-prompts", "use it with --states")])
@pytest.mark.slow
def test_bad_states_are_one_line_and_exit_2(case, message, captured, tiny_gpt2_dir, tiny_llama_dir, tmp_path,
                                           capsys):
    text, ints = _bad(tmp_path)
    base = ["invert", "--states", captured, "--model", tiny_gpt2_dir, "--layer", 2, "--out", tmp_path / "r"]
    argv = {"fingerprint": ["invert", "--states", captured, "--model", tiny_llama_dir, "--layer", 2],
            "shape": base + ["--head", "logits"], "key": base + ["--key", "5"],
            "text": ["invert", "--states", text, "--model", tiny_gpt2_dir], "both": base + ["Some text"],
            "ints": ["invert", "--states", ints, "--model", tiny_gpt2_dir],
            "auto-head": ["invert", "--states", captured, "--model", tiny_gpt2_dir, "--layer", "auto", "--head",
                          "norm"],
            "auto-prompts": ["invert", "Some text", "--model", tiny_gpt2_dir, "--layer", "auto"]}[case]
    code, _, err = _cli(capsys, *argv, *(["--out", tmp_path / "r"] if "--out" not in argv else []))
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "r").exists()  # refused before any work


def test_capture_refuses_a_bad_out_path(tiny_gpt2_dir, tmp_path, capsys):
    code, _, err = _cli(capsys, "capture", "hi", "--model", tiny_gpt2_dir, "--out", tmp_path / "s.txt")
    assert code == 2 and "must name a .safetensors file" in err
    with pytest.raises(SystemExit):
        main(["capture", "hi", "--model", str(tiny_gpt2_dir), "--out", str(tmp_path / "no" / "s.safetensors")])
    assert "does not exist" in capsys.readouterr().err


# ---- the states file, piece by piece ------------------------------------------------------------------------------

def test_header_and_round_trip_with_ids(tiny_gpt2, tmp_path):
    O = layer_model(tiny_gpt2, 2)
    ids = [tiny_gpt2.encode("The sky is blue."), tiny_gpt2.encode("Hello")]
    got = states.capture(O, ids, torch.float16)
    assert [t.shape for t in got] == [(len(ids[0]), 64), (len(ids[1]), 64)] and got[0].dtype == torch.float16
    meta = states.header(O, torch.float16, 0.25, ids)
    assert meta == dict(format="lmrep-states/1", model=tiny_gpt2.name, trained=json.dumps(tiny_gpt2.trained),
                        fingerprint=weights_hash(tiny_gpt2), layer_name=O.name, layer="2", head="none",
                        dtype="float16", model_dtype="float32", noise="0.25", ids=json.dumps(ids))
    assert "ids" not in states.header(O, torch.float16, 0.0, None)
    path = states.save(tmp_path / "s.safetensors", got, meta)
    back = states.load(path)
    assert back.keys == ["0", "1"] and back.ids == ids and back.meta == meta and len(back.digest) == 16
    assert all(torch.equal(a, b) for a, b in zip(back.tensors, got))
    with torch.no_grad():
        assert torch.allclose(got[1].float(), O(tiny_gpt2.embed(torch.tensor([ids[1]])))[0], atol=1e-2)
    one = back.select(["1"])
    assert one.keys == ["1"] and one.ids == [ids[1]] and torch.equal(one.tensors[0], got[1]) and one.meta == meta
    other = states.save(tmp_path / "t.safetensors", got[:1], {})
    assert states.load(path).digest == back.digest != states.load(other).digest  # the digest is of the bytes


def test_select_names_what_the_file_has():
    s = states.States([str(i) for i in range(10)], [torch.zeros(1, 2)] * 10)
    assert s.select(["3", "1"]).keys == ["3", "1"] and s.select(["3"]).ids is None
    with pytest.raises(LmrepError, match=r"key 'x' is not in the states file: it has '0', '1', '2', '3', '4', '5', '6', '7', \.\.\.$"):
        s.select(["1", "x"])
    with pytest.raises(LmrepError, match=r"it has '0', '1'$"):
        states.States(["0", "1"], [torch.zeros(1, 2)] * 2).select(["2"])


def test_keys_are_ordered_by_number_then_name_and_batches_are_split(tmp_path):
    save_file({"10": torch.zeros(2, 4), "2": torch.ones(3, 4), "b": torch.zeros(2, 2, 4), "a": torch.zeros(1, 4)},
              str(tmp_path / "s.safetensors"))
    got = states.load(tmp_path / "s.safetensors")
    assert got.keys == ["2", "10", "a", "b.0", "b.1"] and got.meta == {} and got.ids is None
    assert [tuple(t.shape) for t in got.tensors] == [(3, 4), (2, 4), (1, 4), (2, 4), (2, 4)]


def test_npy_arrays_are_states_too(tmp_path):
    import numpy as np
    np.save(tmp_path / "one.npy", np.ones((3, 4), dtype=np.float32))
    np.save(tmp_path / "many.npy", np.zeros((2, 5, 4), dtype=np.float64))
    one, many = states.load(tmp_path / "one.npy"), states.load(tmp_path / "many.npy")
    assert one.keys == ["0"] and one.tensors[0].shape == (3, 4) and one.meta == {}
    assert many.keys == ["0", "1"] and many.tensors[1].shape == (5, 4) and many.tensors[1].dtype == torch.float64
    np.save(tmp_path / "ints.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(LmrepError, match="holds int64 values"):
        states.load(tmp_path / "ints.npy")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(LmrepError, match="not a readable .npy array"):
        states.load(tmp_path / "bad.npy")


@pytest.mark.parametrize("shape", [(4,), (1, 2, 3, 4, 5), (0, 4), (2, 0, 4), (1, 2, 0, 4)])
def test_tensors_of_other_shapes_are_refused(tmp_path, shape):
    save_file({"x": torch.zeros(shape)}, str(tmp_path / "s.safetensors"))
    with pytest.raises(LmrepError, match=r"tensor 'x' has shape .*give \(T, D\) or \(N, T, D\)"):
        states.load(tmp_path / "s.safetensors")


def test_missing_empty_and_folder_files(tmp_path):
    with pytest.raises(LmrepError, match="not found"):
        states.load(tmp_path / "none.safetensors")
    with pytest.raises(LmrepError, match="is a folder"):
        states.load(tmp_path)
    save_file({}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(LmrepError, match="holds no tensor"):
        states.load(tmp_path / "empty.safetensors")


@pytest.mark.parametrize("ids", ["[[1, 2]]", "[[1, 2, 3], [4]]", "[[1, 2.5, 3]]", "not json", "[[1, 2, 3], 5]"])
def test_ids_that_do_not_fit_the_tensors_are_refused(tmp_path, ids):
    states.save(tmp_path / "s.safetensors", [torch.zeros(3, 4)], {"ids": ids})
    with pytest.raises(LmrepError, match="token ids do not match its tensors"):
        states.load(tmp_path / "s.safetensors")


def test_states_must_fit_the_model_and_the_layer(tiny_gpt2, tiny_llama, tmp_path):
    O = layer_model(tiny_gpt2, 1)
    ids = [tiny_gpt2.encode("The sky")]
    got = states.load(states.save(tmp_path / "s.safetensors", states.capture(O, ids), states.header(O, torch.float32,
                                                                                                    0.0, ids)))
    states.check_made_by(got, tiny_gpt2, "s")  # the model that made it
    states.check_width(got, 64, O.name, "s")
    with pytest.raises(LmrepError, match="was captured from"):
        states.check_made_by(got, tiny_llama, "s")
    with pytest.raises(LmrepError, match=f"tensor '0' has shape \\(2, 64\\) but {O.name} outputs width 50257"):
        states.check_width(got, 50257, O.name, "s")
    long = states.States(["0"], [torch.zeros(tiny_gpt2.max_positions + 1, 64)])
    with pytest.raises(LmrepError, match=f"has {tiny_gpt2.max_positions + 1} positions"):
        states.check_made_by(long, tiny_gpt2, "s")
    states.check_made_by(states.States(["0"], [torch.zeros(tiny_gpt2.max_positions, 64)]), tiny_gpt2, "s")
    beyond = states.States(["0"], [torch.zeros(2, 64)], ids=[[1, tiny_gpt2.vocab_size]])
    with pytest.raises(LmrepError, match="token ids beyond"):
        states.check_made_by(beyond, tiny_gpt2, "s")
    states.check_made_by(states.States(["0"], [torch.zeros(2, 64)], ids=[[1, tiny_gpt2.vocab_size - 1]]), tiny_gpt2, "s")
