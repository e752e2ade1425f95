"""The sample images by name: scikit-image's bundled files (read straight from its wheel: no scikit-image import,
no download), named sets of them, and a generated test card. Torch-free, so that `lmrep reconstruct-image --help`
lists them and a missing or unreadable image is refused before torch loads; images.py makes them tensors."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import LmrepError

CENTRE = (0.5, 0.5, 1.0)


@dataclass(frozen=True)
class Sample:
    """One image of scikit-image's wheel, and which square of it is taken."""

    file: str  # in skimage/data
    licence: str  # as scikit-image's documentation of the image states it
    square: tuple[float, float, float] = CENTRE  # (x, y, side): side as a share of the shorter edge; x, y where the
    # square sits in what is left over (0: left / top, 0.5: centred, 1: right / bottom)


PD, CC0 = "public domain", "CC0"
SAMPLES = {  # name -> sample; the licences are the ones scikit-image's data module gives for each image
    "astronaut": Sample("astronaut.png", PD),  # NASA
    "brick": Sample("brick.png", CC0),
    "camera": Sample("camera.png", CC0),
    "cell": Sample("cell.png", CC0),
    "chelsea": Sample("chelsea.png", CC0),  # a cat
    "clock": Sample("clock_motion.png", PD),
    "coffee": Sample("coffee.png", CC0),
    "grass": Sample("grass.png", CC0),
    "gravel": Sample("gravel.png", CC0),
    "horse": Sample("horse.png", CC0),
    "hubble": Sample("hubble_deep_field.jpg", PD),  # NASA
    "microaneurysms": Sample("microaneurysms.png", CC0),
    "retina": Sample("retina.jpg", CC0),
    "rocket": Sample("rocket.jpg", PD),  # SpaceX
    "text": Sample("text.png", PD),
    # zoomed regions of five of them: other scenes at the same size
    "astronaut-shuttle": Sample("astronaut.png", PD, (1.0, 0.0, 0.45)),
    "camera-skyline": Sample("camera.png", CC0, (1.0, 0.0, 0.4)),
    "retina-disc": Sample("retina.jpg", CC0, (0.3, 0.5, 0.35)),
    "hubble-corner": Sample("hubble_deep_field.jpg", PD, (0.0, 0.0, 0.4)),
    "rocket-tower": Sample("rocket.jpg", PD, (0.0, 0.0, 0.6)),
    "motorcycle": Sample("motorcycle_left.png", "not stated (Middlebury stereo data)"),
}
# named sets: a set's name stands for its images wherever an image is asked for
SETS = {"public-domain-20": tuple(n for n, s in SAMPLES.items() if s.licence in (PD, CC0))}
GENERATED = "testcard"


def sample_folder() -> Path | None:
    spec = importlib.util.find_spec("skimage")
    return None if spec is None else Path(spec.origin).parent / "data"


def available() -> list[str]:
    """Names that load here: the scikit-image samples and sets if it is installed, and the generated test card."""
    folder = sample_folder()
    have = [n for n, s in SAMPLES.items() if folder is not None and (folder / s.file).is_file()]
    sets = [n for n, members in SETS.items() if set(members) <= set(have)]
    return have + sets + [GENERATED]


def expand(names: list[str]) -> list[str]:
    """Image arguments with every set's name replaced by its images, in order, each image once."""
    return list(dict.fromkeys(m for n in names for m in SETS.get(n, (n,))))


def open_image(spec: str):
    """The PIL image (RGB) of a sample name or an image file other than the generated test card, and the square of
    it to take; one line for a set's name, a sample that needs scikit-image, a missing file or one that is not an
    image."""
    from PIL import Image
    if spec in SETS:
        raise LmrepError(f"'{spec}' is a set of {len(SETS[spec])} images: expand it first (samples.expand)")
    square = CENTRE
    if spec in SAMPLES:
        folder = sample_folder()
        path = folder / SAMPLES[spec].file if folder is not None else None
        if path is None or not path.is_file():
            raise LmrepError(f"sample image '{spec}' needs scikit-image (pip install scikit-image); "
                             f"'{GENERATED}' or a file path work without it")
        square = SAMPLES[spec].square
    else:
        path = Path(spec)
        if not path.is_file():
            raise LmrepError(f"image '{spec}' not found: give a file path or one of {', '.join(available())}")
    try:
        return Image.open(path).convert("RGB"), square
    except OSError as e:
        raise LmrepError(f"cannot read image '{spec}': {e}") from None


def check_images(names: list[str]) -> None:
    """Every image (file, sample or set name) is checked before any work starts."""
    for name in expand(names):
        if name != GENERATED:
            open_image(name)
