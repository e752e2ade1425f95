"""Embeddings -> token ids.

Three decoders, each a score per vocabulary entry (higher is better):

    pinv     the page's eq. 3: (e - e_pos) @ pinv(W_E), argmax. A whitened inner product, not a nearest neighbour.
    l2       the L2-nearest row of W_E: -||e - W_v||^2
    cosine   the cosine-nearest row of W_E

An ``allowed`` mask restricts the vocabulary: disallowed tokens score -inf, so they can never win.
"""
from __future__ import annotations

import torch

from ..errors import LmrepError
from ..models.load import LoadedModel
from .names import DECODERS


def check_decoder(name: str) -> str:
    if name not in DECODERS:
        raise LmrepError(f"unknown decoder '{name}': choose one of {', '.join(DECODERS)}")
    return name


class Decoder:
    """Scores embeddings against a model's embedding matrix. Derived matrices are computed once per model."""

    def __init__(self, lm: LoadedModel, name: str = "pinv"):
        self.lm, self.name = lm, check_decoder(name)
        W = lm.embedding_matrix.detach()  # (V, d)
        if name == "pinv":
            # pinv(W) = (W^T W)^+ W^T: only the (d, d) factor is stored; e @ pinv(W) = (e @ A) @ W^T
            self.A = lm.memo("gram_pinv", lambda: gram_pinv(W))  # (d, d) float64
            self.M = W.T  # (d, V)
        elif name == "l2":
            self.M = W.T  # (d, V)
            self.bias = lm.memo("sqnorm", lambda: (W * W).sum(-1))  # (V,)
        else:
            self.M = lm.memo("unit_rows", lambda: torch.nn.functional.normalize(W, dim=-1)).T  # (d, V)

    def scores(self, e: torch.Tensor, subtract_positions: bool = False,
               allowed: torch.Tensor | None = None) -> torch.Tensor:
        """e: (..., T, d) -> scores (..., T, V). ``subtract_positions``: e includes additive position embeddings."""
        e = e.detach().to(self.M.dtype)
        if subtract_positions:
            pos = self.lm.position_embedding(e.shape[-2])
            if pos is not None:
                e = e - pos  # (T, d) broadcast over the batch
        if self.name == "l2":
            s = 2 * (e @ self.M) - self.bias  # -||e - W_v||^2 up to the constant ||e||^2
        elif self.name == "cosine":
            s = torch.nn.functional.normalize(e, dim=-1) @ self.M
        else:
            s = (e.double() @ self.A).to(self.M.dtype) @ self.M
        if allowed is not None:
            s = s.masked_fill(~allowed.to(s.device), float("-inf"))
        return s

    def topk(self, e: torch.Tensor, k: int = 1, **kw) -> torch.Tensor:
        """(..., T, d) -> ids (..., T, k), best first."""
        if not 1 <= k <= self.lm.vocab_size:
            raise LmrepError(f"topk must be between 1 and the vocabulary size {self.lm.vocab_size}, got {k}")
        return self.scores(e, **kw).topk(k, dim=-1).indices

    def __call__(self, e: torch.Tensor, **kw) -> torch.Tensor:
        """(..., T, d) -> top-1 ids (..., T)."""
        return self.scores(e, **kw).argmax(-1)


def gram_pinv(W: torch.Tensor) -> torch.Tensor:
    """(V, d) -> the (d, d) float64 factor A = (W^T W)^+ with pinv(W) = A @ W^T: a d x d eigendecomposition in
    float64 instead of an SVD of the whole V x d matrix (seconds, not half a minute, for a 50k vocabulary).
    Directions whose squared singular value is below what float64 resolves in W^T W count as the null space."""
    Wd = W.detach().double()
    evals, vecs = torch.linalg.eigh(Wd.T @ Wd)
    cut = evals.max().clamp_min(0) * max(W.shape) * torch.finfo(torch.float64).eps
    inv = torch.where(evals > cut, 1 / evals, torch.zeros_like(evals))
    return (vecs * inv) @ vecs.T


def allowed_mask(lm: LoadedModel, ids) -> torch.Tensor:
    """A (V,) boolean mask that allows only the given token ids."""
    mask = torch.zeros(lm.vocab_size, dtype=torch.bool, device=lm.device)
    mask[torch.as_tensor(list(ids), dtype=torch.long, device=lm.device)] = True
    return mask


def duplicate_groups(lm: LoadedModel) -> torch.Tensor:
    """(V,) group id per token: tokens with identical embedding rows share one (no decoder and no layer can tell
    them apart). Computed once per model."""
    return lm.memo("row_groups", lambda: torch.unique(lm.embedding_matrix.detach(), dim=0, return_inverse=True)[1])


def duplicate_rows(lm: LoadedModel) -> torch.Tensor:
    """Ids whose embedding row equals another row's."""
    groups = duplicate_groups(lm)
    return torch.nonzero(torch.bincount(groups)[groups] > 1).flatten()
