"""Inverting the prompts of one condition as resumable items: the step every experiment built on eq. 2 shares."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..objective.decode import Decoder
from ..objective.names import DECODERS
from ..inversion import InvertConfig, invert
from ..inversion.base import Target
from ..models.layers import layer_model
from ..models.load import LoadedModel
from ..engine import Task, item_id
from .pool import ModelPool

CURVE_POINTS = 200  # loss curves are stored thinned to about this many points (the crossing steps use all of them)


def thin_curve(curve: list[float | None], points: int = CURVE_POINTS) -> tuple[list[int], list[float | None]]:
    """Every k-th point of a per-step curve, plus the last: (steps, values)."""
    k = max(1, -(-len(curve) // points))
    steps = list(range(0, len(curve), k))
    if steps and steps[-1] != len(curve) - 1:
        steps.append(len(curve) - 1)
    return steps, [curve[s] for s in steps]


def first_below(curve: list[float | None], level: float | None) -> int | None:
    """The first step whose value is below ``level`` (eq. 4: m_g < m), or None if it never is."""
    if level is None:
        return None
    return next((n for n, v in enumerate(curve) if v is not None and v < level), None)


@torch.no_grad()
def decoder_ceiling(lm: LoadedModel, ids: list[int]) -> dict[str, float]:
    """Each decoder's token accuracy on the prompt's own embeddings: the most an inversion can score with it."""
    e = lm.embed(torch.tensor([ids], device=lm.device))  # (1, T, d)
    return {name: sum(int(a == b) for a, b in zip(Decoder(lm, name)(e)[0].tolist(), ids)) / len(ids)
            for name in DECODERS}


def as_item(rec: dict, keep_curve: bool = True) -> dict:
    """A method's record as an item: the loss curve thinned (and its steps kept beside it)."""
    out = {k: v for k, v in rec.items() if k != "loss_curve"}
    if keep_curve and rec.get("loss_curve"):
        out["curve_steps"], out["loss_curve"] = thin_curve(rec["loss_curve"])
    return out


@dataclass(frozen=True)
class TargetSpec:
    """What to invert, as data (it travels to workers): the first ``depth`` blocks of a model with a head, or one
    of the page's toy nets over the model's embeddings (FCNet is built for each prompt's length)."""

    model: str
    untrained: bool = False
    depth: int = 1
    head: str = "none"
    dtype: str = "float32"
    toy: str | None = None  # fcnet, fcnet-noninv, mlp

    def build(self, pool: ModelPool, prompt: str) -> Target:
        lm = pool.model(self.model, untrained=self.untrained, dtype=self.dtype)
        if self.toy:
            return pool.toy(self.toy, lm, len(lm.encode(prompt)), seed=0)
        return layer_model(lm, self.depth, self.head)


Post = Callable[[ModelPool, Target, dict, InvertConfig], dict]


def invert_tasks(condition: str, target: TargetSpec, prompts: list[str], cfg: InvertConfig, extra: dict,
                 post: Post | None = None, one_length: bool = False, keep_curve: bool = True) -> list[Task]:
    """The tasks that invert each prompt of ``condition``: a batch of cfg.batch_size prompts each (optimised
    together), or one prompt each for targets tied to an input length (``one_length``: FCNet).

    ``post(pool, target, record, cfg)`` adds measurements that need the full record (e.g. crossings of the whole
    loss curve) before it is thinned (or dropped: ``keep_curve``); ``extra`` tags every item, and each gets its
    decoders' ceiling (their accuracy on the true embeddings).
    """
    size = 1 if one_length else cfg.batch_size
    keys = [item_id(condition, f"seed={cfg.seed}", p) for p in prompts]
    return [Task(solve_invert, (condition, target, cfg, extra, post, keep_curve), tuple(keys[i:i + size]),
                 tuple(prompts[i:i + size]), affinity=target.model)
            for i in range(0, len(prompts), size)]


def solve_invert(pool: ModelPool, prompts: list[str], condition: str, spec: TargetSpec, cfg: InvertConfig,
                 extra: dict, post: Post | None, keep_curve: bool) -> Iterator[dict]:
    """One task of ``invert_tasks``: every prompt inverted in one batch, one item each."""
    target = spec.build(pool, prompts[0])
    for rec in invert(target, prompts, cfg, progress=False):
        more = post(pool, target, rec, cfg) if post else {}
        yield {"condition": condition, "seed": cfg.seed, **as_item(rec, keep_curve), **extra, **more,
               "decoder_ceiling": decoder_ceiling(target.lm, rec["target_ids"])}  # tags win
