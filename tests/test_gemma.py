"""The second trained model offline: Gemma-3-270M, converted once from the GGUF chunks on PyPI (the first run of the
suite converts it, about a minute), with a 262,144-token vocabulary, embeddings scaled by sqrt(640), sandwich norms
and five sliding-window layers to each global one."""
from __future__ import annotations

import pytest
import torch

from lmrep import Decoder, InvertConfig, invert, layer_model, load_model
from lmrep.models.load import model_status

PROMPT = "Paris is the capital"


@pytest.fixture(scope="session")
def gemma():
    return load_model("gemma3-270m")


def test_gemma_is_what_it_says(gemma):
    c = gemma.config
    assert (gemma.n_layers, gemma.d_model, gemma.vocab_size) == (18, 640, 262144)
    assert c.model_type == "gemma3_text" and c.sliding_window == 512
    assert c.layer_types.count("full_attention") == 3 and c.layer_types[5] == "full_attention"
    W = gemma.model.get_input_embeddings().weight
    assert gemma.embedding_matrix[:5].allclose(W[:5] * 640 ** 0.5)
    assert gemma.encode(PROMPT) == [50429, 563, 506, 5279]
    row = next(r for r in model_status() if r["name"] == "gemma3-270m")
    assert row["offline"] and row["trained"]


def test_gemma_truncation_equals_hidden_states_and_predicts(gemma):
    ids = torch.tensor([gemma.encode(PROMPT + " of France is")])
    with torch.no_grad():
        out = gemma.model(ids, output_hidden_states=True)
        e = gemma.embed(ids)
        for k in (0, 1, 5, 6, 9, 17):  # around the first global layer (5) and the last block
            assert torch.allclose(layer_model(gemma, k)(e), out.hidden_states[k], atol=1e-4, rtol=1e-5), k
        assert torch.allclose(layer_model(gemma, 18, "norm")(e), out.hidden_states[18], atol=1e-5)
        logits = layer_model(gemma, 18, "logits")(e)
    assert torch.allclose(logits, out.logits, atol=1e-4)
    assert gemma.decode(logits[0, -1].topk(5).indices).count("Paris") == 1  # a trained model


def test_gemma_rows_decode_to_their_ids(gemma):
    ids = torch.randint(0, gemma.vocab_size, (256,), generator=torch.Generator().manual_seed(0))
    got = Decoder(gemma, "l2")(gemma.embed(ids)[None])[0]
    same = gemma.embedding_matrix[got] == gemma.embedding_matrix[ids]  # a duplicated row may win for its twin
    assert same.all()


@pytest.mark.parametrize("layer", [1, 9])  # the last layer: tiny Gemma 3 in test_architectures (here, many minutes)
def test_gemma_exact_at_first_and_middle_layer(gemma, layer):
    (rec,) = invert(layer_model(gemma, layer), [PROMPT], InvertConfig(method="exact"), progress=False)
    assert rec["exact_match"] and rec["verified"] and rec["max_residual"] <= rec["tolerance"]
