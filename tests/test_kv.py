"""Layers that read the key/value cache (``blocks.{i}.attn.hook_k / hook_v / hook_kv``): what they return is what
transformers' own cache holds after ``use_cache=True`` (fused qkv, rotary keys, grouped-query heads, sliding
windows), and every method inverts them like any layer: the exact search recovers the prompt from keys alone."""
from __future__ import annotations

import pytest
import torch

from conftest import N, tiny_configs
from lmrep import InvertConfig, LmrepError, invert, layer_model
from lmrep.inversion.base import output_width
from lmrep.models.layers import cache_shape

ARCHS = list(tiny_configs())
PROMPT = "The train to Edinburgh was delayed by snow."


def _own_cache(lm, ids, block, what):
    with torch.no_grad():
        cache = lm.model(torch.tensor([ids]), use_cache=True).past_key_values
    layer = cache.layers[block]
    parts = {"k": [layer.keys], "v": [layer.values], "kv": [layer.keys, layer.values]}[what]
    return torch.cat([x.transpose(1, 2).flatten(2) for x in parts], -1)  # (1, T, H * hd)


@pytest.mark.parametrize("arch", ARCHS)
def test_cache_layers_equal_the_models_own_cache(arch, arch_models):
    lm = arch_models(arch)
    ids = lm.encode(PROMPT)
    e = lm.embed(torch.tensor([ids]))
    for block in (0, N - 1):
        for what in ("k", "v", "kv"):
            target = layer_model(lm, f"blocks.{block}.attn.hook_{what}")
            with torch.no_grad():
                out = target(e)
            ref = _own_cache(lm, ids, block, what)
            kept = ref.shape[1]  # a sliding-window layer's own cache keeps only the window's last positions
            assert kept == len(ids) or kept < (getattr(lm.config, "sliding_window", None) or 0), (block, what, kept)
            assert out.shape[1] == len(ids) and out.shape[-1] == ref.shape[-1] == output_width(target)
            assert torch.allclose(out[:, -kept:], ref, atol=1e-5), (block, what, float((out[:, -kept:] - ref).abs().max()))
    # a head subset is those heads' columns
    H = cache_shape(lm, N - 1)[0]
    full = layer_model(lm, f"blocks.{N - 1}.attn.hook_k")(e)[0]  # (T, H * hd)
    one = layer_model(lm, f"blocks.{N - 1}.attn.hook_k[{H - 1}]")(e)[0]
    assert torch.equal(one, full[:, -one.shape[1]:]) and one.shape[1] * H == full.shape[1]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_exact_search_recovers_the_prompt_from_keys_alone(arch, arch_models):
    lm = arch_models(arch)
    for name in ("blocks.0.attn.hook_k", f"blocks.{N - 1}.attn.hook_v"):
        rec = next(invert(layer_model(lm, name), [PROMPT], InvertConfig(method="exact")))
        assert rec["recovered_ids"] == lm.encode(PROMPT) and rec["verified"], name
        assert rec["layer_name"] == name


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_cache_saved_as_transformers_keeps_it_inverts_from_the_file(arch, arch_models, tmp_path):
    from safetensors.torch import save_file
    from lmrep import invert_outputs
    from lmrep.inversion import states
    lm = arch_models(arch)
    ids, other = lm.encode(PROMPT), lm.encode("Snow fell on the line.")
    with torch.no_grad():
        caches = [lm.model(torch.tensor([x]), use_cache=True).past_key_values.layers[1] for x in (ids, other)]
    save_file({"k": caches[0].keys.contiguous(), "v": caches[1].values.contiguous()}, str(tmp_path / "c.safetensors"))
    held = states.load(tmp_path / "c.safetensors")  # (1, heads, T, head_dim) each, as the cache keeps them
    assert held.keys == ["k.0", "v.0"] and [t.shape[0] for t in held.tensors] == [len(ids), len(other)]
    for name, t, want in zip(("hook_k", "hook_v"), held.tensors, (ids, other)):
        target = layer_model(lm, f"blocks.1.attn.{name}")
        assert t.shape[1] == output_width(target)
        (rec,) = invert_outputs(target, [t], InvertConfig(method="exact"))
        assert rec["recovered_ids"] == want and rec["verified"], name


def test_cache_layer_names_resolve_and_refuse(arch_models):
    lm = arch_models("llama")
    t = layer_model(lm, "blocks.1.attn.hook_kv[1,0]")
    assert t.name == "blocks.1.attn.hook_kv[0,1]" and t.spec.depth == 2 and t.spec.heads == (0, 1)
    with pytest.raises(LmrepError, match="heads 0.."):
        layer_model(lm, f"blocks.1.attn.hook_k[{cache_shape(lm, 1)[0]}]")
    with pytest.raises(LmrepError, match="out of range"):
        layer_model(lm, f"blocks.{N}.attn.hook_v")
    with pytest.raises(LmrepError, match="unknown layer name"):
        layer_model(lm, "blocks.1.attn.hook_q")
