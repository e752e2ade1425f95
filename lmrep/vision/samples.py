"""The sample images by name: scikit-image's bundled files (read straight from its wheel: no scikit-image import,
no download) and a generated test card. Torch-free, so that `lmrep reconstruct-image --help` lists them before torch
loads; images.py loads them."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SAMPLES = {  # name -> file in skimage/data
    "chelsea": "chelsea.png",  # a cat
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
GENERATED = "testcard"


def sample_folder() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    return None if spec is None else Path(spec.origin).parent / "data"


def available() -> list[str]:
    """Names that load here: the scikit-image samples if it is installed, and the generated test card."""
    folder = sample_folder()
    have = [n for n, f in SAMPLES.items() if folder is not None and (folder / f).is_file()]
    return have + [GENERATED]
