"""Bytes -> pixels at the size the models need, with every check a hostile or broken file needs.

A 12 MP JPEG is never decoded at 12 MP: JPEG draft mode (DCT scaling) decodes it at 1/2, 1/4 or 1/8
size, just above what the largest model input needs, which is most of edgetag's speed on a Pi.
Whatever was decoded is then shrunk once to a working image whose shorter side is the largest model
side, so each model's own input is a small, cheap resize of that one image.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from edgetag.errors import PhotoError

# Pillow's own decompression-bomb guard warns at 89 MP and raises at 179 MP with a generic message.
# edgetag checks the declared size itself (ImageLimits) before decoding anything, with a message
# that names the limit, so Pillow's global guard is switched off here, in the one module that decodes.
Image.MAX_IMAGE_PIXELS = None

FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP"}
"""Pillow format names edgetag decodes (MPO is what some cameras call their JPEGs)."""

Fit = Literal["stretch", "center-crop", "letterbox"]

# Errors Pillow raises on broken data besides OSError (PNG chunk errors are SyntaxError, for one).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError)


@dataclass(frozen=True)
class ImageLimits:
    """What edgetag refuses to decode. 50 MP covers 12 MP Pi cameras and 48 MP phone photos."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_decode_bytes: int = 192 * 1024 * 1024
    """Memory a decode may take (estimated from the header): with the models, `edgetag tag` stays under
    300 MB. JPEG is decoded at a reduced size, so only PNG and WebP reach it (about 12 MP of WebP)."""


MAX_ASPECT_RATIO = 50
"""Longer side over shorter side. Panoramas are under 10:1; a 1 x 50,000,000 PNG is a bomb (its
millions of one-pixel rows cost Pillow far more than their pixels)."""

# Peak memory of a decode per byte of decoded pixels, measured with Pillow 11-12: WebP goes through
# libwebp's RGBA canvas and a Python copy of it; PNG and JPEG decode straight into the image, which
# the whole-factor reduce then copies once more.
_DECODE_OVERHEAD = {"JPEG": 2, "PNG": 2, "WebP": 4}


