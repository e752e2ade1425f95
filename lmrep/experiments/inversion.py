"""Inverting the prompts of one condition as resumable items: the step every experiment built on eq. 2 shares."""
from __future__ import annotations

from typing import Callable

import torch

from ..decode import DECODERS, Decoder
from ..inversion import InvertConfig, invert
from ..inversion.base import Target
from ..models import LoadedModel
from .items import ItemLog, Progress, item_id, run_group

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


def invert_items(log: ItemLog, progress: Progress, condition: str, make_target: Callable[[str], Target],
                 prompts: list[str], cfg: InvertConfig, extra: dict,
                 post: Callable[[Target, dict], dict] | None = None, one_length: bool = False,
                 keep_curve: bool = True) -> list[dict]:
    """Invert each prompt of ``condition`` (skipping finished ones) and return every prompt's item.

    ``make_target(prompt)`` builds the target only when something is left to do; ``one_length`` inverts prompts
    one at a time for targets tied to an input length (FCNet). ``post(target, record)`` adds measurements that need
    the full record (e.g. crossings of the whole loss curve) before it is thinned (or dropped: ``keep_curve``);
    ``extra`` tags every item, and each gets its decoders' ceiling (their accuracy on the true embeddings).
    """
    keys = [item_id(condition, f"seed={cfg.seed}", p) for p in prompts]

    def solve(indices: list[int]):
        groups = [[i] for i in indices] if one_length else [indices]
        for group in groups:
            target = make_target(prompts[group[0]])
            for rec in invert(target, [prompts[i] for i in group], cfg, progress=False):
                more = post(target, rec) if post else {}
                yield {"condition": condition, "seed": cfg.seed, **as_item(rec, keep_curve), **extra, **more,
                       "decoder_ceiling": decoder_ceiling(target.lm, rec["target_ids"])}  # tags win

    return list(run_group(log, keys, solve, progress))
