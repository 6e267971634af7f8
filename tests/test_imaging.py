"""Decoding: real photos in every mode and format, orientation, draft mode, and every kind of bad file."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgetag.errors import PhotoError
from edgetag.imaging import ImageLimits, Placement, decode, fit, load_photo, read_photo_file
from tests.conftest import SAMPLES, jpeg_bytes, png_of

WORKING_SIDE = 300
LIMITS = ImageLimits()


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decode_bytes(data: bytes) -> Image.Image:
    return decode(data, "test", WORKING_SIDE, LIMITS).image


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.jpg")), ids=lambda p: p.name)
def test_every_sample_decodes_to_rgb_at_working_size(path: Path) -> None:
    with Image.open(path) as original:
        width, height = original.size
    photo = load_photo(path, WORKING_SIDE, LIMITS)
    assert (photo.width, photo.height) == (width, height)
    assert photo.image.mode == "RGB"
    assert photo.format == "JPEG"
    assert min(photo.image.size) == min(WORKING_SIDE, width, height)
    assert abs(photo.image.width / photo.image.height - width / height) < 0.01


def test_a_12_megapixel_jpeg_is_decoded_in_draft_mode_at_a_fraction_of_its_size() -> None:
    with Image.open(SAMPLES / "coffee.jpg") as small:
        big = small.convert("RGB").resize((4056, 3040))
    photo = decode(jpeg_bytes(big, quality=90), "12mp.jpg", WORKING_SIDE, LIMITS)
    assert (photo.width, photo.height) == (4056, 3040)
    assert photo.decoded_size == (507, 380)  # DCT scaling by 1/8: decoded at 1/64 of the pixels
    assert photo.image.size == (400, 300)


def test_a_large_png_is_decoded_whole_then_shrunk_to_the_working_size() -> None:
    data = encode(Image.new("RGB", (2500, 1800), "green"), "PNG")
    photo = decode(data, "big.png", WORKING_SIDE, LIMITS)
    assert (photo.width, photo.height) == photo.decoded_size == (2500, 1800)  # PNG has no draft mode
    assert photo.image.size == (417, 300)
    assert photo.format == "PNG"


def test_a_photo_smaller_than_the_models_is_kept_as_it_is() -> None:
    photo = decode(encode(Image.new("RGB", (200, 120), "green"), "PNG"), "small.png", WORKING_SIDE, LIMITS)
    assert photo.image.size == photo.decoded_size == (200, 120)


@pytest.mark.parametrize(
    ("orientation", "displayed"), [(1, (40, 20)), (3, (40, 20)), (6, (20, 40)), (8, (20, 40))]
)
def test_exif_orientation_is_applied(orientation: int, displayed: tuple[int, int]) -> None:
    stored = Image.new("RGB", (40, 20), "blue")
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo = decode(jpeg_bytes(stored, exif=exif, quality=95), "o.jpg", WORKING_SIDE, LIMITS)
    assert (photo.width, photo.height) == displayed
    pixels = np.asarray(photo.image).astype(int)
    red_corner = {1: (0, 0), 3: (-1, -1), 6: (0, -1), 8: (-1, 0)}[orientation]  # (row, column)
    assert pixels[red_corner][0] > 200 and pixels[red_corner][2] < 60


def test_broken_exif_does_not_lose_the_photo() -> None:
    data = bytearray(jpeg_bytes(Image.new("RGB", (64, 48), "white"), exif=b"Exif\x00\x00MM\x00*garbage"))
    photo = decode(bytes(data), "weird-exif.jpg", WORKING_SIDE, LIMITS)
    assert (photo.width, photo.height) == (64, 48)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("I;16", "PNG"),
        ("RGB", "WEBP"),
    ],
)
def test_every_colour_mode_becomes_rgb(mode: str, fmt: str) -> None:
    with Image.open(SAMPLES / "chelsea.jpg") as photo:
        source = photo.convert("RGB")
    converted = (
        source.convert("I").point(lambda v: v * 256).convert("I;16")
        if mode == "I;16"
        else source.convert(mode)
    )
    image = decode_bytes(encode(converted, fmt))
    assert image.mode == "RGB"
    assert image.size == source.size
    brightness = np.asarray(image).mean()
    assert 40 < brightness < 220, "the conversion kept the picture, not a black or white sheet"


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    image.putpixel((0, 0), (0, 0, 255, 255))
    result = np.asarray(decode_bytes(encode(image, "PNG")))
    assert tuple(result[5, 5]) == (255, 255, 255)
    assert tuple(result[0, 0]) == (0, 0, 255)


def test_unsupported_format_is_named() -> None:
    with pytest.raises(PhotoError, match="GIF images are not supported") as error:
        decode_bytes(encode(Image.new("RGB", (8, 8)), "GIF"))
    assert error.value.reason == "unsupported-format"


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "empty file"),
        ("corrupt", "truncated or corrupt"),
        ("not-an-image", "not an image"),
        ("too-many-pixels", r"20000x20000 pixels \(400 MP\) is over the 50 MP limit"),
        ("too-large", "over the 52,428,800-byte limit"),
    ],
)
def test_bad_files_get_a_clear_reason(bad_files: dict[str, Path], kind: str, message: str) -> None:
    with pytest.raises(PhotoError, match=message) as error:
        load_photo(bad_files[kind], WORKING_SIDE, LIMITS)
    assert error.value.reason == kind


def test_missing_file_and_directory_and_fifo(tmp_path: Path) -> None:
    with pytest.raises(PhotoError, match="no such file"):
        read_photo_file(tmp_path / "nope.jpg", LIMITS)
    with pytest.raises(PhotoError, match="is a directory"):
        read_photo_file(tmp_path, LIMITS)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening for reading does not block
    try:
        with pytest.raises(PhotoError, match="not a regular file"):
            read_photo_file(fifo, LIMITS)
    finally:
        os.close(fd)


def test_limits_are_configurable() -> None:
    data = (SAMPLES / "chelsea.jpg").read_bytes()
    with pytest.raises(PhotoError, match="over the 1,000-byte limit"):
        decode(data, "c.jpg", WORKING_SIDE, ImageLimits(max_bytes=1000))
    with pytest.raises(PhotoError, match=r"451x300 pixels \(0.1 MP\) is over the 0.1 MP limit"):
        decode(data, "c.jpg", WORKING_SIDE, ImageLimits(max_pixels=100_000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_photos_either_decode_or_raise_a_photo_error(data: st.DataObject) -> None:
    original = bytearray((SAMPLES / "chelsea.jpg").read_bytes()[:6000])
    damage = data.draw(
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), max_size=12)
    )
    for offset, value in damage:
        original[offset] = value
    cut = data.draw(st.integers(1, len(original)))
    try:
        decode(bytes(original[:cut]), "damaged.jpg", WORKING_SIDE, LIMITS)
    except PhotoError as error:
        assert str(error)
        header_refusals = {"too-many-pixels", "bad-aspect-ratio", "too-much-memory"}
        assert error.reason in {"corrupt", "not-an-image", "unsupported-format", *header_refusals}


def test_fit_modes_and_placement() -> None:
    image = Image.new("RGB", (400, 200), "white")
    stretched, placement = fit(image, 100, 100, "stretch")
    assert stretched.shape == (1, 100, 100, 3) and stretched.dtype == np.uint8
    assert placement == Placement()
    cropped, _ = fit(image, 50, 50, "center-crop")
    assert cropped.shape == (1, 50, 50, 3)
    boxed, placement = fit(image, 100, 100, "letterbox")
    assert boxed.shape == (1, 100, 100, 3)
    assert boxed[0, 10, 50].tolist() == [0, 0, 0]  # padding above the photo
    assert boxed[0, 50, 50].tolist() == [255, 255, 255]
    # The whole letterboxed photo maps back onto the whole photo.
    inner = np.array([[0.0, 0.25, 1.0, 0.75]], dtype=np.float32)
    assert placement.to_photo(inner).tolist() == [[0.0, 0.0, 1.0, 1.0]]


# --- decompression bombs: memory, not just pixels ---------------------------------------------------


@pytest.fixture(scope="session")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shapes of issue 11: each a small file that decodes to hundreds of MB or more."""
    folder = tmp_path_factory.mktemp("bombs")
    files = {
        "lossless-rgba.webp": encode(Image.new("RGBA", (7000, 7000)), "WEBP", lossless=True),  # 1.9 KB
        "tall.png": png_of(1, 50_000_000, 0, 1),  # 97 KB
        "rgba-49mp.png": png_of(7000, 7000, 6, 4),  # 190 KB
        "48mp.webp": encode(Image.new("RGB", (8000, 6000), "olive"), "WEBP", quality=80),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("lossless-rgba.webp", "too-much-memory"),
        ("tall.png", "bad-aspect-ratio"),
        ("rgba-49mp.png", "too-much-memory"),
        ("48mp.webp", "too-much-memory"),
    ],
)
def test_decompression_bombs_are_refused_from_their_header(
    bombs: dict[str, Path], name: str, reason: str
) -> None:
    with pytest.raises(PhotoError) as error:
        load_photo(bombs[name], WORKING_SIDE, LIMITS)
    assert error.value.reason == reason
    assert "MB, over the 192 MB limit" in str(error.value) or "aspect ratio" in str(error.value)


# A fresh interpreter starts the command and prints its peak RSS: measured from the test process
# itself, the child's figure would include the test process's own memory (vfork shares it until exec).
PEAK_RSS = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)
"""


def test_edgetag_tag_stays_under_300_mb_on_every_bomb(bombs: dict[str, Path]) -> None:
    """The whole command, models included, measured by the kernel (the child's peak RSS)."""
    command = [sys.executable, "-m", "edgetag", "tag", *map(str, bombs.values()), str(SAMPLES / "coffee.jpg")]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command], check=False, capture_output=True, text=True, timeout=120
    )
    messages, last = done.stderr.rstrip().rsplit("\n", 1)
    exit_code, peak_kib = map(int, last.split())
    assert exit_code == 1, messages
    assert "coffee.jpg: Image may contain: coffee" in done.stdout, "the good photo is still tagged"
    for name in bombs:
        assert f"{name}: decoding this" in messages or f"{name}: 1x50000000" in messages, messages
    assert peak_kib / 1024 < 300, f"peak RSS {peak_kib / 1024:.0f} MB"
