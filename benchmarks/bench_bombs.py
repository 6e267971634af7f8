"""Decompression bombs against `edgetag tag`: peak memory, time and the message, per shape.

The shapes of issue 11, item 2 (each once took hundreds of MB to GBs): a 7000x7000 lossless RGBA
WebP of a few KB, a 1x50,000,000 PNG, a 49 MP RGBA PNG, and a real 48 MP photo as WebP. Each is
tagged by a fresh `edgetag tag` process; the kernel's peak RSS of that process, its wall time and
what it said are printed. Budget: under 300 MB and a few seconds each, with a clear message.

Run: `.venv/bin/python benchmarks/bench_bombs.py`
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
_MEASURE_CHILD = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
    " print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.returncode);"
    " print((r.stderr.strip().splitlines() or [''])[-1]); print((r.stdout.strip().splitlines() or [''])[-1])"
)


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
            run = subprocess.run(
                [sys.executable, "-c", _MEASURE_CHILD, *command], check=True, capture_output=True, text=True
            )
            seconds = time.perf_counter() - started
            rss_kb, code, stderr, stdout = [*run.stdout.splitlines(), "", "", "", ""][:4]
            said = stderr.replace(str(path), "FILE") or stdout.replace(str(path), "FILE")
            print(f"  {name:<30} {path.stat().st_size / 1024:9.1f} KB  peak RSS {int(rss_kb) / 1024:5.0f} MB"
                  f"  {seconds:5.1f} s  exit {code}  {said}")  # fmt: skip


if __name__ == "__main__":
    main()
