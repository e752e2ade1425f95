"""Every supported architecture, from a tiny random config saved to a folder and loaded by path (the hub/folder
path, offline): truncation equals transformers' own hidden states at every depth, the decoders map W_E rows back
to their ids with the model's own embedding scale and positions, exact search recovers a prompt at the first, a
middle and the last layer, gradient descent runs, and a padded batch (right and left) equals each prompt alone."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import N, tiny_configs
from lmrep import Decoder, InvertConfig, LmrepError, invert, layer_model
from lmrep.objective.batching import pad
from lmrep.objective.decode import duplicate_rows

SHORT, LONG = "The sky is blue.", "The train to Edinburgh was delayed by snow."
ARCHS = list(tiny_configs())
LEARNED_POSITIONS = {"gpt2", "opt"}  # added to the token embeddings: the decoders subtract them
SCALED = {"gemma3", "gemma2"}  # embeddings scaled by sqrt(d) before block 0


def _ids(lm, text=LONG):
    return torch.tensor([lm.encode(text)])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_truncation_equals_hidden_states_at_every_depth(arch, arch_models):
    lm = arch_models(arch)
    assert lm.n_layers == N and lm.parts.known == (arch != "gemma2")
    ids = _ids(lm)
    with torch.no_grad():
        out = lm.model(ids, output_hidden_states=True)
        e = lm.embed(ids)
        for k in range(N):
            assert torch.allclose(layer_model(lm, k)(e), out.hidden_states[k], atol=1e-5), f"depth {k}"
        # the last hidden state already has the final norm: lmrep's "norm" head at the last depth
        assert torch.allclose(layer_model(lm, N, "norm")(e), out.hidden_states[N], atol=1e-5)
        assert torch.allclose(layer_model(lm, N, "logits")(e), out.logits, atol=1e-5)
        raw = layer_model(lm, N)(e)
        # the final modules do something here (OPT-350m's shape has no final norm, only a projection to 16)
        assert raw.shape != out.hidden_states[N].shape or not torch.allclose(raw, out.hidden_states[N], atol=1e-3)
        if arch == "opt-projected":  # the head takes the projected width: no head without the final modules
            with pytest.raises(LmrepError, match="projection"):
                layer_model(lm, N, "logits_nonorm")
        else:
            assert torch.allclose(layer_model(lm, N, "logits_nonorm")(e), lm.logits(raw), atol=1e-5)
        if arch in SCALED:
            W = lm.model.get_input_embeddings().weight
            assert torch.allclose(lm.embedding_matrix, W * 32 ** 0.5)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoders_map_rows_and_layer_zero_back_to_ids(arch, arch_models):
    lm = arch_models(arch)
    dup = set(duplicate_rows(lm).tolist())
    ids = torch.tensor([i for i in range(lm.vocab_size) if i not in dup])
    e = lm.embedding_matrix[ids][None]  # (1, V', d)
    for kind in ("l2", "cosine"):
        assert torch.equal(Decoder(lm, kind)(e)[0], ids), kind
    # eq. 3's pinv is a whitened inner product, not a nearest neighbour: on a random 384 x 32 W_E most rows win
    assert (Decoder(lm, "pinv")(e)[0] == ids).float().mean() > 0.9
    # the model's own layer-0 output, with its own scale and positions, decodes to the prompt
    prompt = _ids(lm)
    with torch.no_grad():
        h0 = lm.model(prompt, output_hidden_states=True).hidden_states[0]  # (1, T, d)
    pos = lm.position_embedding(prompt.shape[1])
    assert (pos is not None) == (arch in LEARNED_POSITIONS)
    if arch == "opt-projected":  # positions are added after a projection to another width: nothing to subtract
        assert lm.position_module is not None and h0.shape[-1] != lm.d_model
        return
    for kind in ("l2", "cosine"):
        assert torch.equal(Decoder(lm, kind)(h0, subtract_positions=True), prompt), kind
    if pos is not None:  # exactly what the model adds (OPT: the rows after its offset of 2)
        assert torch.allclose(h0 - lm.embed(prompt), pos, atol=1e-6) and pos.abs().max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_exact_inversion_at_first_middle_last_layer(arch, arch_models):
    lm = arch_models(arch)
    for k in (1, N // 2, N):
        (rec,) = invert(layer_model(lm, k), [SHORT], InvertConfig(method="exact"), progress=False)
        assert rec["exact_match"] and rec["verified"] and rec["max_residual"] <= rec["tolerance"], (k, rec)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradient_descent_runs(arch, arch_models):
    lm = arch_models(arch)
    recs = list(invert(layer_model(lm, 2), [SHORT, LONG], InvertConfig(steps=8, batch_size=2), progress=False))
    assert [r["prompt"] for r in recs] == [SHORT, LONG]
    for r in recs:
        assert r["steps"] == 8 and math.isfinite(r["output_distance"])
        assert r["loss_curve"][-1] < r["loss_curve"][0]  # the steps went downhill
        assert len(r["recovered_ids"]) == len(lm.encode(r["prompt"]))


def _left_pad(batch, pad_id=0):
    ids, mask = pad([x[::-1] for x in batch], pad_id)
    return ids.flip(-1), mask.flip(-1)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_equals_each_prompt_alone(arch, side, arch_models):
    lm = arch_models(arch)
    prompts = [lm.encode(t) for t in (SHORT, LONG, "Snow.")]
    ids, mask = pad(prompts) if side == "right" else _left_pad(prompts)
    T = ids.shape[1]
    with torch.no_grad():
        for depth, head in ((2, "none"), (N, "logits")):
            O = layer_model(lm, depth, head)
            both = O(lm.embed(ids), mask)  # (B, T, D)
            for b, x in enumerate(prompts):
                alone = O(lm.embed(torch.tensor([x])))[0]  # (L, D)
                got = both[b, :len(x)] if side == "right" else both[b, T - len(x):]
                assert torch.allclose(got, alone, atol=1e-5), (depth, head, b)
