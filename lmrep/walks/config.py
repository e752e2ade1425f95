"""What one walk is: the method and its settings, each field with its help text and check (torch-free, so that
the command line reads and checks them before torch loads; core.py has what a walk computes)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LmrepError
from ..objective.names import DECODERS
from ..records.checks import (When, at_least, boolean, check_fields, each, non_negative, one_of, option, optional,
                              positive, seed_value)
from .registry import move_names

CONVENTIONS = ("text", "scripts")
WALK = "walk"
CLAMPED, JACOBIAN = When("method", ("clamped",)), When("method", ("jacobian",))
MOVES = When("method", ("tangent", "jacobian"))


@dataclass
class WalkConfig:
    method: str = option("clamped", "tangent: the page's SVD walk; jacobian: least-gain directions of dO/de + "
                         "re-projection; clamped: noise on one side of a random split, descent on the other",
                         one_of(move_names), group=WALK)
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
    until_change: bool = option(False, "stop each walk at the first step where a decoded token differs from the "
                                "start's decode (steps is then the cap; records first_change, or none: more than "
                                "steps)", boolean, group=WALK)
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
