"""Manifold walks: move a prompt's embedding e while a layer's output O(e) stays (nearly) where it was.

Three methods, one record format; each registers its move in ``METHODS`` (page_walks.py: the page's tangent and clamped
walks; jacobian.py: the Jacobian walk):

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

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ..objective.batching import per_item
from ..records.checks import (When, at_least, check_fields, each, non_negative, one_of, option, optional, positive,
                              seed_value)
from ..objective.names import DECODERS
from ..errors import LmrepError

CONVENTIONS = ("text", "scripts")
WALK = "walk"
CLAMPED, JACOBIAN = When("method", ("clamped",)), When("method", ("jacobian",))
MOVES = When("method", ("tangent", "jacobian"))


@dataclass
class WalkConfig:
    method: str = option("clamped", "tangent: the page's SVD walk; jacobian: least-gain directions of dO/de + "
                         "re-projection; clamped: noise on one side of a random split, descent on the other",
                         one_of(lambda: list(METHODS)), group=WALK)
    steps: int = option(10, "moves (tangent, jacobian) or rounds (clamped) N", at_least(0), group=WALK)
    inner_steps: int | None = option(None, "clamped: gradient steps per round; jacobian/tangent: re-projection "
                                     "steps per move", optional(at_least(0)), group=WALK)
    step_size: float = option(0.01, "tangent/jacobian: each move is step-size * sqrt(tokens) long in L2 (the "
                              "page's 0.01 * perp)", positive, group=WALK, when=MOVES)
    convention: str = option("scripts", "clamped: scripts (U(0, noise) on dims >= i, descent on dims < i) or text "
                             "(N(0, noise) on dims < i, descent on dims >= i, as the page's equation)",
                             one_of(CONVENTIONS), group=WALK, when=CLAMPED)
    noise: float = option(2e-4, "clamped: noise scale per round (the scripts' 2e-4)", non_negative, group=WALK,
                          when=CLAMPED)
    lr: float = option(2e-5, "clamped: plain gradient step on ||O(e_n) - O(e)||_1 (the scripts' 2e-5)", positive,
                       group=WALK, when=CLAMPED)
    directions: int = option(8, "jacobian: directions per Krylov block (the walk moves in their span)",
                             at_least(1), group=WALK, when=JACOBIAN)
    krylov: int = option(3, "jacobian: Krylov blocks, i.e. J^T J products per move", at_least(1), group=WALK,
                         when=JACOBIAN)
    decoder: str = option("pinv", "embeddings -> tokens for the snapshots: pinv (eq. 3), l2, cosine",
                          one_of(DECODERS), group=WALK)
    topk: int = option(5, "decoded alternatives per snapshot (the page prints top-5)", at_least(1), group=WALK)
    snapshots: tuple[int, ...] = option((), "steps at which to decode (default: 0, N/4, N/2, 3N/4, N)",
                                        each(at_least(0)), group=WALK)
    batch_size: int = option(16, "walks run together (each is its own computation)", at_least(1), group=WALK)
    seed: int = option(0, "noise, split indices and starting directions", seed_value, cli=False)

    def check(self, vocab_size: int | None = None) -> "WalkConfig":
        """Raise LmrepError on a value that cannot work; returns self."""
        check_fields(self)
        late = [s for s in self.snapshots if s > self.steps]
        if late:
            raise LmrepError(f"snapshots must be steps 0..{self.steps} (the walk has {self.steps} steps), "
                             f"got {late[0]}")
        if vocab_size is not None and self.topk > vocab_size:
            raise LmrepError(f"topk must be at most the vocabulary size {vocab_size}, got {self.topk}")
        return self

    @property
    def inner(self) -> int:
        """inner_steps with the method's default filled in."""
        if self.inner_steps is not None:
            return int(self.inner_steps)
        return 0 if self.method == "tangent" else 1

    def snapshot_steps(self) -> list[int]:
        if self.snapshots:
            return sorted({s for s in self.snapshots if 0 <= s <= self.steps} | {0, self.steps})
        return sorted({0, self.steps // 4, self.steps // 2, 3 * self.steps // 4, self.steps})

    def to_dict(self) -> dict:
        return dict(asdict(self), inner_steps=self.inner)


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


Move = Callable[[WalkState, int], list[dict]]  # one step or round; returns per-walk diagnostics
METHODS: dict[str, Move] = {}


def register_move(name: str):
    """Decorator: make ``move(state, n)`` available as walk method ``name``."""
    def wrap(fn: Move) -> Move:
        METHODS[name] = fn
        return fn
    return wrap
