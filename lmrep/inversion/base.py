"""Inversion: given a layer's output, get the input back. What every method shares.

Output first: a method sees only the observed layer output of each sequence (``invert_outputs``), never its text,
and yields one JSON-ready record per sequence with what it recovered (``recovered``). ``invert`` is the wrapper for
known prompts: it computes their outputs, hands them to the method with the true ids (which a method may use for
diagnostics only: what it recovers is the same with or without them), and adds the scores that need the truth
(``score``: token accuracy, exact match, next-token match). Methods register in ``registry.METHODS``
(each imported on first use, ``registry.MODULES``), so runs of different methods, layers and models compare line
by line.

A target is what lmrep.objective.targets describes: ``O(embeds (B, T, d), attention_mask (B, T)) -> (B, T, D)`` with ``lm``
and ``name``.
"""
from __future__ import annotations

from typing import Callable, Iterator, Sequence

import torch

from ..objective.batching import pad
from ..errors import LmrepError
from ..models.layers import LayerModel, cache_width
from ..records.health import counts, healthy
from ..records.stats import mean_sem
from ..objective.targets import depth_of
from .config import InvertConfig
from .degrade import Degraded, values
from .registry import READS_DEGRADATION, method

Target = Callable[..., torch.Tensor]
Outputs = torch.Tensor | Sequence[torch.Tensor]
RATES = ("token_accuracy", "exact_match", "within_threshold", "next_token_match", "uniquely_verified", "seconds")


def sequences(outputs: Outputs, width: int | None = None) -> list[torch.Tensor]:
    """A (T, D) or (N, T, D) tensor, or a list of (T_i, D) tensors -> a list of (T_i, D) tensors, checked."""
    if isinstance(outputs, torch.Tensor):
        if outputs.dim() == 2:
            outputs = [outputs]
        elif outputs.dim() == 3:
            outputs = list(outputs)
        else:
            raise LmrepError(f"outputs must have shape (T, D) or (N, T, D), got {tuple(outputs.shape)}")
    seqs = list(outputs)
    if not seqs:
        raise LmrepError("no outputs given: pass a (T, D) or (N, T, D) tensor or a list of (T, D) tensors")
    for i, h in enumerate(seqs):
        if not isinstance(h, torch.Tensor) or h.dim() != 2 or h.shape[0] < 1 or not h.is_floating_point():
            shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise LmrepError(f"output {i} must be a floating-point (T, D) tensor with T >= 1, got {shape}")
        if width is not None and h.shape[1] != width:
            raise LmrepError(f"output {i} has width {h.shape[1]} but this layer outputs width {width}")
    return seqs


def invert_outputs(target: Target, outputs: Outputs, cfg: InvertConfig, progress: bool = False) -> Iterator[dict]:
    """Recover the input of each observed layer output ((T, D), (N, T, D) or a list of (T_i, D), each of which may be
    a ``Degraded``: quantised or noisy states with their bound); yields one record per sequence, in order, with what
    was recovered (and the exact method's certificate). No text needed."""
    cfg.fits(target.lm.vocab_size)
    given = list(outputs) if isinstance(outputs, (list, tuple)) else outputs
    seqs = sequences([values(h) for h in given] if isinstance(given, list) else given, output_width(target))
    degraded = [h if isinstance(h, Degraded) else None for h in given] if isinstance(given, list) else []
    run = method(cfg.method)  # imported first: it registers whether it reads the degradation
    extra = dict(degraded=degraded) if any(degraded) and cfg.method in READS_DEGRADATION else {}
    yield from run(target, seqs, cfg, progress, None, **extra)


def invert(target: Target, prompts: list[str], cfg: InvertConfig, progress: bool = True) -> Iterator[dict]:
    """Invert each prompt from ``target``'s output; yields a record per prompt, scored against it, as soon as it
    is done."""
    cfg.fits(target.lm.vocab_size)
    ids = [target.lm.encode(p) for p in prompts]
    outputs = layer_outputs(target, ids)
    for rec, truth in zip(method(cfg.method)(target, outputs, cfg, progress, ids), ids):
        yield score(target, rec, truth)


