"""A discrete search for inputs with a given next token: single-token swaps scored exactly (GCG-style).

Each iteration takes the gradient of the loss with respect to the one-hot tokens, keeps the ``candidates``
best-looking tokens per position, draws ``batch`` single-token swaps among them and scores every swap with an exact
forward pass; the best swap is kept when it lowers the loss. The search stops as soon as the goal token is the
model's top prediction. Unlike gradient descent on embeddings, every point it visits is a real token sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import LmrepError
from ..models.layers import LayerModel


@dataclass
class SwapSearchConfig:
    """The budget and randomness of one swap search."""

    iterations: int = 100  # swap rounds at most
    candidates: int = 64  # tokens per position kept from the one-hot gradient (GCG's top-k)
    batch: int = 32  # single-token swaps scored exactly per round
    seed: int = 0  # the random start and the random swaps


def next_logits(target: LayerModel, embeds: torch.Tensor) -> torch.Tensor:
    """The target's prediction at the last position: (B, T, d) -> (B, V). Needs a target with an LM head."""
    return target.head(target.residual(embeds)[:, -1])  # (B, V): only the last position goes through the head


def allowed_tokens(target: LayerModel) -> torch.Tensor:
    """(V,) mask of tokens the search may use: every id but the tokenizer's special ones."""
    lm = target.lm
    mask = torch.ones(lm.vocab_size, dtype=torch.bool, device=lm.device)
    special = [i for i in lm.tokenizer.all_special_ids if i < lm.vocab_size]
    mask[special] = False
    return mask


def search(target: LayerModel, length: int, goal: int, cfg: SwapSearchConfig) -> dict:
    """Find ``length`` tokens whose predicted next token is ``goal``; returns ids, success and its cost."""
    if not target.spec.has_lm_head:
        raise LmrepError("the swap search needs a target that ends in the LM head: use a logits head")
    lm = target.lm
    W = lm.embedding_matrix.detach()  # (V, d)
    allowed = allowed_tokens(target)
    pool = torch.nonzero(allowed).flatten()
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    ids = pool[torch.randint(len(pool), (length,), generator=g).to(pool.device)]  # (T,)
    goal_t = torch.tensor([goal], device=lm.device)

    def losses(batch_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B,)
        with torch.no_grad():
            logits = next_logits(target, lm.embed(batch_ids))
        return F.cross_entropy(logits, goal_t.expand(len(batch_ids)), reduction="none")

    best, passes, rounds = losses(ids[None])[0], 1, 0
    while True:
        onehot = F.one_hot(ids, lm.vocab_size).to(W.dtype).requires_grad_(True)  # (T, V)
        logits = next_logits(target, (onehot @ W)[None])  # (1, V)
        if logits.argmax(-1).item() == goal or rounds == cfg.iterations:
            break
        grad, = torch.autograd.grad(F.cross_entropy(logits, goal_t), onehot)  # (T, V)
        top = (-grad).masked_fill(~allowed, float("-inf")).topk(cfg.candidates, dim=-1).indices  # (T, k)
        pos = torch.randint(length, (cfg.batch,), generator=g).to(lm.device)  # (B,)
        pick = torch.randint(cfg.candidates, (cfg.batch,), generator=g).to(lm.device)
        cand = ids.repeat(cfg.batch, 1)  # (B, T)
        cand[torch.arange(cfg.batch, device=lm.device), pos] = top[pos, pick]
        scores = losses(cand)
        passes += 2 + cfg.batch  # forward + backward for the gradient, then the batch
        rounds += 1
        j = int(scores.argmin())
        if scores[j] < best:
            ids, best = cand[j], scores[j]
    final = logits[0].detach()  # (V,): the prediction for the ids the search ends with
    return dict(ids=ids.tolist(), success=int(final.argmax()) == goal, rounds=rounds, forward_passes=passes,
                goal_logprob=float(torch.log_softmax(final.double(), -1)[goal]))
