"""Where a causal LM keeps what lmrep reads: its blocks, what runs after them, and its learned positions.

lmrep never re-implements a model: it runs the model's own forward and stops it after block k (``residual``), so
layer outputs agree with the model's own hidden states by construction. What it must know is *where* things are,
and that is per architecture. ``ANATOMY`` says it for the architectures that are tested (keyed by the config's
``model_type``); any other model is searched generically (a ModuleList of ``num_hidden_layers`` blocks, a final
norm by its usual names, a learned position table by its usual names), and the self-check (lmrep.models.selfcheck)
turns a wrong guess into a one-line error instead of a wrong answer.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LmrepError


@dataclass(frozen=True)
class Anatomy:
    """Paths under the base model (``model.base_model``)."""

    blocks: str  # the ModuleList of transformer blocks
    final: tuple[str, ...]  # applied in order after the last block (a path whose module is None is skipped)
    positions: str | None = None  # a learned position table whose rows are added to the token embeddings
    input_projection: str | None = None  # a projection applied to the embeddings before positions are added


ROTARY = Anatomy("layers", ("norm",))
ANATOMY: dict[str, Anatomy] = {
    "gpt2": Anatomy("h", ("ln_f",), positions="wpe"),
    "llama": ROTARY, "mistral": ROTARY, "qwen2": ROTARY, "qwen3": ROTARY, "phi3": ROTARY, "gemma3_text": ROTARY,
    "gpt_neox": Anatomy("layers", ("final_layer_norm",)),
    "opt": Anatomy("decoder.layers", ("decoder.final_layer_norm", "decoder.project_out"),
                   positions="decoder.embed_positions", input_projection="decoder.project_in"),
    "falcon": Anatomy("h", ("ln_f",)),
    "gptj": Anatomy("h", ("ln_f",)),
}
FINAL_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f", "final_norm",
               "decoder.final_layer_norm", "model.norm")
POSITION_NAMES = ("wpe", "embed_positions", "position_embeddings", "decoder.embed_positions")


@dataclass(eq=False)
class Parts:
    """The modules of one loaded model that lmrep reads."""

    blocks: nn.ModuleList
    final: nn.Module  # everything after the last block and before the LM head (Identity if nothing)
    positions: nn.Module | None  # the learned position table, if the model has one
    positions_in_input_space: bool  # its rows add to the embeddings lmrep feeds in (no projection in between)
    known: bool  # found through ANATOMY rather than by search

    def position_rows(self, T: int) -> torch.Tensor | None:
        """What the model adds to the input embeddings at positions 0..T-1, (T, d); None when nothing is added
        there (rotary or ALiBi models, or positions added after an input projection)."""
        if self.positions is None or not self.positions_in_input_space:
            return None
        offset = int(getattr(self.positions, "offset", 0))  # OPT keeps two rows before position 0
        return self.positions.weight[offset:offset + T]


def architecture(model: nn.Module) -> str:
    """How errors name a model's architecture: its class and model type."""
    return f"{type(model).__name__}, model type '{getattr(model.config, 'model_type', '?')}'"


def _get(root: nn.Module, path: str):
    for name in path.split("."):
        root = getattr(root, name, None)
        if root is None:
            return None
    return root


def find_parts(model: nn.Module, label: str) -> Parts:
    """The blocks, final modules and position table of ``model``; a one-line LmrepError if the blocks cannot be
    found (the self-check catches a wrong final norm or position table)."""
    base, config = model.base_model, model.config
    spec = ANATOMY.get(getattr(config, "model_type", None))
    blocks = _get(base, spec.blocks) if spec else None
    if not isinstance(blocks, nn.ModuleList):
        blocks, spec = _search_blocks(base, getattr(config, "num_hidden_layers", None), model, label), None
    if spec:
        final = [m for m in (_get(base, p) for p in spec.final) if m is not None]
        positions, projection = _get(base, spec.positions or ""), _get(base, spec.input_projection or "")
    else:
        final = [m for m in (_get(base, p) for p in FINAL_NAMES) if isinstance(m, nn.Module)][:1]
        positions = next((m for m in (_get(base, p) for p in POSITION_NAMES) if isinstance(m, nn.Embedding)), None)
        projection = _get(base, "decoder.project_in") or _get(base, "project_in")
    final_module = nn.Sequential(*final) if len(final) > 1 else (final[0] if final else nn.Identity())
    return Parts(blocks, final_module, positions, projection is None, known=spec is not None)