@torch.no_grad()
def layer_outputs(target: Target, ids: list[list[int]]) -> list[torch.Tensor]:
    """Each prompt's layer output alone (no padding), [(T_i, D)]."""
    lm = target.lm
    return [target(lm.embed(torch.tensor([x], device=lm.device)))[0] for x in ids]  # (T, D) each


def output_width(target: Target) -> int | None:
    """What a layer outputs per position (D): d_model, or the vocabulary for the logits heads; None for targets
    that are not layers of a model (their width depends on the net)."""
    if not isinstance(target, LayerModel):
        return None
    if target.spec.cached:
        return cache_width(target.lm, target.spec)
    if target.spec.has_lm_head:
        return target.lm.lm_head.weight.shape[0]
    return getattr(target.lm.config, "hidden_size", None) or target.lm.d_model


@torch.no_grad()
def next_tokens(target: Target, batch: list[list[int]]) -> list[int]:
    """The full model's predicted next token after each sequence."""
    lm = target.lm
    ids, mask = pad(batch, device=lm.device)
    h = lm.base(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, d), after the final norm
    last = mask.sum(1) - 1
    return lm.lm_head(h[torch.arange(len(batch)), last]).argmax(-1).tolist()  # the head on the last tokens only


def recovered(target: Target, cfg: InvertConfig, rec_ids: list[int], **extra) -> dict:
    """The fields every method reports about what it recovered; ``extra`` adds the method's own. Token texts are
    kept one by one, so a report can show each token (and colour it) without a tokenizer."""
    lm = target.lm
    return dict(
        model=lm.name, trained=lm.trained, layer=depth_of(target), layer_name=target.name, method=cfg.method,
        recovered_ids=rec_ids, recovered_text=lm.decode(rec_ids), recovered_tokens=[lm.decode([i]) for i in rec_ids],
        n_tokens=len(rec_ids), **extra)


def score(target: Target, rec: dict, ids: list[int]) -> dict:
    """A method's record scored against the true ids: the prompt, token accuracy, exact match, and whether the
    full model predicts the same next token after the recovered text."""
    lm, got = target.lm, rec["recovered_ids"]
    correct = sum(int(a == b) for a, b in zip(ids, got))
    truth = dict(prompt=lm.decode(ids), target_ids=ids, target_tokens=[lm.decode([i]) for i in ids],
                 token_accuracy=correct / len(ids), exact_match=got == ids)
    if "ties" in (rec.get("certificate") or [{}])[0]:  # the exact method: a tied token counts as recovered
        truth["token_accuracy_with_ties"] = sum(int(a == b or a in c["ties"]) for a, b, c in
                                                zip(ids, got, rec["certificate"])) / len(ids)
    want, have = next_tokens(target, [ids, got])
    truth.update(next_token_match=want == have, next_token=lm.decode([want]), recovered_next_token=lm.decode([have]))
    head = {k: rec[k] for k in ("model", "trained", "layer", "layer_name", "method") if k in rec}
    return {**head, **truth, **{k: v for k, v in rec.items() if k not in head}}


def summarize(records: list[dict]) -> dict:
    """Mean and standard error of the headline rates over the prompts whose run did not diverge, with how many
    runs were ok, stalled and diverged beside them."""
    out = {"prompts": len(records), "health": counts(records)}
    for key in RATES:
        stat = mean_sem(float(r[key]) for r in healthy(records) if r.get(key) is not None)
        if stat["n"]:
            out[key] = stat
    return out


def config_dict(cfg: InvertConfig, target: LayerModel) -> dict:
    """What produced an inversion run: the model, layer, dtype and device, and every field of ``cfg``."""
    lm = target.lm
    return dict(model=lm.name, trained=lm.trained, layer=target.spec.depth, head=target.spec.head,
                layer_name=target.name, dtype=str(lm.dtype).replace("torch.", ""), device=str(lm.device),
                **cfg.to_dict())
