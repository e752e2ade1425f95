"""Vision: language-model blocks seen through a ViT patch stem, feature visualisation, image reconstruction.

    vit = load_vit("vit-b16")                         # or "vit-l16", "dinov2-s14" (trained), a hub name, a folder
    hybrid = Hybrid(vit, load_model("gpt2", untrained=True), HybridConfig(causal=True))
    O = hybrid.at(4)                                   # images (B, 3, 224, 224) -> (B, 196, 768)
    render({O.name: O}, [neuron(O.name, 7)], pixel_image((1, 3, 224, 224)), gaussian_blur())
    reconstruct(vit_layer_model(vit, 6), image, ReconstructConfig())

The names below are imported on first use (PEP 562): the configs (config.py) are read and checked before torch loads.
"""
from ..lazy import lazy

__all__ = ["Hybrid", "HybridConfig", "LoadedViT", "Objective", "ReconstructConfig", "RenderConfig", "compose",
           "fft_image", "gaussian_blur", "image_metrics", "jitter", "load_vit", "neuron", "neuron_at", "octave_jitter",
           "patch", "pixel_image", "reconstruct", "render", "vit_layer_model"]
__getattr__, __dir__ = lazy(__name__, {
    "HybridConfig": "config", "ReconstructConfig": "config", "RenderConfig": "config", "Hybrid": "hybrid",
    "Objective": "objectives", "neuron": "objectives", "neuron_at": "objectives", "patch": "objectives",
    "fft_image": "param", "pixel_image": "param", "image_metrics": "reconstruct", "reconstruct": "reconstruct",
    "render": "render", "compose": "transforms", "gaussian_blur": "transforms", "jitter": "transforms",
    "octave_jitter": "transforms", "LoadedViT": "vit", "load_vit": "vit", "vit_layer_model": "vit"})
