"""The one interface between the search and its rankings, and the one way two rankings combine.

A proposal orders the candidates at one position. The search asks it for the next ``n`` untried tokens
(``next``), evaluates them in one forward pass together with any ``probes`` it wants to see (continuous points
that only inform the ranking, such as the current guess of the embedding), and tells it what came out
(``observe``). Rankings (rank.py) build proposals from the pieces here and in guess.py, probe.py and
vocab_tables.py. Two proposals combine in two ways: one after the other (``Then``), or by the sum of their
reciprocal ranks (``Fused``), for proposals that score the whole vocabulary (``score``).
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

FUSED_K = 1  # reciprocal-rank fusion's offset: the first of one ranking scores 1/1, the second 1/2, ...


class Proposal(Protocol):
    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        """The n (or fewer, if fewer are left) best untried token ids (n,), best first; ``tried`` is (V,) bool."""

    def probes(self) -> torch.Tensor | None:
        """Points (p, d) to evaluate with the next batch that are not candidates, or None."""

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        """What the last batch showed: the candidate ids (n,), every evaluated point (n + p, d) (the candidates
        first, then the probes) and their output features (n + p, F)."""

    # optional: ``settle(ids, x, f)``, the same for the batch that held the answer (which ``observe`` never sees)


class Scores:
    """Tokens in order of a fixed score (V,), highest first: the model's next-token logits, or brute force."""

    def __init__(self, scores: torch.Tensor):
        self.scores = scores  # (V,)

    def score(self) -> torch.Tensor:
        return self.scores

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        return self.scores.masked_fill(tried, float("-inf")).topk(n).indices

    def probes(self) -> torch.Tensor | None:
        return None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        pass


class Then:
    """``a`` alone for the first ``after`` batches, then half of each batch from ``a`` and half from ``b``.

    ``b`` is built only when it is first needed (``make_b`` may return None: then ``a`` goes on alone), so a
    position that ``a`` settles never pays for it. Both see every batch from the moment they exist; the probes
    are both proposals' probes."""

    def __init__(self, a: Proposal, make_b: Callable[[], Proposal | None], after: int = 0):
        self.a, self.make_b, self.after = a, make_b, after
        self.b: Proposal | None = None
        self.batches, self.made = 0, False

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        self.batches += 1
        if self.batches > self.after and not self.made:
            self.b, self.made = self.make_b(), True
        if self.b is None:
            return self.a.next(n, tried)
        first = self.a.next((n + 1) // 2, tried)
        seen = tried.clone()
        seen[first] = True
        rest = min(n - len(first), int((~seen).sum()))
        return torch.cat([first, self.b.next(rest, seen)]) if rest > 0 else first

    def probes(self) -> torch.Tensor | None:
        parts = [p for p in (self.a.probes(), self.b.probes() if self.b else None) if p is not None]
        return torch.cat(parts) if parts else None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        self.a.observe(ids, x, f)
        if self.b is not None:
            self.b.observe(ids, x, f)

    @property
    def gradient_steps(self) -> int:
        return sum(getattr(p, "gradient_steps", 0) for p in (self.a, self.b) if p is not None)


class Fused:
    """Tokens in order of ``sum_i w_i / (FUSED_K + rank_i)`` over proposals that score every token (``score()``,
    (V,), higher first; read afresh each batch, so a moving guess moves the order): a token near the top of any
    one of them comes early, and one that all of them rank well comes earlier still. ``weights`` (default equal)
    say how far each is trusted."""

    def __init__(self, parts: list, weights: list[float] | None = None):
        self.parts, self.weights = parts, weights or [1.0] * len(parts)

    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        fused = None
        for p, w in zip(self.parts, self.weights):
            order = p.score().argsort(descending=True)  # (V,): token ids, best first
            rank = torch.empty_like(order)
            rank[order] = torch.arange(len(order), device=order.device)
            part = w / (FUSED_K + rank.to(torch.float32))
            fused = part if fused is None else fused + part
        return fused.masked_fill(tried, float("-inf")).topk(n).indices

    def probes(self) -> torch.Tensor | None:
        """The parts' probes, each point once (parts that start from the same guess probe it alike)."""
        parts = [q for q in (p.probes() for p in self.parts) if q is not None]
        return torch.unique(torch.cat(parts), dim=0) if parts else None

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        for p in self.parts:
            p.observe(ids, x, f)
