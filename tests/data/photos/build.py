"""Re-create the counting photos in this folder from Debian's tuxpaint-stamps-default (stdlib + Pillow).

three-huskies.jpg: a composite of one real photo (Tux Paint's "dog" stamp, a Siberian husky cut out
of a photograph) three times side by side, the middle one mirrored: a counting test needs several
dogs in one frame, and composites of real photos are fair for that (the labels say so).
Run: python tests/data/photos/build.py  (needs apt-get download; writes next to this file)
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

PACKAGE = "tuxpaint-stamps-default"
VERSION = "2022.06.04-1"
STAMP = "usr/share/tuxpaint/stamps/animals/mammals/dogs/dog.png"
HERE = Path(__file__).resolve().parent


def on_white(path: Path) -> Image.Image:
    stamp = Image.open(path).convert("RGBA")
    flat = Image.new("RGB", stamp.size, "white")
    flat.paste(stamp, (0, 0), stamp)
    return flat


def side_by_side(parts: list[Image.Image], height: int = 300, gap: int = 20) -> Image.Image:
    parts = [p.resize((round(p.width * height / p.height), height), Image.Resampling.LANCZOS) for p in parts]
    canvas = Image.new("RGB", (sum(p.width for p in parts) + gap * (len(parts) - 1), height), "white")
    left = 0
    for part in parts:
        canvas.paste(part, (left, 0))
        left += part.width + gap
    return canvas


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=work, check=True)
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        husky = on_white(work / "x" / STAMP)
    side_by_side([husky, ImageOps.mirror(husky), husky]).save(HERE / "three-huskies.jpg", quality=88)


if __name__ == "__main__":
    main()
