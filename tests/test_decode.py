"""Every decoder maps W_E rows (plus positions, where the model adds them) back to their ids."""
import pytest
import torch

from lmrep import Decoder, LmrepError
from lmrep.objective.decode import allowed_mask, duplicate_rows


def _sample(lm, n=1000):
    g = torch.Generator().manual_seed(0)
    dup = set(duplicate_rows(lm).tolist())
    ids = [i for i in torch.randperm(lm.vocab_size, generator=g)[:n].tolist() if i not in dup]
    return torch.tensor(ids + [i for i in lm.encode("The sky is blue. It is a prompt sentence.") if i not in dup])


@pytest.mark.parametrize("kind", ["pinv", "l2", "cosine"])
def test_gpt2_rows_decode_to_their_ids_with_and_without_positions(kind, gpt2_untrained):
    lm = gpt2_untrained
    ids = _sample(lm)
    e = lm.embed(ids)[None]  # (1, T, d)
    assert torch.equal(Decoder(lm, kind)(e)[0], ids)
    with_pos = e + lm.position_embedding(len(ids))
    assert torch.equal(Decoder(lm, kind)(with_pos, subtract_positions=True)[0], ids)


@pytest.mark.parametrize("kind", ["l2", "cosine"])
def test_smollm2_rows_decode_to_their_ids(kind, smol):
    ids = _sample(smol)
    assert smol.position_embedding(4) is None  # rotary: nothing to subtract
    assert torch.equal(Decoder(smol, kind)(smol.embed(ids)[None])[0], ids)


def test_smollm2_pinv_is_not_a_nearest_neighbour(smol):
    """eq. 3 is a whitened inner product: on SmolLM2 a few rows decode to another token (measured, not assumed)."""
    ids = _sample(smol)
    got = Decoder(smol, "pinv")(smol.embed(ids)[None])[0]
    rate = (got == ids).float().mean().item()
    assert 0.99 < rate <= 1.0
    # a concrete miss: the row of " This" scores higher on " this" under W_E's pseudo-inverse
    this, lower = smol.encode(" This"), smol.encode(" this")
    assert Decoder(smol, "pinv")(smol.embed(torch.tensor([this])))[0].tolist() == lower
    assert Decoder(smol, "l2")(smol.embed(torch.tensor([this])))[0].tolist() == this


def test_duplicate_rows_of_smollm2(smol):
    dup = duplicate_rows(smol)
    W = smol.embedding_matrix
    assert len(dup) >= 2
    assert any(torch.equal(W[dup[0]], W[j]) for j in dup[1:])


@pytest.mark.parametrize("kind", ["pinv", "l2", "cosine"])
def test_disallowed_tokens_never_win(kind, tiny_gpt2):
    lm = tiny_gpt2
    dec = Decoder(lm, kind)
    e = lm.embed(torch.tensor([[11, 12, 13]]))
    scores = dec.scores(e)
    # allow only the 5 worst-scoring tokens at position 0: their scores are negative for every decoder here
    allowed_ids = scores[0, 0].topk(5, largest=False).indices.tolist()
    got = dec(e, allowed=allowed_mask(lm, allowed_ids))
    assert set(got.flatten().tolist()) <= set(allowed_ids)


def test_topk_bounds(tiny_gpt2):
    dec = Decoder(tiny_gpt2, "l2")
    e = tiny_gpt2.embed(torch.tensor([[1, 2]]))
    assert dec.topk(e, 3).shape == (1, 2, 3)
    for k in (0, tiny_gpt2.vocab_size + 1):
        with pytest.raises(LmrepError):
            dec.topk(e, k)
    with pytest.raises(LmrepError):
        Decoder(tiny_gpt2, "nearest-ish")
