"""Shared fixtures: the sample photos, one loaded Tagger per session, and broken files of every kind."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from edgetag.tagger import ModelSettings, Tagger

pytest_plugins = ["tests.broker"]  # real Mosquitto brokers on free ports: broker, auth_broker, tls_broker...

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TEST_MODELS = ROOT / "tests" / "data" / "models"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def tagger() -> Iterator[Tagger]:
    """The stock pack (classifier, person detector, faces), loaded once for the whole session."""
    yield Tagger.from_settings(ModelSettings())


def jpeg_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of(width: int, height: int, colour_type: int, bands: int) -> bytes:
    """A valid 8-bit PNG of black pixels, written row by row: a few hundred KB however large."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width * bands + 1)  # filter byte + pixels
    rows_per_part = max(1, 4_000_000 // len(row))
    parts = []
    for start in range(0, height, rows_per_part):
        parts.append(compressor.compress(row * min(rows_per_part, height - start)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(parts))
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int = 20000) -> bytes:
    """A real, valid greyscale PNG of side x side black pixels: ~400 MB decoded, a few hundred KB on disk."""
    return png_of(side, side, colour_type=0, bands=1)


@pytest.fixture(scope="session")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(png_bomb())
    return path


@pytest.fixture
def bad_files(tmp_path: Path, bomb_png: Path) -> dict[str, Path]:
    """One file of each broken kind, by the reason edgetag should give for it."""
    good = (SAMPLES / "chelsea.jpg").read_bytes()
    files = {
        "empty": tmp_path / "empty.jpg",
        "corrupt": tmp_path / "truncated.jpg",
        "not-an-image": tmp_path / "notes.jpg",
        "too-many-pixels": tmp_path / "bomb.png",
        "too-large": tmp_path / "huge.jpg",
    }
    files["empty"].write_bytes(b"")
    files["corrupt"].write_bytes(good[: len(good) // 2])
    files["not-an-image"].write_text("shopping list: milk, eggs\n", encoding="utf-8")
    files["too-many-pixels"].write_bytes(bomb_png.read_bytes())
    with files["too-large"].open("wb") as handle:  # sparse: 60 MB on paper, nothing on disk
        handle.write(good[:1024])
        handle.truncate(60 * 1024 * 1024)
    return files
