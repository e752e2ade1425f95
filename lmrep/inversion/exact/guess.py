"""A continuous guess of one position's input embedding, and the tokens nearest it.

The guess starts from a linear inverse of the layer (calibration.py) and moves in one of two ways.
``Guess``: by multi-secant steps that use the outputs of the candidates already verified (free: they were run
anyway) and of the guess itself (its probe): every batch adds pairs (embedding, output) from this very prefix, and
the guess becomes the best point's embedding plus the secant map applied to its output's miss, with the map
corrected to agree with all the pairs seen (a multi-secant quasi-Newton step). ``Descent``: by Adam steps on
``||O(x) - h||^2 / ||h||^2`` through the prefix's cache (a backward pass each, but they reach deep layers, where
secant steps stray). Either way the tokens to verify next are the untried ones nearest the guess.

``Predicted`` orders tokens by their outputs instead: each token's output is predicted from the evaluated point
whose output came nearest the target, plus the layer's mean slope between tokens under one prefix (the
calibration's ``forward`` map) times the embedding difference, and the tokens whose predicted outputs lie nearest
the target come first. Distance in output space weighs each direction of the embedding by how much the layer
responds to it, which distance to a guessed embedding cannot: at depth, on random ids, it ranks the true token
first several times as often (docs/exact.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...models.layers import LayerModel
from ...objective.decode import gram_pinv

RIDGE = 1e-3  # ridge penalty per sample, on standardised features
SECANT_DAMPING = 0.1  # multi-secant correction: penalty relative to the mean squared output difference
SECANT_PAIRS = 64  # evaluated points kept for the correction: those whose outputs came nearest the target
DESCENT_STEPS = 10  # gradient steps on the continuous guess after each batch that missed
DESCENT_MAX_STEPS = 100  # per position: past this the guess stays put (bounds the time a hopeless position costs)
DESCENT_LR = 0.1  # Adam's step, relative to the mean size of one coordinate of an embedding row


def output_features(target: LayerModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """Layer outputs (..., D) -> features (..., d) that a linear map can invert: the outputs themselves, or for
    the logits heads their least-squares preimage through the LM head (the normed or raw residual stream)."""
    if not target.spec.has_lm_head:
        return lambda h: h
    lm = target.lm
    head = lm.lm_head
    W_U = head.weight.detach()  # (V, d)
    A = lm.memo("lm_head_gram_pinv", lambda: gram_pinv(W_U))  # (d, d): pinv(W_U) = A @ W_U^T
    bias = head.bias.detach() if getattr(head, "bias", None) is not None else None
    return lambda h: (((h if bias is None else h - bias) @ W_U).double() @ A).to(W_U.dtype)


@dataclass
class LinearMap:
    """x = (f - mu) @ A + x_mu: output features (..., F) -> embeddings (..., d)."""
    A: torch.Tensor  # (F, d)
    mu: torch.Tensor  # (F,)
    x_mu: torch.Tensor  # (d,)

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        return (f - self.mu) @ self.A + self.x_mu


def ridge(F: torch.Tensor, X: torch.Tensor) -> LinearMap:
    """Least squares X ~ F with a small ridge penalty on standardised features; solved in float64."""
    Fd, Xd = F.double(), X.double()
    mu, x_mu = Fd.mean(0), Xd.mean(0)
    sd = Fd.std(0) + 1e-12
    Z = (Fd - mu) / sd  # (n, F)
    gram = Z.T @ Z + RIDGE * len(Z) * torch.eye(Z.shape[1], dtype=Z.dtype, device=Z.device)
    A = torch.linalg.solve(gram, Z.T @ (Xd - x_mu)) / sd[:, None]  # (F, d)
    return LinearMap(A.to(F.dtype), mu.to(F.dtype), x_mu.to(F.dtype))


class Guess:
    """The running estimate of one position's input embedding, and the order in which to verify tokens."""

    def __init__(self, W: torch.Tensor, sqnorm: torch.Tensor, target_feat: torch.Tensor, start: torch.Tensor,
                 secant: torch.Tensor):
        self.W, self.sqnorm = W, sqnorm  # (V, d), (V,): the rows and their squared norms
        self.f, self.x, self.secant = target_feat, start, secant  # (F,), (d,), (F, d)
        self.X: list[torch.Tensor] = []
        self.F: list[torch.Tensor] = []
        self.dist: torch.Tensor | None = None  # (V,): ||W_v - x||^2 - ||x||^2, until the guess moves

    def score(self) -> torch.Tensor:
        """(V,): higher for rows nearer the guess (``-||W_v - x||^2`` less a constant)."""
        if self.dist is None:
            self.dist = self.sqnorm - 2 * (self.W @ self.x)
        return -self.dist

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        """The n untried token ids nearest the guess, nearest first."""
        return self.score().masked_fill(tried, float("-inf")).topk(n).indices

    def probes(self) -> torch.Tensor | None:
        """Points worth evaluating besides candidates, (p, d): the guess itself, so the guess can converge
        between tokens instead of hopping from token to token."""
        return self.x[None]

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        """Evaluated points: embeddings (k, d) and their output features (k, F), the first len(ids) of them
        candidate tokens; moves the guess."""
        self.X.append(x)
        self.F.append(f)
        X, F = torch.cat(self.X), torch.cat(self.F)
        miss = ((F - self.f) ** 2).sum(-1)  # (k,)
        if len(miss) > SECANT_PAIRS:  # the nearest pairs describe the map where the answer is
            keep = miss.topk(SECANT_PAIRS, largest=False).indices
            X, F, miss = X[keep], F[keep], miss[keep]
            self.X, self.F = [X], [F]
        best = int(miss.argmin())
        dX, dF = X - X[best], F - F[best]  # (k, d), (k, F)
        keep = dF.abs().amax(-1) > 0  # the best itself, and duplicates of it, say nothing about the slope
        A = self.secant
        if keep.any():
            dX, dF = dX[keep].double(), dF[keep].double()
            gram = dF @ dF.T  # (k, k)
            damp = SECANT_DAMPING * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            A = A + (dF.T @ torch.linalg.solve(gram + damp, dX - dF @ A.double())).to(A.dtype)  # agrees with pairs
        self.x, self.dist = X[best] + (self.f - F[best]) @ A, None


