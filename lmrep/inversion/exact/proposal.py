"""The one interface between the search and its rankings, and the one way two rankings combine.

A proposal orders the candidates at one position. The search asks it for the next ``n`` untried tokens
(``next``), evaluates them in one forward pass together with any ``probes`` it wants to see (continuous points
that only inform the ranking, such as the current guess of the embedding), and tells it what came out
(``observe``). Rankings (rank.py) build proposals from the pieces here and in guess.py and vocab_tables.py.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch


class Proposal(Protocol):
    def next(self, n: int, tried: torch.Tensor) -> torch.Tensor:
        """The n (or fewer, if fewer are left) best untried token ids (n,), best first; ``tried`` is (V,) bool."""

    def probes(self) -> torch.Tensor | None:
        """Points (p, d) to evaluate with the next batch that are not candidates, or None."""

    def observe(self, ids: torch.Tensor, x: torch.Tensor, f: torch.Tensor) -> None:
        """What the last batch showed: the candidate ids (n,), every evaluated point (n + p, d) (the candidates
        first, then the probes) and their output features (n + p, F)."""


class Scores:
    """Tokens in order of a fixed score (V,), highest first: the model's next-token logits, or brute force."""

    def __init__(self, scores: torch.Tensor):
        self.scores = scores  # (V,)

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
