"""Which tokens to verify first at one position of the exact search.

``guided`` (the default) merges two proposals. The model's own next-token distribution given the recovered prefix
(one full-depth position per token, computed only when the first guess misses): in trained models the frequent
words that a layer's geometry hides best are the ones the model expects. And a continuous guess of the
embedding, from the calibrated inverse below and then refined by gradient steps on the residual at this position
through the prefix's cache: the content words and random ids that the model does not expect lie nearest it.

``secant`` refines the calibrated guess instead by what the verified candidates showed (below).

Calibration (once per model and layer, memoised): run the layer on random token ids and fit, by ridge regression,
    first:  output at position 0 -> the token's embedding            (position 0 sees nothing but its token)
    later:  output at a position > 0 -> the token's embedding         (averaged over random prefixes)
    secant: output difference -> embedding difference, same prefix   (the prefix's share cancels)
Search at one position: the first guess of the embedding is ``first`` or ``later`` of the target; every verified
batch adds pairs (embedding, output) from this very prefix, and the guess becomes the best candidate's embedding
plus ``secant`` applied to its output's miss, with ``secant`` corrected to agree with all the pairs seen
(a multi-secant quasi-Newton step). The tokens to verify next are the unverified ones nearest the guess.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import DynamicCache

from ...layers import LayerModel

RIDGE = 1e-3  # ridge penalty per sample, on standardised features
SECANT_DAMPING = 0.1  # multi-secant correction: penalty relative to the mean squared output difference
SECANT_PAIRS = 64  # evaluated points kept for the correction: those whose outputs came nearest the target
SECANT_BATCHES = 3  # guided: batches whose misses move the guess by secant steps before gradient steps take over
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
    P = lm.memo("lm_head_pinv", lambda: torch.linalg.pinv(W_U.double()).to(W_U.dtype))  # (d, V)
    bias = head.bias.detach() if getattr(head, "bias", None) is not None else None
    return lambda h: (h if bias is None else h - bias) @ P.T


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


@dataclass
class Calibration:
    first: LinearMap  # position 0
    later: LinearMap  # positions >= 1
    secant: torch.Tensor  # (F, d): output difference -> embedding difference under one prefix
    seconds: float  # time it took to fit (paid once per model and layer)
    forward_calls: int


@torch.no_grad()
def calibrate(target: LayerModel, contexts: int = 128, per_context: int = 32, seed: int = 0) -> Calibration:
    """Fit the three maps on random token ids; memoised per model, layer, sizes and seed."""
    lm = target.lm
    return lm.memo(("exact-calibration", target.name, contexts, per_context, seed),
                   lambda: _calibrate(target, contexts, per_context, seed))


def _calibrate(target: LayerModel, contexts: int, per_context: int, seed: int) -> Calibration:
    t0 = time.perf_counter()
    lm, feat = target.lm, output_features(target)
    W, V, dev = lm.embedding_matrix.detach(), lm.vocab_size, lm.device
    gen = torch.Generator().manual_seed(seed)
    group, K = 8, per_context
    max_len = max(1, min(31, lm.max_positions - 1))
    X, F, ctx, calls = [], [], [], 0
    for g in range(0, contexts, group):
        T = int(torch.randint(1, max_len + 1, (1,), generator=gen))
        prefix = torch.randint(0, V, (group, T), generator=gen).to(dev)  # (G, T)
        cache = DynamicCache()
        target(lm.embed(prefix), past_key_values=cache, use_cache=True)
        rows = DynamicCache([(layer.keys.repeat_interleave(K, 0), layer.values.repeat_interleave(K, 0))
                             for layer in cache.layers[: target.spec.depth]]) if target.spec.depth else DynamicCache()
        toks = torch.randint(0, V, (group * K,), generator=gen).to(dev)
        pos = torch.full((group * K, 1), T, dtype=torch.long, device=dev)
        out = target(W[toks][:, None], past_key_values=rows, use_cache=True, position_ids=pos)[:, 0]  # (G*K, D)
        X.append(W[toks])
        F.append(feat(out))
        ctx.append(torch.arange(group, device=dev).repeat_interleave(K) + g)
        calls += 2
    X, F, ctx = torch.cat(X), torch.cat(F), torch.cat(ctx)  # (n, d), (n, F), (n,)
    n_ctx = int(ctx.max()) + 1
    counts = torch.bincount(ctx, minlength=n_ctx)[:, None].to(X.dtype)
    Xc = X - (torch.zeros(n_ctx, X.shape[1], dtype=X.dtype, device=dev).index_add_(0, ctx, X) / counts)[ctx]
    Fc = F - (torch.zeros(n_ctx, F.shape[1], dtype=F.dtype, device=dev).index_add_(0, ctx, F) / counts)[ctx]
    toks0 = torch.randint(0, V, (max(4 * lm.d_model, 512),), generator=gen).to(dev)
    out0 = target(W[toks0][:, None])[:, 0]  # (n0, D): each token alone at position 0
    calls += 1
    return Calibration(first=ridge(feat(out0), W[toks0]), later=ridge(F, X), secant=ridge(Fc, Xc).A,
                       seconds=time.perf_counter() - t0, forward_calls=calls)


class Guess:
    """The running estimate of one position's input embedding, and the order in which to verify tokens."""

    def __init__(self, W: torch.Tensor, sqnorm: torch.Tensor, target_feat: torch.Tensor, start: torch.Tensor,
                 secant: torch.Tensor):
        self.W, self.sqnorm = W, sqnorm  # (V, d), (V,): the rows and their squared norms
        self.f, self.x, self.secant = target_feat, start, secant  # (F,), (d,), (F, d)
        self.X: list[torch.Tensor] = []
        self.F: list[torch.Tensor] = []

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        """The n untried token ids nearest the guess, nearest first."""
        dist = (self.sqnorm - 2 * (self.W @ self.x)).masked_fill(tried, float("inf"))  # (V,): ||W_v - x||^2 - ||x||^2
        return dist.topk(n, largest=False).indices

    def extra_points(self) -> torch.Tensor | None:
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
        self.x = X[best] + (self.f - F[best]) @ A


