"""Inversion: given a layer's output for a prompt, get the prompt back. What every method shares.

Methods register in ``registry.METHODS`` (``lmrep.inversion`` imports each method's module), and every method
yields one JSON-ready record per prompt with the same core fields (see ``record``), so runs of different methods,
layers and models can be compared line by line.

A target is what lmrep.targets describes: ``O(embeds (B, T, d), attention_mask (B, T)) -> (B, T, D)`` with ``lm``
and ``name``.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..batching import pad
from ..layers import LayerModel
from ..stats import mean_sem
from ..targets import depth_of
from .config import InvertConfig
from .registry import METHODS

Target = Callable[..., torch.Tensor]
RATES = ("token_accuracy", "exact_match", "within_threshold", "next_token_match", "seconds")


def invert(target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True) -> Iterator[dict]:
    """Invert each prompt from ``target``'s output; yields a record per prompt as soon as it is done."""
    cfg.check(target.lm.vocab_size)
    ids = [target.lm.encode(p) for p in prompts]
    yield from METHODS[cfg.method](target, ids, cfg, progress)


@torch.no_grad()
def next_tokens(target: Target, batch: list[list[int]]) -> list[int]:
    """The full model's predicted next token after each sequence."""
    lm = target.lm
    ids, mask = pad(batch, device=lm.device)
    h = lm.base(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, d), after the final norm
    last = mask.sum(1) - 1
    return lm.lm_head(h[torch.arange(len(batch)), last]).argmax(-1).tolist()  # the head on the last tokens only


def record(target: Target, cfg: InvertConfig, ids: list[int], recovered: list[int], **extra) -> dict:
    """The fields every method reports; ``extra`` adds the method's own. Token texts are kept one by one, so a
    report can show each token (and colour it) without a tokenizer."""
    lm = target.lm
    correct = sum(int(a == b) for a, b in zip(ids, recovered))
    return dict(
        model=lm.name, trained=lm.trained, layer=depth_of(target), layer_name=target.name, method=cfg.method,
        prompt=lm.decode(ids), target_ids=ids, recovered_ids=recovered, recovered_text=lm.decode(recovered),
        target_tokens=[lm.decode([i]) for i in ids], recovered_tokens=[lm.decode([i]) for i in recovered],
        n_tokens=len(ids), token_accuracy=correct / len(ids), exact_match=recovered == ids, **extra)


def summarize(records: list[dict]) -> dict:
    """Mean and standard error of the headline rates over prompts."""
    out = {"prompts": len(records)}
    for key in RATES:
        stat = mean_sem(float(r[key]) for r in records if r.get(key) is not None)
        if stat["n"]:
            out[key] = stat
    return out


def config_dict(cfg: InvertConfig, target: LayerModel) -> dict:
    """What produced an inversion run: the model, layer, dtype and device, and every field of ``cfg``."""
    lm = target.lm
    return dict(model=lm.name, trained=lm.trained, layer=target.spec.depth, head=target.spec.head,
                layer_name=target.name, dtype=str(lm.dtype).replace("torch.", ""), device=str(lm.device),
                **cfg.to_dict())