class Descent:
    """The guess of one position's embedding, moved by Adam steps on ``||O(x) - h||^2 / ||h||^2`` through the
    prefix's cache after each batch that missed; tokens are verified in order of distance to it."""

    def __init__(self, prefix, W: torch.Tensor, sqnorm: torch.Tensor, h: torch.Tensor, start: torch.Tensor,
                 steps: int = DESCENT_STEPS, lr: float = DESCENT_LR):
        self.prefix, self.W, self.sqnorm, self.h, self.steps = prefix, W, sqnorm, h, steps
        self.x = start.detach().clone().requires_grad_(True)  # (d,)
        self.opt = torch.optim.Adam([self.x], lr=lr * float(W.norm(dim=-1).mean()) / W.shape[1] ** 0.5)
        self.gradient_steps = 0

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        dist = (self.sqnorm - 2 * (self.W @ self.x.detach())).masked_fill(tried, float("inf"))  # (V,)
        return dist.topk(n, largest=False).indices

    def probes(self) -> torch.Tensor | None:
        return None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        scale = (self.h * self.h).sum()
        steps = min(self.steps, DESCENT_MAX_STEPS - self.gradient_steps)
        if steps <= 0:
            return
        with torch.enable_grad():
            for _ in range(steps):
                out, _ = self.prefix.step(self.x[None].to(self.W.dtype))
                loss = ((out[0] - self.h) ** 2).sum() / scale
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        self.gradient_steps += steps


class Predicted:
    """Tokens in order of ``||f_ref + (W_v - x_ref) @ forward - f||``: each token's output predicted from the
    reference point (the evaluated point whose output came nearest the target ``f``) by the layer's mean slope.
    Until a point has been evaluated, the tokens whose predicted outputs lie nearest ``start``'s (which the first
    batch evaluates as a probe)."""

    def __init__(self, W: torch.Tensor, target_feat: torch.Tensor, start: torch.Tensor, forward: torch.Tensor,
                 pred_sqnorm: torch.Tensor):
        self.W, self.f, self.start, self.forward = W, target_feat, start, forward
        self.pred_sqnorm = pred_sqnorm  # (V,): ||W_v @ forward||^2
        self.ref: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (miss, x, f) of the best point
        self.dist: torch.Tensor | None = None

    def score(self) -> torch.Tensor:
        """(V,): higher for tokens whose predicted output lies nearer the target."""
        if self.dist is None:
            if self.ref is None:  # nothing evaluated yet: as if the start's output were the target
                c = self.start @ self.forward
            else:
                _, x, f = self.ref
                c = self.f - f + x @ self.forward  # (F,): the target less the reference's offset
            self.dist = self.pred_sqnorm - 2 * (self.W @ (self.forward @ c))
        return -self.dist

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        return self.score().masked_fill(tried, float("-inf")).topk(n).indices

    def probes(self) -> torch.Tensor | None:
        return self.start[None] if self.ref is None else None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        miss = ((f - self.f) ** 2).sum(-1)  # (k,)
        best = int(miss.argmin())
        if self.ref is None or miss[best] < self.ref[0]:
            self.ref, self.dist = (miss[best], x[best], f[best]), None


def predicted_sqnorm(W: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """(V,): ``||W_v @ forward||^2`` for every row, through the (d, d) Gram matrix (no (V, F) product kept)."""
    G = (forward.double() @ forward.double().T).to(W.dtype)  # (d, d)
    return ((W @ G) * W).sum(-1)
