"""Every decoder maps W_E rows (plus positions, where the model adds them) back to their ids."""
import pytest
import torch

from lmrep import Decoder, LmrepError
from lmrep.objective.decode import allowed_mask, duplicate_rows, gram_pinv


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
    assert torch.equal(dec.topk(e), dec(e)[..., None]) and torch.equal(dec.topk(e, 1), dec.topk(e))  # k = 1: argmax
    for k in (0, tiny_gpt2.vocab_size + 1):
        with pytest.raises(LmrepError):
            dec.topk(e, k)
    with pytest.raises(LmrepError):
        Decoder(tiny_gpt2, "nearest-ish")


# ---- each decoder's score, against its definition (tiny GPT-2: learned positions, 50,257 rows of width 64) ----------

def _probe(lm, n=6, seed=0):
    """(1, n, d) embeddings off every row: random points at the rows' scale."""
    g = torch.Generator().manual_seed(seed)
    return lm.embedding_matrix.detach().std() * torch.randn(1, n, lm.d_model, generator=g)


def test_each_score_is_its_formula(tiny_gpt2):
    W, e = tiny_gpt2.embedding_matrix.detach(), _probe(tiny_gpt2)
    unit = torch.nn.functional.normalize
    expected = {"pinv": e @ torch.linalg.pinv(W.double()).float(),  # eq. 3: (e - e_pos) pinv(W_E)
                "l2": -((e[..., None, :] - W) ** 2).sum(-1) + (e ** 2).sum(-1, keepdim=True),  # -||e - W_v||^2 + c
                "cosine": unit(e, dim=-1) @ unit(W, dim=-1).T}
    for kind, want in expected.items():
        got = Decoder(tiny_gpt2, kind).scores(e)
        assert got.shape == (1, 6, tiny_gpt2.vocab_size)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), kind
        assert torch.equal(Decoder(tiny_gpt2, kind)(e), got.argmax(-1)), kind


def test_l2_is_the_nearest_row_and_cosine_ignores_length(tiny_gpt2):
    W, e = tiny_gpt2.embedding_matrix.detach(), _probe(tiny_gpt2, seed=1)
    nearest = torch.cdist(e[0], W).argmin(-1)  # (n,)
    assert torch.equal(Decoder(tiny_gpt2, "l2")(e)[0], nearest)
    cos = Decoder(tiny_gpt2, "cosine")
    assert torch.equal(cos(3.0 * e), cos(e)) and not torch.equal(Decoder(tiny_gpt2, "l2")(3.0 * e), nearest)


def test_positions_are_subtracted_only_when_asked(tiny_gpt2):
    ids = torch.tensor([[464, 6766, 318, 4171]])
    e = tiny_gpt2.embed(ids)  # (1, 4, d)
    pos = tiny_gpt2.position_embedding(4)  # (4, d), learned
    for kind in ("pinv", "l2", "cosine"):
        dec = Decoder(tiny_gpt2, kind)
        assert torch.allclose(dec.scores(e + pos, subtract_positions=True), dec.scores(e), atol=1e-4), kind
        assert not torch.allclose(dec.scores(e + pos), dec.scores(e), atol=1e-4), kind
    assert torch.equal(Decoder(tiny_gpt2, "l2")(e + pos, subtract_positions=True), ids)


def test_the_allowed_mask_and_topk_order(tiny_gpt2):
    mask = allowed_mask(tiny_gpt2, [3, 7, 7, 50256])
    assert mask.shape == (tiny_gpt2.vocab_size,) and mask.dtype == torch.bool
    assert torch.nonzero(mask).flatten().tolist() == [3, 7, 50256]
    assert not allowed_mask(tiny_gpt2, []).any()  # an empty set allows nothing
    dec, e = Decoder(tiny_gpt2, "l2"), _probe(tiny_gpt2, n=2)
    s = dec.scores(e, allowed=mask)
    assert torch.isinf(s[..., ~mask]).all() and (s[..., ~mask] < 0).all() and torch.isfinite(s[..., mask]).all()
    top = dec.topk(e, 3, allowed=mask)  # (1, 2, 3): the three allowed ids, best first
    assert sorted(top[0, 0].tolist()) == [3, 7, 50256]
    full = dec.scores(e)
    assert (full.gather(-1, top) == s.gather(-1, top)).all()
    ranked = dec.topk(e, 5)
    picked = full.gather(-1, ranked)  # (1, 2, 5)
    assert (picked[..., :-1] >= picked[..., 1:]).all() and torch.equal(ranked[..., 0], dec(e))
    assert dec.topk(e, tiny_gpt2.vocab_size).shape[-1] == tiny_gpt2.vocab_size  # the whole vocabulary is allowed


def test_unknown_decoder_names_the_choices():
    from lmrep.objective.decode import check_decoder
    assert check_decoder("cosine") == "cosine"
    with pytest.raises(LmrepError, match="unknown decoder 'nearest': choose one of pinv, l2, cosine"):
        check_decoder("nearest")


def test_the_default_decoder_is_the_pages_pinv(tiny_gpt2):
    d = Decoder(tiny_gpt2)
    assert d.name == "pinv" and d.A.shape == (64, 64) and d.A.dtype == torch.float64
    with pytest.raises(LmrepError, match=r"topk must be between 1 and the vocabulary size \d+, got 0"):
        d.topk(torch.zeros(1, 64), k=0)


def test_duplicate_rows_are_found_and_grouped(arch_dirs):
    from lmrep import load_model
    from lmrep.objective.decode import duplicate_groups
    lm = load_model(str(arch_dirs("gpt2")))  # its own copy: the rows are changed below
    assert duplicate_rows(lm).tolist() == []
    with torch.no_grad():
        W = lm.model.get_input_embeddings().weight
        W[9] = W[4]
    lm._memo.clear()
    assert duplicate_rows(lm).tolist() == [4, 9]  # a pair: both of its tokens
    with torch.no_grad():
        W[300] = W[4]
    lm._memo.clear()
    groups = duplicate_groups(lm)
    assert duplicate_rows(lm).tolist() == [4, 9, 300]
    assert groups[4] == groups[9] == groups[300] and len(set(groups.tolist())) == lm.vocab_size - 2


@pytest.mark.parametrize("shape, rank", [((300, 16), 16), ((300, 16), 9), ((12, 16), 12)])
def test_gram_pinv_is_the_pseudo_inverse(shape, rank):
    """A @ W^T equals the SVD pseudo-inverse, for full column rank, duplicate rows, a rank-deficient W and
    fewer rows than columns (the null space stays null rather than blowing up)."""
    g = torch.Generator().manual_seed(rank)
    W = torch.randn(shape[0], rank, generator=g, dtype=torch.float64) @ torch.randn(rank, shape[1], generator=g,
                                                                                      dtype=torch.float64)
    W[3] = W[5]  # identical rows, as trained embedding matrices have
    got = gram_pinv(W) @ W.T
    want = torch.linalg.pinv(W)
    assert torch.allclose(got, want, atol=1e-8 * want.abs().max())
    assert torch.allclose(W @ got @ W, W, atol=1e-8 * W.abs().max())  # a generalised inverse
