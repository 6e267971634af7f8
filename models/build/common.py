"""Shared helpers for the model build: paths, photo loading, input fitting, calibration sets.

Every build step runs in one of the build venvs (torch, tf or the runtime venv);
this module needs only numpy and Pillow, which all three have, so each step
can import it. Nothing here is used by edgetag at run time: the runtime has
its own preprocessing, and the `fit` key of each model card says which of the
three fits below a model expects.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

BUILD = Path(__file__).resolve().parent
MODELS = BUILD.parent
REPO = MODELS.parent
SAMPLES = REPO / "samples"
TEST_MODELS = REPO / "tests" / "data" / "models"
# Scratch space for intermediate files (float models, extra photos, reports).
# Ignored by git (models/build/.gitignore); safe to delete.
WORK = BUILD / "work"
EXTRA_PHOTOS = WORK / "photos"
# Upstream license texts copied from installed packages; write_cards.py assembles
# models/LICENSES/ from them.
LICENSE_TEXTS = WORK / "licenses"

# One fixed seed so that the calibration crops, and so the quantized models,
# come out the same on every run with the same package versions.
CALIBRATION_SEED = 20261124


def sample_photos() -> list[Path]:
    """The committed sample photos (samples/*.jpg), sorted by name."""
    photos = sorted(SAMPLES.glob("*.jpg"))
    if not photos:
        raise FileNotFoundError(f"no sample photos in {SAMPLES}")
    return photos


def extra_photos() -> list[Path]:
    """Extra real photos written by collect_photos.py (more variety for calibration)."""
    return sorted(EXTRA_PHOTOS.glob("*.png"))


def load_rgb(path: Path) -> Image.Image:
    """Open a photo as 8-bit RGB, honouring the EXIF orientation like a photo viewer does."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def fit_center_crop(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to `size`, then cut the central size x size square.

    This is how ImageNet classifiers are evaluated (EfficientNet's own eval
    additionally crops to 87.5 %; we keep the whole shorter side because a photo
    tagger should not throw away the edges of the picture).
    """
    scale = size / min(image.width, image.height)
    width = max(size, round(image.width * scale))
    height = max(size, round(image.height * scale))
    resized = image.resize((width, height), Image.Resampling.BILINEAR)
    left = (width - size) // 2
    top = (height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def fit_stretch(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Resize to width x height ignoring the aspect ratio (how TF OD API SSDs are trained)."""
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


@dataclass(frozen=True)
class Letterbox:
    """Where the photo sits inside the square model input, as fractions of the square."""

    left: float
    top: float
    width: float
    height: float

    def to_photo(self, x: float, y: float) -> tuple[float, float]:
        """Map a normalized point of the square input back to normalized photo coordinates."""
        return (x - self.left) / self.width, (y - self.top) / self.height


def fit_letterbox(image: Image.Image, size: int) -> tuple[np.ndarray, Letterbox]:
    """Scale the photo to fit a size x size square and pad the rest with black.

    MediaPipe's BlazeFace graphs do the same (keep aspect ratio, zero padding), so
    faces keep their shape. Returns the pixels and where the photo landed.
    """
    scale = size / max(image.width, image.height)
    width = max(1, round(image.width * scale))
    height = max(1, round(image.height * scale))
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    left = (size - width) // 2
    top = (size - height) // 2
    canvas.paste(image.resize((width, height), Image.Resampling.BILINEAR), (left, top))
    box = Letterbox(left / size, top / size, width / size, height / size)
    return np.asarray(canvas, dtype=np.uint8), box


def extremes_image(width: int, height: int) -> np.ndarray:
    """A synthetic image whose pixels are exactly 0 and exactly 255 (top half black).

    Adding it to a calibration set makes the observed input range exactly
    [0, 255] (or [-1, 1] after normalization), so the quantized input tensor gets
    a clean scale/zero point (1.0 / -128 for pixels) instead of one that depends
    on the darkest and brightest pixel of the photos.
    """
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[height // 2 :] = 255
    return array


def photo_variants(image: Image.Image, rng: random.Random) -> Iterator[Image.Image]:
    """The photo itself plus a few label-preserving variants for calibration.

    Variants: mirror image, two random crops (35-90 % of the area, so objects
    appear at other scales and positions), a low-resolution version (detail and
    noise lost, like a small or out-of-focus photo) and a darker/brighter one.
    """
    yield image
    yield ImageOps.mirror(image)
    for _ in range(2):
        area = rng.uniform(0.35, 0.9)
        aspect = rng.uniform(0.75, 1.33)
        width = min(image.width, round(image.width * (area * aspect) ** 0.5))
        height = min(image.height, round(image.height * (area / aspect) ** 0.5))
        left = rng.randint(0, image.width - width)
        top = rng.randint(0, image.height - height)
        yield image.crop((left, top, left + width, top + height))
    small = image.resize((max(8, image.width // 6), max(8, image.height // 6)), Image.Resampling.BILINEAR)
    yield small.resize(image.size, Image.Resampling.BILINEAR)
    factor = rng.choice([0.6, 1.4])
    yield Image.fromarray(np.clip(np.asarray(image, np.float32) * factor, 0, 255).astype(np.uint8))


def calibration_photos() -> list[tuple[str, Image.Image]]:
    """All calibration photos (samples + extra photos + variants), deterministic order.

    Returns (description, image) pairs; the description is only for logs.
    """
    rng = random.Random(CALIBRATION_SEED)
    photos: list[tuple[str, Image.Image]] = []
    for path in sample_photos() + extra_photos():
        for index, variant in enumerate(photo_variants(load_rgb(path), rng)):
            photos.append((f"{path.stem}#{index}", variant))
    return photos


def as_float32(pixels: np.ndarray) -> np.ndarray:
    """Pixels as float32 0..255: the input of graphs that take raw pixel values."""
    return pixels.astype(np.float32)


def representative_dataset(
    arrays: Iterable[np.ndarray], transform: Callable[[np.ndarray], np.ndarray] = as_float32
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A TFLite converter's `representative_dataset`: each array transformed, with a batch axis.

    `arrays` are the fitted calibration inputs (uint8 pixels, no batch axis), in order;
    `transform` turns one into what the graph's input takes (float32).
    """

    def dataset() -> Iterator[list[np.ndarray]]:
        for array in arrays:
            yield [transform(array)[np.newaxis]]

    return dataset


def set_full_int8(converter: Any, tf: Any, dataset: Callable[[], Iterator[list[np.ndarray]]]) -> None:
    """Set a TFLite converter up for full-integer int8, calibrated on `dataset`.

    Only int8 builtin kernels (conversion fails rather than leave a float op), and int8
    input and outputs, as every converted model of the pack has. `converter` is a
    `tf.lite.TFLiteConverter` (either API) and `tf` the tensorflow module: this module
    does not import TensorFlow, since only the tf venv has it.
    """
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (what the model cards record)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write a build report (pretty, stable key order) into the work folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_license(distribution: str, member: str, name: str) -> None:
    """Copy a license file out of an installed package's metadata into work/licenses/NAME."""
    text = importlib.metadata.distribution(distribution).read_text(member)
    if not text:
        raise SystemExit(f"{distribution} has no {member}")
    LICENSE_TEXTS.mkdir(parents=True, exist_ok=True)
    (LICENSE_TEXTS / name).write_text(text)


def face_crop(
    box: tuple[float, float, float, float], width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """The square pixel crop edgetag's expression model is fed (edgetag/models/expressions.py).

    `box` is (x_min, y_min, x_max, y_max) in fractions of the photo; the crop is the longer side
    grown by `margin` on each side, centred on the box and shifted to stay on the photo. Kept
    identical to the runtime's so calibration sees the crops the model will see.
    """
    x_min, y_min, x_max, y_max = box
    side = max(max(x_max - x_min, 1e-6) * width, max(y_max - y_min, 1e-6) * height)
    size = side * (1 + 2 * margin)
    center_x, center_y = (x_min + x_max) / 2 * width, (y_min + y_max) / 2 * height
    left = float(np.clip(center_x - size / 2, 0, max(width - size, 0)))
    top = float(np.clip(center_y - size / 2, 0, max(height - size, 0)))
    right, bottom = min(left + size, width), min(top + size, height)
    return round(left), round(top), max(round(right), round(left) + 1), max(round(bottom), round(top) + 1)
