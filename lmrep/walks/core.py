"""Manifold walks: move a prompt's embedding e while a layer's output O(e) stays (nearly) where it was.

Three methods, one record format; each registers its move in ``registry.METHODS`` (page_walks.py: the page's tangent
and clamped walks; jacobian.py: the Jacobian walk); their options are ``config.WalkConfig``:

    tangent    the page's walk: SVD of the input gradient of sum(O) (tokens x d), a step along a right-singular
               vector beyond the number of tokens, broadcast over the tokens
    jacobian   a step along the smallest singular directions of the Jacobian dO/de itself (block Krylov on J^T J),
               then ``inner_steps`` re-projection steps that pull the output back to O(e)
    clamped    each round a random split index on the embedding dimension: noise on one side, ``inner_steps``
               gradient steps toward O(e) on the other; the noised (clamped) side never moves by gradient

The one definition of the ratio, used everywhere (``ratio``): r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1, sums over
every entry of the real (unpadded) positions. Targets are those of lmrep.objective.targets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..objective.batching import per_item
from .config import WalkConfig


def l1(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: (B, T, ...), mask: (B, T) -> sum of |x| over the real positions, (B,), in float64."""
    m = mask.to(torch.float64).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x.detach().double().abs() * m).flatten(1).sum(1)


def l2(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: (B, T, ...), mask: (B, T) -> Euclidean norm over the real positions, (B,), in float64."""
    m = mask.to(torch.float64).reshape(*mask.shape, *([1] * (x.dim() - 2)))
    return (x.detach().double() ** 2 * m).flatten(1).sum(1).sqrt()


def ratio(e0: torch.Tensor, e: torch.Tensor, out0: torch.Tensor, out: torch.Tensor,
          mask: torch.Tensor) -> torch.Tensor:
    """r = ||e - e_N||_1 / ||O(e) - O(e_N)||_1 per walk, (B,); NaN where the output did not change at all."""
    d_in, d_out = l1(e - e0, mask), l1(out - out0, mask)
    return torch.where(d_out > 0, d_in / d_out.clamp_min(1e-300), torch.full_like(d_in, float("nan")))


def input_at_output(trajectory: list[dict], delta: float, norm: str = "l1") -> float | None:
    """How far the input had moved when the output change first reached ``delta`` (both in ``norm``, l1 or l2),
    interpolating linearly between recorded steps; the final input distance if the output never changed that
    much. This compares walks at equal output change."""
    i, o = f"input_{norm}", f"output_{norm}"
    for a, b in zip(trajectory, trajectory[1:]):
        if b[o] >= delta:
            span = b[o] - a[o]
            w = (delta - a[o]) / span if span > 0 else 1.0
            return a[i] + min(max(w, 0.0), 1.0) * (b[i] - a[i])
    return trajectory[-1][i] if trajectory else None


@dataclass
class WalkState:
    """What a move reads and updates. ``e`` is replaced by each move; the rest is fixed for the walk."""
    target: Callable
    cfg: WalkConfig
    e: torch.Tensor  # (B, T, d) current embeddings
    e0: torch.Tensor  # (B, T, d) starting embeddings (the prompt's tokens)
    out0: torch.Tensor  # (B, T, D) O(e0)
    mask: torch.Tensor  # (B, T) 1 on real tokens
    gens: list  # one torch.Generator per walk
    prev: torch.Tensor | None = None  # (B, T, d) the last move's unit direction (jacobian continuation)
    ritz: torch.Tensor | None = None  # (B, T*d, k) the last least-gain directions (jacobian warm start)

    def draw(self, fn=torch.randn, *trailing: int) -> torch.Tensor:
        """Per walk, ``fn((L, d, *trailing))`` from its own generator for its L real tokens, zero-padded to
        (B, T, d, *trailing): a walk draws the same numbers alone or in any batch."""
        return per_item(self.e, self.gens, self.mask.sum(1).tolist(), fn, *trailing)

    @property
    def tokmask(self) -> torch.Tensor:
        return self.mask[..., None].to(self.e.dtype)  # (B, T, 1)

    def output(self, e: torch.Tensor) -> torch.Tensor:
        return self.target(e, self.mask)
