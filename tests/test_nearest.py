"""The nearest-token baseline (PEZ): the model runs on projected tokens, the gradient lands on the continuous
embeddings, the loss goes down, and the records match gradient descent's fields."""
import torch

from lmrep import Decoder, InvertConfig, invert, layer_model
from lmrep.inversion.pez import projector


def test_projection_is_tokens_forward_and_identity_backward(tiny_gpt2):
    dec = Decoder(tiny_gpt2, "cosine")
    e = torch.randn(2, 5, tiny_gpt2.d_model, requires_grad=True)
    p = projector(dec)(e)
    assert torch.equal(p.detach(), tiny_gpt2.embed(dec(e.detach())))  # forward: real token embeddings
    w = torch.randn_like(p)
    (p * w).sum().backward()
    assert torch.equal(e.grad, w)  # backward: straight through to the continuous embeddings


def test_nearest_loss_goes_down(tiny_llama):
    O = layer_model(tiny_llama, 2)
    (rec,) = list(invert(O, ["The sky is blue today."], InvertConfig(method="nearest", steps=40, lr=0.1,
                                                                      decoder="cosine"), progress=False))
    curve = rec["loss_curve"]
    assert len(curve) == 41 and min(curve[1:]) < curve[0]
    assert rec["final_loss"] == min(curve)


def test_nearest_reports_what_gd_reports_and_its_tokens_are_what_it_ran(tiny_gpt2):
    O = layer_model(tiny_gpt2, 1)
    prompts = ["The sky is blue.", "Paris is the capital of France."]
    near = list(invert(O, prompts, InvertConfig(method="nearest", steps=15, lr=0.1, decoder="cosine"),
                       progress=False))
    gd = list(invert(O, prompts, InvertConfig(method="gd", steps=15), progress=False))
    for a, b in zip(near, gd):
        assert set(a) == set(b) and a["method"] == "nearest" and b["method"] == "gd"
        # the best loss was measured on real tokens, so decoding gives tokens whose output has that distance
        assert abs(a["token_output_distance"] - a["output_distance"]) <= 1e-3 * max(1.0, a["output_distance"])
