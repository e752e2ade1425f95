"""What `lmrep reconstruct-image` reconstructs from: the hybrid's LM layers and a whole ViT's, each model at the
image side its patches allow, checked before any work; then the run folder and the run."""
from __future__ import annotations

from typing import Callable

from ..errors import LmrepError
from ..models.layers import resolve_layer
from ..records.folder import RunDir
from .hybrid import Hybrid
from .config import ReconstructConfig
from .reconstruct import Subject, reconstruct_all
from .vit import load_vit, vit_layer_model


def layers(given: list[str] | None, n: int, quick: bool) -> list[str]:
    """Layers to run, each checked (a depth 0..n or a name), in depth order: as given, else 0, 1, n/4, n/2 under
    --quick, else every depth 0..n."""
    if not given:
        return [str(k) for k in (sorted({0, 1, n // 4, n // 2}) if quick else range(n + 1))]
    specs = {resolve_layer(x, n): x for x in given}  # the same layer twice runs once
    return [specs[s] for s in sorted(specs, key=lambda s: (s.depth, s.head))]


def side(size: int, patch: int) -> int:
    """The image side a model with this patch size gets: ``size`` rounded down to a whole number of patches
    (224 stays 224 for 16- and 14-px patches: 14 x 14 and 16 x 16 patches; 96 gives 96 and 84: 6 x 6 each)."""
    if size < patch:
        raise LmrepError(f"image size {size} is smaller than the patch size {patch}: use --image-size {patch} or more")
    return (size // patch) * patch


def hybrid_subject(hybrid: Hybrid, model: str, size: int, given: list[str] | None, quick: bool) -> Subject:
    """The hybrid's LM layers (``given``, or the default set), at the largest side <= ``size`` its patches fit;
    ``model`` is the LM's name as asked for."""
    lm_layers = layers(given, hybrid.n_layers, quick)
    hybrid_side = side(size, hybrid.vit.patch_size)
    hybrid.check_patches((hybrid_side // hybrid.vit.patch_size) ** 2)
    return Subject(f"{hybrid.vit.name} stem + {model}{'' if hybrid.lm.trained else ' (untrained)'}",
                   hybrid.vit.patch_size, hybrid_side, [hybrid.at(k) for k in lm_layers])


def vit_subject(compare: str, size: int, given: list[str] | None, quick: bool, seed: int = 0,
                device: str | None = "cpu", dtype: str = "float32") -> Subject:
    """The ViT ``compare``, run whole, and its layers (``given``, or the default set)."""
    vit = load_vit(compare, seed=seed, device=device, dtype=dtype)
    vit_layers = [vit_layer_model(vit, k) for k in layers(given, vit.n_layers, quick)]
    return Subject(f"{compare}{'' if vit.trained else ' (untrained)'}", vit.patch_size, side(size, vit.patch_size),
                   vit_layers)


def reconstruct_run(hybrid: Hybrid, subjects: list[Subject], images: list[str], cfg: ReconstructConfig,
                    model: str, compare: str, seed: int, dtype: str, out: str | None = None, new: bool = False,
                    on_record: Callable[[dict], None] | None = None) -> tuple[list[dict], RunDir]:
    """The run folder made from the run's config, then every image from every layer of every subject; returns the
    records and the folder."""
    run_dir = RunDir.create("reconstruct-image", dict(
        reconstruct=cfg.as_dict(), hybrid=hybrid.cfg.as_dict(), model=model, trained=hybrid.lm.trained,
        vit=hybrid.vit.name, compare=compare, image_size={s.label: s.side for s in subjects}, images=images,
        seed=seed, dtype=dtype, layers={s.label: [m.name for m in s.layers] for s in subjects}), out, new=new)
    return reconstruct_all(run_dir, subjects, images, cfg, seed, hybrid.vit.device, on_record), run_dir
