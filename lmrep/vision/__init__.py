"""Vision: language-model blocks seen through a ViT patch stem, feature visualisation, image reconstruction.

    vit = load_vit("vit-b16")                         # or "vit-l16", "dinov2-s14" (trained), a hub name, a folder
    hybrid = Hybrid(vit, load_model("gpt2", untrained=True), HybridConfig(causal=True))
    O = hybrid.at(4)                                   # images (B, 3, 224, 224) -> (B, 196, 768)
    render({O.name: O}, [neuron(O.name, 7)], pixel_image((1, 3, 224, 224)), gaussian_blur())
    reconstruct(vit_layer_model(vit, 6), image, ReconstructConfig())
"""
from .hybrid import Hybrid, HybridConfig
from .objectives import Objective, neuron, neuron_at, patch
from .param import fft_image, pixel_image
from .reconstruct import ReconstructConfig, image_metrics, reconstruct
from .render import RenderConfig, render
from .transforms import compose, gaussian_blur, jitter, octave_jitter
from .vit import LoadedViT, load_vit, vit_layer_model

__all__ = ["Hybrid", "HybridConfig", "LoadedViT", "Objective", "ReconstructConfig", "RenderConfig", "compose",
           "fft_image", "gaussian_blur", "image_metrics", "jitter", "load_vit", "neuron", "neuron_at", "octave_jitter",
           "patch", "pixel_image", "reconstruct", "render", "vit_layer_model"]