def _search_blocks(base: nn.Module, n: int | None, model: nn.Module, label: str) -> nn.ModuleList:
    lists = [(name, m) for name, m in base.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0
             and (n is None or len(m) == n)]
    if n is None and lists:  # no layer count in the config: the longest list
        longest = max(len(m) for _, m in lists)
        lists = [(name, m) for name, m in lists if len(m) == longest]
    if not lists:
        raise LmrepError(f"model '{label}' ({architecture(model)}): cannot find its list of {n} transformer "
                         "blocks; lmrep reads decoder-only causal LMs whose blocks form one list")
    shallowest = min(name.count(".") for name, _ in lists)
    top = [(name, m) for name, m in lists if name.count(".") == shallowest]
    if len(top) > 1:
        raise LmrepError(f"model '{label}' ({architecture(model)}): {len(top)} lists of {n} blocks "
                         f"({', '.join(name for name, _ in top)}); lmrep cannot tell which is the residual stream")
    return top[0][1]


class _Stop(Exception):
    """Raised by a hook to end the forward pass once the wanted block has run."""


@functools.lru_cache(maxsize=None)
def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.forward).parameters


def cache_keyword(model: nn.Module, cache) -> dict:
    """``cache`` as the keyword ``model.forward`` takes it: ``cache`` in newer transformers, ``past_key_values``
    before (the old name still works there, with a deprecation warning)."""
    if not _accepts(type(model), "past_key_values") and _accepts(type(model), "cache"):
        return {"cache": cache}
    return {"past_key_values": cache}


def _block_input(args, kwargs) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


def _block_output(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def residual(base: nn.Module, blocks: nn.ModuleList, depth: int, embeds: torch.Tensor,
             attention_mask: torch.Tensor | None = None, **kw) -> torch.Tensor:
    """The residual stream after ``depth`` blocks, (B, T, d): the base model's own forward on input embeddings
    (B, T, d_in), stopped by a hook. Extra keywords (``position_ids``, ``past_key_values``, ``use_cache``) go to
    the base model.

    A 2-D padding mask without position ids gets position ids counted from it (the first real token is 0), so a
    left-padded prompt is positioned as it is alone; for right padding they equal the defaults. No cache is built
    unless one is asked for."""
    if attention_mask is not None and attention_mask.dim() == 2 and "position_ids" not in kw \
            and _accepts(type(base), "position_ids"):
        kw["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -embeds.shape[1]:]
    if "past_key_values" in kw:
        kw.update(cache_keyword(base, kw.pop("past_key_values")))
    if "use_cache" not in kw and _accepts(type(base), "use_cache"):
        kw["use_cache"] = False
    caught = {}
    if depth == 0:
        def grab(module, args, kwargs):
            caught["h"] = _block_input(args, kwargs)
            raise _Stop
        handle = blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    else:
        def grab(module, args, output):
            caught["h"] = _block_output(output)
            raise _Stop
        handle = blocks[depth - 1].register_forward_hook(grab)
    try:
        base(inputs_embeds=embeds, attention_mask=attention_mask, **kw)
    except _Stop:
        pass
    finally:
        handle.remove()
    if "h" not in caught:
        raise LmrepError(f"the forward pass of {type(base).__name__} never reached block {max(depth - 1, 0)}")
    return caught["h"]


def every_block(base: nn.Module, blocks: nn.ModuleList, embeds: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream entering block 0 and leaving each block, from one full forward pass: n + 1 tensors
    (B, T, d), the first check of where the blocks are."""
    seen: list[torch.Tensor] = []
    handles = [blocks[0].register_forward_pre_hook(lambda m, a, k: seen.append(_block_input(a, k)), with_kwargs=True)]
    handles += [b.register_forward_hook(lambda m, a, out: seen.append(_block_output(out))) for b in blocks]
    try:
        base(inputs_embeds=embeds, **({"use_cache": False} if _accepts(type(base), "use_cache") else {}))
    finally:
        for h in handles:
            h.remove()
    return seen
