"""The page's hybrid: a ViT's patch stem feeding the blocks of a language model of the same width.

An image (B, 3, H, W) becomes N = (H/p)(W/p) patch tokens, left to right and top to bottom, which go into the LM as
``inputs_embeds``; the LM side is ``lmrep.models.layers.layer_model``, so layer names and depths are the LMs' own. Three
switches say where order information can come from, so the page's "left to right, top to bottom" pattern can be
tested against its obvious cause:

    vit_positions   add the ViT's learned patch positions in the stem
    lm_positions    let the LM add its own positions (GPT-2's wpe; for rotary LMs, position ids 0..N-1)
    causal          the LM's causal mask; off, every patch attends to every patch
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import LmrepError
from ..models.layers import layer_model
from ..models.load import LoadedModel
from .config import HybridConfig
from .vit import LoadedViT, load_vit, stem_for

log = logging.getLogger(__name__)


class Hybrid:
    """ViT patch stem + LM blocks. ``hybrid.at(layer)`` gives O_l: images -> that LM layer's output (B, N, D)."""

    def __init__(self, vit: LoadedViT, lm: LoadedModel, cfg: HybridConfig = HybridConfig()):
        if vit.d_model != lm.d_model:
            raise LmrepError(f"the stem of {vit.name} makes tokens of width {vit.d_model} but {lm.name} takes "
                             f"width {lm.d_model}: pair models of the same width (--vit auto builds a stem of the "
                             "LM's width; vit-b16 with gpt2); lmrep never projects between widths")
        self.vit, self.lm, self.cfg = vit, lm, cfg

    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The stem: images (B, 3, H, W) in [0, 1] -> patch tokens (B, N, d)."""
        x = self.vit.patch_tokens(images, positions=self.cfg.vit_positions)
        self.check_patches(x.shape[1])
        return x.to(self.lm.dtype)

    def check_patches(self, n: int) -> None:
        """An image of ``n`` patches must fit in the LM's positions."""
        if n > self.lm.max_positions:
            raise LmrepError(f"{n} patches but {self.lm.name} takes at most {self.lm.max_positions} positions: use "
                             "a smaller --image-size")

    def at(self, layer: int | str, head: str = "none") -> "HybridLayer":
        return HybridLayer(self, layer_model(self.lm, layer, head))

    def lm_inputs(self, tokens: torch.Tensor) -> dict:
        """Keyword arguments for the LM's forward that carry the mask and position switches."""
        B, T, _ = tokens.shape
        kw = {}
        if not self.cfg.causal:  # a 4D mask is used as given: additive zeros = every patch sees every patch
            kw["attention_mask"] = torch.zeros(B, 1, T, T, device=tokens.device, dtype=tokens.dtype)
        if not self.cfg.lm_positions and self.lm.position_module is None:
            kw["position_ids"] = torch.zeros(B, T, dtype=torch.long, device=tokens.device)  # rotation by 0
        return kw


class HybridLayer(nn.Module):
    """O_l of the hybrid: images (B, 3, H, W) -> the named LM layer output (B, N, D)."""

    def __init__(self, hybrid: Hybrid, target: nn.Module):
        super().__init__()
        self.hybrid, self.target = hybrid, target
        self.name = target.name
        self.spec = target.spec

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.hybrid.tokens(images)  # (B, N, d)
        with _without_learned_positions(self.hybrid.lm, off=not self.hybrid.cfg.lm_positions):
            return self.target(x, **self.hybrid.lm_inputs(x))


@contextmanager
def _without_learned_positions(lm: LoadedModel, off: bool):
    """While active, the LM's learned position table (GPT-2's wpe, OPT's embed_positions) contributes zeros; the
    hook is always removed."""
    wpe = lm.position_module
    if not off or wpe is None:
        yield
        return
    handle = wpe.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    try:
        yield
    finally:
        handle.remove()


def build_hybrid(lm: LoadedModel, vit: str, cfg: HybridConfig, lm_name: str, vit_untrained: bool = False,
                 seed: int = 0, device: str | None = "cpu", dtype: str = "float32") -> Hybrid:
    """``lm`` behind the patch stem ``vit`` (a known ViT, auto, a hub name or a folder; ``lm_name`` is the name
    the LM was asked for, which picks the auto stem), saying which stem was used and why (the default stem is
    untrained)."""
    name, why = stem_for(vit, lm.d_model, lm_name)
    if vit_untrained and name.startswith("vit-"):
        raise LmrepError(f"--vit-untrained does nothing with {name} (its weights are untrained already): leave it out")
    stem = load_vit(name, untrained=vit_untrained, seed=seed, device=device, dtype=dtype)
    hybrid = Hybrid(stem, lm, cfg)
    log.info("stem %s (%s), %s; LM %s (%s)", stem.name, "trained" if stem.trained else "untrained", why, lm.name,
             "trained" if lm.trained else "untrained")
    return hybrid
