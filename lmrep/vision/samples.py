"""The sample images by name: scikit-image's bundled files (read straight from its wheel: no scikit-image import,
no download) and a generated test card. Torch-free, so that `lmrep reconstruct-image --help` lists them and a missing
or unreadable image is refused before torch loads; images.py makes them tensors."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import LmrepError

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


def open_image(spec: str):
    """The PIL image (RGB) of a sample name or an image file other than the generated test card; one line for a
    sample that needs scikit-image, a missing file or one that is not an image."""
    from PIL import Image
    if spec in SAMPLES:
        folder = sample_folder()
        path = folder / SAMPLES[spec] if folder is not None else None
        if path is None or not path.is_file():
            raise LmrepError(f"sample image '{spec}' needs scikit-image (pip install scikit-image); "
                             f"'{GENERATED}' or a file path work without it")
    else:
        path = Path(spec)
        if not path.is_file():
            raise LmrepError(f"image '{spec}' not found: give a file path or one of {', '.join(available())}")
    try:
        return Image.open(path).convert("RGB")
    except OSError as e:
        raise LmrepError(f"cannot read image '{spec}': {e}") from None


def check_images(names: list[str]) -> None:
    """Every image (file or sample name) is checked before any work starts."""
    for name in names:
        if name != GENERATED:
            open_image(name)
