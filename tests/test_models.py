"""Models load by name and by folder; truncation agrees with the full model's hidden states at every depth."""
import pytest
import torch

from lmrep import LmrepError, layer_model, load_model, resolve_layer
from lmrep.models.layers import LayerSpec
from lmrep.models.names import HEADS


def _ids(lm, text="The sky is blue. It was a bright cold day in April."):
    return torch.tensor([lm.encode(text)])


def _check_every_depth(lm, atol=1e-5):
    ids = _ids(lm)
    with torch.no_grad():
        out = lm.model(ids, output_hidden_states=True)
        e = lm.embed(ids)
        for k in range(lm.n_layers):
            assert torch.allclose(layer_model(lm, k)(e), out.hidden_states[k], atol=atol), f"depth {k}"
        # transformers applies the final norm to its last hidden state; lmrep names that ln_final.hook_normalized
        last = lm.n_layers
        assert torch.allclose(layer_model(lm, last, "norm")(e), out.hidden_states[last], atol=atol)
        assert torch.allclose(layer_model(lm, "ln_final.hook_normalized")(e), out.hidden_states[last], atol=atol)
        assert torch.allclose(layer_model(lm, last, "logits")(e), out.logits, atol=atol)
        raw = layer_model(lm, last)(e)
        assert torch.allclose(layer_model(lm, last, "logits_nonorm")(e), lm.lm_head(raw), atol=atol)


@pytest.mark.parametrize("which", ["tiny_gpt2", "tiny_llama"])
def test_truncation_matches_hidden_states_tiny(which, request):
    _check_every_depth(request.getfixturevalue(which))


def test_truncation_matches_hidden_states_default_model(smol):
    _check_every_depth(smol)


def test_float64(tiny_llama_dir):
    lm = load_model(str(tiny_llama_dir), dtype="float64")
    assert lm.dtype == torch.float64
    _check_every_depth(lm, atol=1e-10)


def test_padded_batch_equals_one_at_a_time(tiny_llama):
    from lmrep.objective.batching import pad
    lm = tiny_llama
    a, b = lm.encode("The sky is blue."), lm.encode("A much longer prompt than the first one is.")
    ids, mask = pad([a, b])
    O = layer_model(lm, 2)
    with torch.no_grad():
        both = O(lm.embed(ids), mask)
        assert torch.allclose(both[0, : len(a)], O(lm.embed(torch.tensor([a])))[0], atol=1e-5)
        assert torch.allclose(both[1], O(lm.embed(torch.tensor([b])))[0], atol=1e-5)


def test_layer_names_round_trip():
    n = 12
    for depth in range(n + 1):
        for head in HEADS:
            if depth == 0 and head != "none":
                continue
            spec = LayerSpec(depth, head)
            assert resolve_layer(spec.name(n), n) == spec, spec.name(n)
    assert LayerSpec(3).name(n) == "blocks.2.hook_resid_post"
    assert resolve_layer("blocks.0.hook_resid_pre", n) == LayerSpec(0)


@pytest.mark.parametrize("bad", [-1, 4, "blocks.3.hook_resid_post", "blocks.x", "resid"])
def test_bad_layers(bad, tiny_gpt2):
    with pytest.raises(LmrepError):
        layer_model(tiny_gpt2, bad)


def test_gpt2_tokenizer_is_the_real_one(gpt2_untrained):
    assert gpt2_untrained.encode("The sky is blue.") == [464, 6766, 318, 4171, 13]
    assert gpt2_untrained.n_layers == 12 and gpt2_untrained.d_model == 768


def test_untrained_gpt2_is_seeded(gpt2_untrained):
    again = load_model("gpt2", untrained=True, seed=0)
    other = load_model("gpt2", untrained=True, seed=1)
    w = lambda lm: lm.blocks[0].mlp.c_fc.weight  # noqa: E731
    assert torch.equal(w(gpt2_untrained), w(again)) and not torch.equal(w(gpt2_untrained), w(other))


def test_unknown_and_offline_models_give_clear_errors():
    with pytest.raises(LmrepError, match="unknown model"):
        load_model("not a model!")
    with pytest.raises(LmrepError, match="cannot load model"):
        load_model("someone/model-that-is-not-cached")


def test_empty_and_long_prompts(tiny_gpt2):
    with pytest.raises(LmrepError, match="empty"):
        tiny_gpt2.encode("   ")
    with pytest.raises(LmrepError, match="at most 64"):
        tiny_gpt2.encode("word " * 100)


def test_cuda_absent_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(LmrepError, match="no CUDA"):
        load_model("gpt2", untrained=True, device="cuda")


def test_converted_tokenizer_is_autotokenizers(smol):
    """A converted folder's tokenizer loads from tokenizer.json directly: the same ids and special ids as
    AutoTokenizer, which is slower on a large vocabulary."""
    from transformers import AutoTokenizer
    from lmrep.experiments.config import PROMPTS_FILE
    from lmrep.models.load import cache_dir
    auto = AutoTokenizer.from_pretrained(cache_dir() / "smollm2-135m")
    texts = PROMPTS_FILE.read_text().splitlines() + ["  two spaces, émoji 🤖\tand a tab", "<|im_start|>user"]
    for text in texts:
        assert smol.tokenizer(text)["input_ids"] == auto(text)["input_ids"], text
        assert smol.tokenizer(text, add_special_tokens=False)["input_ids"] == \
            auto(text, add_special_tokens=False)["input_ids"], text
    assert sorted(smol.tokenizer.all_special_ids) == sorted(auto.all_special_ids)