@dataclass(frozen=True)
class Photo:
    """A decoded photo: its real size (as displayed, EXIF orientation applied) and a working image.

    `image` is RGB, upright, and only as large as the models need: its shorter side is the largest
    model input side (or the photo's own, if smaller). `decoded_size` is the size the file was
    actually decoded at (JPEG draft mode makes it a fraction of the photo's).
    """

    name: str
    width: int
    height: int
    format: str
    image: Image.Image
    decoded_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Placement:
    """Where a model's input sits on the photo, to map boxes back: photo = (model - offset) / scale."""

    offset_x: float = 0.0
    offset_y: float = 0.0
    scale_x: float = 1.0
    scale_y: float = 1.0

    def to_photo(self, boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Map [N, 4] boxes (x_min, y_min, x_max, y_max; model-normalized) to photo-normalized."""
        mapped = boxes.astype(np.float32, copy=True)
        mapped[:, 0::2] = (mapped[:, 0::2] - self.offset_x) / self.scale_x
        mapped[:, 1::2] = (mapped[:, 1::2] - self.offset_y) / self.scale_y
        return np.clip(mapped, 0.0, 1.0)


def read_photo_file(path: Path, limits: ImageLimits, *, follow_symlinks: bool = True) -> bytes:
    """Read a photo file whole, refusing what is not a regular, non-empty file under the size limit.

    Opened without blocking (a FIFO with no writer would block a plain open forever) and checked
    with fstat on the open file, so what is read is what was checked. A folder source passes
    follow_symlinks=False: a link planted in a watched folder must not make edgetag read /etc/passwd.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise PhotoError("missing", "no such file") from None
    except PermissionError:
        raise PhotoError("unreadable", "cannot read the file: permission denied") from None
    except OSError as error:
        if error.errno == errno.ELOOP and not follow_symlinks:
            raise PhotoError("not-a-file", "is a symbolic link (not followed in a watched folder)") from None
        raise PhotoError("unreadable", f"cannot read the file: {error.strerror or error}") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        os.close(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise PhotoError("not-a-file", "is a directory, not a photo")
        raise PhotoError("not-a-file", "is not a regular file")
    with os.fdopen(descriptor, "rb") as handle:
        if info.st_size == 0:
            raise PhotoError("empty", "empty file (0 bytes)")
        if info.st_size > limits.max_bytes:
            raise PhotoError(
                "too-large", f"file is {info.st_size:,} bytes, over the {limits.max_bytes:,}-byte limit"
            )
        try:
            return handle.read(limits.max_bytes + 1)
        except OSError as error:
            raise PhotoError("unreadable", f"cannot read the file: {error.strerror or error}") from None


def decode(data: bytes, name: str, working_side: int, limits: ImageLimits) -> Photo:
    """Decode JPEG, PNG or WebP bytes into a Photo whose shorter side is about `working_side`."""
    if not data:
        raise PhotoError("empty", "empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise PhotoError("too-large", f"{len(data):,} bytes is over the {limits.max_bytes:,}-byte limit")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise PhotoError("not-an-image", "not an image edgetag can read (JPEG, PNG or WebP)") from None
    except _DECODE_ERRORS as error:
        raise PhotoError("corrupt", f"corrupt image header ({error})") from None
    if image.format not in FORMATS:
        raise PhotoError(
            "unsupported-format", f"{image.format} images are not supported (JPEG, PNG and WebP are)"
        )
    photo_format = FORMATS[image.format]
    width, height = image.size
    if width <= 0 or height <= 0:
        raise PhotoError("corrupt", f"image declares an impossible size {width}x{height}")
    if width * height > limits.max_pixels:
        raise PhotoError(
            "too-many-pixels",
            f"{width}x{height} pixels ({_megapixels(width * height)}) is over the "
            f"{_megapixels(limits.max_pixels)} limit",
        )
    try:
        image.draft("RGB", (working_side, working_side))  # JPEG only: DCT scaling while decoding
        _check_decode_memory(image, photo_format, limits)
        image.load()
        decoded_size = image.size
        reduced = _shrink(image, working_side)
        upright = _apply_orientation(reduced)
        rgb = _to_rgb(upright)
    except _DECODE_ERRORS as error:
        raise PhotoError("corrupt", f"truncated or corrupt image data ({error})") from None
    if upright.size != reduced.size:  # rotated by 90 degrees: the photo as displayed is height x width
        width, height = height, width
    return Photo(name, width, height, photo_format, rgb, decoded_size)


def _check_decode_memory(image: Image.Image, photo_format: str, limits: ImageLimits) -> None:
    """Refuse, from the header alone, what would take more memory to decode than the budget allows.

    The pixel limit is not enough: a 1.9 KB lossless WebP of 7000x7000 RGBA needs about 800 MB.
    """
    width, height = image.size  # after draft(): the size JPEG will really be decoded at
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise PhotoError(
            "bad-aspect-ratio",
            f"{width}x{height} pixels is over the {MAX_ASPECT_RATIO}:1 aspect ratio edgetag accepts",
        )
    mode = image.mode
    bytes_per_pixel = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    estimate = width * height * bytes_per_pixel * _DECODE_OVERHEAD[photo_format]
    if estimate > limits.max_decode_bytes:
        raise PhotoError(
            "too-much-memory",
            f"decoding this {width}x{height} {mode} {photo_format} would take about "
            f"{estimate / 2**20:,.0f} MB, over the {limits.max_decode_bytes / 2**20:,.0f} MB limit"
            f" ({photo_format} cannot be decoded at a reduced size; models.max_decode_mb raises it)",
        )


def from_image(image: Image.Image, name: str, working_side: int) -> Photo:
    """A photo that is already pixels (a camera frame): no file, no decoding, just the working image."""
    rgb = _to_rgb(image)
    return Photo(name, image.width, image.height, "RGB", _shrink(rgb, working_side), image.size)


def load_photo(path: Path, working_side: int, limits: ImageLimits, name: str | None = None) -> Photo:
    return decode(read_photo_file(path, limits), name or str(path), working_side, limits)


def fit(image: Image.Image, width: int, height: int, how: Fit) -> tuple[npt.NDArray[np.uint8], Placement]:
    """One model input [1, height, width, 3] of uint8 pixels, and where it sits on the photo."""
    if how == "stretch":
        placed, placement = image.resize((width, height), Image.Resampling.BILINEAR), Placement()
    elif how == "center-crop":
        placed, placement = _center_crop(image, width, height), Placement()
    elif how == "letterbox":
        placed, placement = _letterbox(image, width, height)
    else:
        raise ValueError(f"unknown fit {how!r}")
    return np.asarray(placed, dtype=np.uint8)[np.newaxis], placement


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} MP" if pixels >= 10_000_000 else f"{pixels / 1e6:.1f} MP"


def _shrink(image: Image.Image, working_side: int) -> Image.Image:
    """Shrink so the shorter side is working_side: a cheap whole-factor box reduce, then one resize."""
    shorter = min(image.size)
    if shorter <= working_side:
        return image
    factor = shorter // working_side
    if factor >= 2:
        image = image.reduce(factor)
    scale = working_side / min(image.size)
    size = (max(working_side, round(image.width * scale)), max(working_side, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Turn the pixels upright per the EXIF Orientation tag (what every photo viewer does)."""
    try:
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return image  # broken EXIF: tag the photo as stored rather than refuse it


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB: transparency over white, 16-bit and float grey scaled to 8 bits."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        divisor = 257.0 if peak > 255.0 else 1.0  # 16-bit data in a 32-bit mode, or already 8-bit
        grey = np.clip(values / divisor, 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr...


def _center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Largest centered region with the input's aspect ratio, resized in one step."""
    source_w, source_h = image.size
    aspect = width / height
    crop_w, crop_h = (
        (source_h * aspect, source_h) if source_w / source_h > aspect else (source_w, source_w / aspect)
    )
    left, top = (source_w - crop_w) / 2, (source_h - crop_h) / 2
    return image.resize(
        (width, height), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
    )


def _letterbox(image: Image.Image, width: int, height: int) -> tuple[Image.Image, Placement]:
    """The whole photo scaled to fit, centered on black, as MediaPipe pads its face-detector input."""
    source_w, source_h = image.size
    scale = min(width / source_w, height / source_h)
    inner_w, inner_h = max(1, round(source_w * scale)), max(1, round(source_h * scale))
    left, top = (width - inner_w) // 2, (height - inner_h) // 2
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image.resize((inner_w, inner_h), Image.Resampling.BILINEAR), (left, top))
    placement = Placement(left / width, top / height, inner_w / width, inner_h / height)
    return canvas, placement