class VocabOrder:
    """Brute force: tokens in vocabulary order, ignoring all evidence."""

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        return torch.nonzero(~tried).flatten()[:n]

    def extra_points(self) -> torch.Tensor | None:
        return None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        pass


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

    def extra_points(self) -> torch.Tensor | None:
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


class NextTokenPrior:
    """The full model's next-token logits after the tokens recovered so far, with its own key/value cache, fed
    only when asked (a layer that the geometric guess inverts never pays for it)."""

    def __init__(self, lm):
        self.lm, self.cache, self.fed, self.logits = lm, DynamicCache(), 0, None
        self.positions = 0  # full-depth positions run

    @torch.no_grad()
    def __call__(self, tokens: list[int]) -> torch.Tensor | None:
        """(V,) logits for the token after ``tokens``; None at position 0 (nothing to condition on)."""
        if not tokens:
            return None
        new = tokens[self.fed:]
        if new:
            ids = torch.tensor([new], device=self.lm.device)
            pos = torch.arange(self.fed, len(tokens), device=self.lm.device)[None]
            self.logits = self.lm.model(input_ids=ids, past_key_values=self.cache, use_cache=True,
                                        position_ids=pos).logits[0, -1]
            self.fed, self.positions = len(tokens), self.positions + len(new)
        return self.logits


def fill_batch(first: torch.Tensor, n: int, tried: torch.Tensor,
         order: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One batch from two proposals: ``first``, then untried ids from ``order(k, tried)`` up to ``n`` in all."""
    seen = tried.clone()
    seen[first] = True
    rest = min(n - len(first), int((~seen).sum()))
    return torch.cat([first, order(rest, seen)]) if rest > 0 else first


class Guided:
    """Batch 1: the model's most expected token and the guess's nearest (``prior_first``), or the guess's nearest
    alone; later batches: half the most expected untried tokens, half the nearest untried ones to the guess. The
    guess moves by secant steps (free: they use the verified outputs) for ``SECANT_BATCHES`` batches, then by
    gradient steps through the prefix's cache, which cost a backward pass each but reach deep layers."""

    def __init__(self, guess, descent: Callable[[], Descent] | None,
                 prior: Callable[[], torch.Tensor | None], prior_first: bool):
        self.guess, self.make_descent, self.descent = guess, descent, None
        self.prior, self.prior_first, self.scores, self.batches = prior, prior_first, None, 0
        self.guess_top: int | None = None  # the guess's first choice before any step: was the guess enough?

    def _geometric(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        return (self.descent or self.guess).next(n, tried)

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        self.batches += 1
        if self.batches == 1:
            self.guess_top = int(self.guess.next(1, tried)[0])
        if self.batches == 1 and not self.prior_first:
            return self._geometric(n, tried)
        if self.scores is None:
            self.scores = self.prior()
        if self.scores is None:
            return self._geometric(n, tried)
        first = self.scores.masked_fill(tried, float("-inf")).topk((n + 1) // 2).indices
        return fill_batch(first, n, tried, self._geometric)

    def extra_points(self) -> torch.Tensor | None:
        return None if self.descent else self.guess.extra_points()

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        if self.descent is None:
            self.guess.observe(ids, x, f)
            if self.make_descent is not None and self.batches >= SECANT_BATCHES:
                self.descent = self.make_descent()  # from the calibrated start: secant steps stray at depth
        if self.descent is not None:
            self.descent.observe(ids, x, f)

    @property
    def gradient_steps(self) -> int:
        return getattr(self.descent or self.guess, "gradient_steps", 0)
