"""Decompression bombs against `edgetag tag`: peak memory, time and the message, per shape.

The shapes of issue 11, item 2 (each once took hundreds of MB to GBs): a 7000x7000 lossless RGBA
WebP of a few KB, a 1x50,000,000 PNG, a 49 MP RGBA PNG, and a real 48 MP photo as WebP. Each is
tagged by a fresh `edgetag tag` process; the kernel's peak RSS of that process, its wall time and
what it said are printed. Budget: under 300 MB and a few seconds each, with a clear message.

Run: `.venv/bin/python benchmarks/bench_bombs.py`
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from benchmarks.measure import run_measured

ROOT = Path(__file__).resolve().parent.parent


def flat_webp(path: Path) -> None:
    Image.new("RGBA", (7000, 7000), (40, 120, 200, 255)).save(path, "WEBP", lossless=True)


def long_png(path: Path) -> None:
    Image.new("L", (50_000_000, 1), 128).save(path, "PNG", optimize=True)


def big_rgba_png(path: Path) -> None:
    Image.new("RGBA", (7000, 7000), (200, 40, 40, 255)).save(path, "PNG", optimize=True)


def real_48mp_webp(path: Path) -> None:
    with Image.open(ROOT / "samples" / "chelsea.jpg") as photo:
        photo.convert("RGB").resize((8000, 6000), Image.Resampling.BICUBIC).save(path, "WEBP", quality=80)


SHAPES: dict[str, Callable[[Path], None]] = {
    "7000x7000 lossless RGBA WebP": flat_webp,
    "1x50,000,000 PNG": long_png,
    "49 MP RGBA PNG": big_rgba_png,
    "real photo, 48 MP WebP": real_48mp_webp,
}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="edgetag-bombs-") as scratch:
        print("decompression bombs through `edgetag tag` (one fresh process each; budget < 300 MB)")
        for (name, make), suffix in zip(SHAPES.items(), (".webp", ".png", ".png", ".webp"), strict=True):
            path = Path(scratch) / f"bomb{suffix}"
            make(path)
            command = [sys.executable, "-m", "edgetag", "tag", str(path)]
            started = time.perf_counter()
            run = run_measured(command)
            seconds = time.perf_counter() - started
            last = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:] or [""]
            said = last[0].replace(str(path), "FILE")
            print(f"  {name:<30} {path.stat().st_size / 1024:9.1f} KB  peak RSS {run.peak_rss_mb:5.0f} MB"
                  f"  {seconds:5.1f} s  exit {run.returncode}  {said}")  # fmt: skip


if __name__ == "__main__":
    main()
