"""Layer outputs by name: the function O_l(e) that inversion, walks and feature visualisation all read.

One naming grammar, resolved here and nowhere else (blocks are 0-indexed, as in TransformerLens):

    blocks.{i}.hook_resid_pre    residual stream entering block i (i = 0: token + position embeddings)
    blocks.{i}.hook_resid_post   residual stream after block i, raw (no final norm, even for the last block)
    ln_final.hook_normalized     after all blocks and the final norm (what transformers returns as hidden_states[-1])
    logits                       the full model's logits
    blocks.{i}.logits            the page's "AbbreviatedGPT": blocks 0..i, final norm, LM head
    blocks.{i}.logits_nonorm     the original scripts' variant: blocks 0..i, LM head without the final norm

Numerically, ``--layer k`` means "after the first k blocks" (k = 0 .. n_layers), and ``--head`` picks what follows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from .architectures import residual
from ..errors import LmrepError
from .load import LoadedModel

HEADS = ("none", "norm", "logits", "logits_nonorm")
HEAD_HELP = "what follows the blocks: none, the final norm, norm + LM head (logits), the LM head alone (logits_nonorm)"


@dataclass(frozen=True)
class LayerSpec:
    depth: int  # how many blocks run, 0 .. n_layers
    head: str = "none"  # what follows the blocks: one of HEADS

    @property
    def has_norm(self) -> bool:
        """The final norm follows the blocks."""
        return self.head in ("norm", "logits")

    @property
    def has_lm_head(self) -> bool:
        """The LM head follows the blocks (the output is logits, (B, T, V))."""
        return self.head in ("logits", "logits_nonorm")

    def name(self, n_layers: int) -> str:
        if self.head == "none":
            return f"blocks.{self.depth - 1}.hook_resid_post" if self.depth else "blocks.0.hook_resid_pre"
        if self.depth == n_layers:
            return {"norm": "ln_final.hook_normalized", "logits": "logits"}.get(
                self.head, f"blocks.{n_layers - 1}.{self.head}")
        return f"blocks.{self.depth - 1}.{'hook_normalized' if self.head == 'norm' else self.head}"


def resolve_layer(layer: int | str, n_layers: int, head: str = "none") -> LayerSpec:
    """A depth (int or digit string) plus a head, or a name of the grammar above -> LayerSpec, checked."""
    if head not in HEADS:
        raise LmrepError(f"unknown head '{head}': choose one of {', '.join(HEADS)}")
    if isinstance(layer, str) and not re.fullmatch(r"-?\d+", layer.strip()):
        return _parse_name(layer.strip(), n_layers)
    depth = int(layer)
    if not 0 <= depth <= n_layers:
        raise LmrepError(f"layer {depth} is out of range: this model has {n_layers} blocks, so use 0..{n_layers}")
    if depth == 0 and head != "none":
        raise LmrepError("a head needs at least one block before it: use --layer 1 or more with --head")
    return LayerSpec(depth, head)


def _parse_name(name: str, n: int) -> LayerSpec:
    fixed = {"ln_final.hook_normalized": LayerSpec(n, "norm"), "logits": LayerSpec(n, "logits")}
    if name in fixed:
        return fixed[name]
    m = re.fullmatch(r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_normalized|logits|logits_nonorm)", name)
    if not m:
        raise LmrepError(f"unknown layer name '{name}': use a number 0..{n} or a name like blocks.3.hook_resid_post, "
                         "ln_final.hook_normalized, logits")
    i, what = int(m.group(1)), m.group(2)
    if i >= n:
        raise LmrepError(f"layer name '{name}' is out of range: block indices are 0..{n - 1}")
    if what == "hook_resid_pre":
        return LayerSpec(i)
    return LayerSpec(i + 1, {"hook_resid_post": "none", "hook_normalized": "norm"}.get(what, what))


class LayerModel(nn.Module):
    """O_l: input token embeddings (B, T, d) -> the named layer output (B, T, D).

    Runs the model's own embedding-side code (position embeddings, rotary tables, causal, sliding-window and padding
    masks, position ids, an optional key/value cache) and stops after ``spec.depth`` blocks
    (lmrep.models.architectures.residual), so it agrees with the full model's hidden states by construction; every model
    is checked once on load (lmrep.models.selfcheck).
    """

    def __init__(self, lm: LoadedModel, spec: LayerSpec):
        super().__init__()
        if spec.depth > lm.n_layers:
            raise LmrepError(f"layer {spec.depth} is out of range: use 0..{lm.n_layers}")
        width = getattr(lm.config, "hidden_size", None)
        if spec.head == "logits_nonorm" and width and lm.lm_head.weight.shape[-1] != width:
            raise LmrepError(f"--head logits_nonorm: {lm.name}'s LM head takes width {lm.lm_head.weight.shape[-1]} "
                             f"but its blocks make width {width} (a projection follows them); use --head logits")
        self.lm, self.spec = lm, spec
        self.name = spec.name(lm.n_layers)

    def residual(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """Residual stream after ``spec.depth`` blocks, (B, T, d). ``attention_mask`` (B, T) marks real tokens
        (right or left padding); extra keywords go to the base model (``position_ids``, ``past_key_values``,
        ``use_cache``)."""
        return residual(self.lm.base, self.lm.blocks, self.spec.depth, embeds, attention_mask, **kw)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
        return self.head(self.residual(embeds, attention_mask, **kw))

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """What follows the blocks, applied to a residual stream (..., d): norm and/or LM head, per ``spec``."""
        if self.spec.has_norm:
            h = self.lm.final_norm(h)
        if self.spec.has_lm_head:
            h = self.lm.logits(h)  # (..., V)
        return h


def layer_model(lm: LoadedModel, layer: int | str, head: str = "none") -> LayerModel:
    """The public way to get O_l: ``layer_model(lm, 3)`` or ``layer_model(lm, "blocks.2.hook_resid_post")``."""
    return LayerModel(lm, resolve_layer(layer, lm.n_layers, head))
