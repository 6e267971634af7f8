"""Write extra real photos that ship inside scikit-image into work/photos/ (tf venv).

Why: the ten sample photos alone are a thin calibration set. Quantization
ranges should come from varied real pictures (textures, night sky, coins, a
clock, text on paper, a second motorcycle view...), not only from the photos
we later test on. These photos are used at build time only and never committed.
Every one ships in the scikit-image wheel, so nothing is downloaded.
Greyscale photos are kept (converted to RGB): black-and-white photos exist.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import skimage.data
from common import EXTRA_PHOTOS
from PIL import Image

# name -> function returning the photo; all bundled with scikit-image 0.26 (no download).
SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "brick": skimage.data.brick,
    "clock": skimage.data.clock,
    "coins": skimage.data.coins,
    "grass": skimage.data.grass,
    "gravel": skimage.data.gravel,
    "hubble_deep_field": skimage.data.hubble_deep_field,
    "moon": skimage.data.moon,
    "text": skimage.data.text,
    "motorcycle_right": lambda: skimage.data.stereo_motorcycle()[1],
}


def main() -> None:
    EXTRA_PHOTOS.mkdir(parents=True, exist_ok=True)
    for name, load in SOURCES.items():
        array = np.asarray(load())
        image = Image.fromarray(array).convert("RGB")
        image.save(EXTRA_PHOTOS / f"{name}.png")
        print(f"  {name}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
