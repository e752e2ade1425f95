"""Layer outputs by name: the function O_l(e) that inversion, walks and feature visualisation all read.

One naming grammar, resolved here and nowhere else (blocks are 0-indexed, as in TransformerLens):

    blocks.{i}.hook_resid_pre    residual stream entering block i (i = 0: token + position embeddings)
    blocks.{i}.hook_resid_post   residual stream after block i, raw (no final norm, even for the last block)
    ln_final.hook_normalized     after all blocks and the final norm (what transformers returns as hidden_states[-1])
    logits                       the full model's logits
    blocks.{i}.logits            the page's "AbbreviatedGPT": blocks 0..i, final norm, LM head
    blocks.{i}.logits_nonorm     the original scripts' variant: blocks 0..i, LM head without the final norm
    blocks.{i}.attn.hook_k       block i's attention keys, as its key/value cache holds them (after rotary
    blocks.{i}.attn.hook_v       positions, grouped-query heads as stored), heads side by side (T, heads * head_dim);
    blocks.{i}.attn.hook_kv      hook_kv: keys then values. A suffix ``[0,2]`` keeps only those heads.

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
from .names import HEADS

CACHED = ("k", "v", "kv")  # what of block i's key/value cache a layer name can read


@dataclass(frozen=True)
class LayerSpec:
    depth: int  # how many blocks run, 0 .. n_layers
    head: str = "none"  # what follows the blocks: one of HEADS
    cached: str = ""  # "" for the residual stream, else what of the last block's key/value cache: one of CACHED
    heads: tuple[int, ...] | None = None  # the cache's heads kept (None: all)

    @property
    def has_norm(self) -> bool:
        """The final norm follows the blocks."""
        return self.head in ("norm", "logits")

    @property
    def has_lm_head(self) -> bool:
        """The LM head follows the blocks (the output is logits, (B, T, V))."""
        return self.head in ("logits", "logits_nonorm")

    def name(self, n_layers: int) -> str:
        if self.cached:
            kept = "" if self.heads is None else "[" + ",".join(map(str, self.heads)) + "]"
            return f"blocks.{self.depth - 1}.attn.hook_{self.cached}{kept}"
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
    m = re.fullmatch(r"blocks\.(\d+)\.attn\.hook_(kv|k|v)(?:\[(\d+(?:,\d+)*)\])?", name)
    if m:
        i, heads = int(m.group(1)), m.group(3)
        if i >= n:
            raise LmrepError(f"layer name '{name}' is out of range: block indices are 0..{n - 1}")
        kept = tuple(sorted({int(h) for h in heads.split(",")})) if heads else None
        return LayerSpec(i + 1, "none", m.group(2), kept)
    m = re.fullmatch(r"blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_normalized|logits|logits_nonorm)", name)
    if not m:
        raise LmrepError(f"unknown layer name '{name}': use a number 0..{n} or a name like blocks.3.hook_resid_post, "
                         "ln_final.hook_normalized, logits, blocks.3.attn.hook_kv")
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
        if spec.cached:
            kv_heads = cache_shape(lm, spec.depth - 1)[0]
            if spec.heads and max(spec.heads) >= kv_heads:
                raise LmrepError(f"{self.name}: {lm.name}'s key/value cache has {kv_heads} heads, so use heads "
                                 f"0..{kv_heads - 1}")

    def residual(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """Residual stream after ``spec.depth`` blocks, (B, T, d). ``attention_mask`` (B, T) marks real tokens
        (right or left padding); extra keywords go to the base model (``position_ids``, ``past_key_values``,
        ``use_cache``)."""
        return residual(self.lm.base, self.lm.blocks, self.spec.depth, embeds, attention_mask, **kw)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
        if self.spec.cached:
            return self.cached(embeds, attention_mask, **kw)
        return self.head(self.residual(embeds, attention_mask, **kw))

    def cached(self, embeds: torch.Tensor, attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
        """The last block's keys and/or values for the positions of ``embeds``, (B, T, heads * head_dim) each, read
        from the key/value cache the model fills (a fresh one unless ``past_key_values`` brings the prefix's)."""
        from transformers import DynamicCache
        T = embeds.shape[1]
        cache = kw.pop("past_key_values", None)
        cache = DynamicCache() if cache is None else cache
        kw["use_cache"] = True
        self.residual(embeds, attention_mask, past_key_values=cache, **kw)
        layer = cache.layers[self.spec.depth - 1]
        parts = {"k": [layer.keys], "v": [layer.values], "kv": [layer.keys, layer.values]}[self.spec.cached]
        out = []
        for x in parts:  # (B, H, T_all, hd)
            x = x[:, :, -T:] if self.spec.heads is None else x[:, list(self.spec.heads), -T:]
            out.append(x.transpose(1, 2).flatten(2))  # (B, T, H * hd)
        return torch.cat(out, -1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """What follows the blocks, applied to a residual stream (..., d): norm and/or LM head, per ``spec``."""
        if self.spec.has_norm:
            h = self.lm.final_norm(h)
        if self.spec.has_lm_head:
            h = self.lm.logits(h)  # (..., V)
        return h


@torch.no_grad()
def cache_shape(lm: LoadedModel, block: int) -> tuple[int, int]:
    """(heads, head size) of block ``block``'s key/value cache, as the model fills it (one probe position; config
    fields disagree across architectures: grouped-query heads, explicit head sizes, fused projections)."""
    def probe():
        from transformers import DynamicCache
        cache = DynamicCache()
        residual(lm.base, lm.blocks, block + 1, lm.embedding_matrix[:1][None], use_cache=True, past_key_values=cache)
        return tuple(cache.layers[block].keys.shape[1::2])  # (B, H, T, hd) -> (H, hd)
    return lm.memo(("cache-shape", block), probe)


def cache_width(lm: LoadedModel, spec: LayerSpec) -> int:
    """Values per position of a layer that reads the key/value cache: kept heads x head size (x 2 for hook_kv)."""
    heads, head_dim = cache_shape(lm, spec.depth - 1)
    kept = heads if spec.heads is None else len(spec.heads)
    return kept * head_dim * (2 if spec.cached == "kv" else 1)


def layer_model(lm: LoadedModel, layer: int | str, head: str = "none") -> LayerModel:
    """The public way to get O_l: ``layer_model(lm, 3)`` or ``layer_model(lm, "blocks.2.hook_resid_post")``."""
    return LayerModel(lm, resolve_layer(layer, lm.n_layers, head))
