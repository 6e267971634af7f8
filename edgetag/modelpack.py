"""The model pack: where it is, what each model card says, checksums and label files.

A card (`models/<name>.toml`) is the one description of a model: its file and sha256, its labels,
its license and source, the input it expects and the format of its outputs. The runtime reads the
cards; nothing about a pack model is hard-coded elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgetag.errors import ModelError
from edgetag.imaging import Fit

Role = Literal["classifier", "detector", "faces", "expressions"]
ROLES: tuple[Role, ...] = ("classifier", "detector", "faces", "expressions")
FITS: tuple[Fit, ...] = ("stretch", "center-crop", "letterbox")


PACK_ENV = "EDGETAG_MODEL_PACK"


def pack_dir() -> Path:
    """The installed pack (edgetag/_pack in a wheel) or, in a checkout, the top-level models/ folder.

    $EDGETAG_MODEL_PACK points elsewhere (a pack of your own, or a broken copy in the tests).
    """
    if override := os.environ.get(PACK_ENV):
        return Path(override)
    package = Path(__file__).resolve().parent
    for candidate in (package / "_pack", package.parent / "models"):
        if candidate.is_dir():
            return candidate
    raise ModelError(
        f"the model pack is missing: neither {package / '_pack'} nor {package.parent / 'models'}"
    )


@dataclass(frozen=True)
class InputSpec:
    """What a model wants: size, the real value range of its pixels, how a photo is fitted to it."""

    width: int
    height: int
    value_range: tuple[float, float] = (0.0, 255.0)
    fit: Fit = "stretch"
    dtype: str | None = None  # what the card says the model file takes; checked at load


@dataclass(frozen=True)
class ModelCard:
    name: str
    role: Role
    summary: str
    file: Path
    sha256: str
    labels: Path | None
    license: str
    license_file: Path | None
    source: dict[str, Any]
    input: InputSpec
    output: dict[str, Any]
    build: dict[str, Any] = field(default_factory=dict)
    sanity: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ModelError(f"model card {path}: cannot read it ({error})") from error
        try:
            return cls._from_dict(data, path.parent)
        except KeyError as error:
            raise ModelError(f"model card {path}: missing key {error}") from error
        except (TypeError, ValueError) as error:
            raise ModelError(f"model card {path}: {error}") from error

    @classmethod
    def _from_dict(cls, data: dict[str, Any], folder: Path) -> ModelCard:
        role = data["role"]
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        spec = data["input"]
        fit = spec.get("fit", "stretch")
        if fit not in FITS:
            raise ValueError(f"input.fit {fit!r} is not one of {', '.join(FITS)}")
        low, high = (float(v) for v in spec.get("range", (0.0, 255.0)))
        return cls(
            name=str(data["name"]),
            role=role,
            summary=str(data.get("summary", "")),
            file=folder / str(data["file"]),
            sha256=str(data["sha256"]).lower(),
            labels=folder / str(data["labels"]) if "labels" in data else None,
            license=str(data["license"]),
            license_file=folder / str(data["license_file"]) if "license_file" in data else None,
            source=dict(data.get("source", {})),
            input=InputSpec(int(spec["width"]), int(spec["height"]), (low, high), fit, spec.get("dtype")),
            output=dict(data["output"]),
            build=dict(data.get("build", {})),
            sanity=dict(data.get("sanity", {})),
        )


def load_cards(folder: Path | None = None) -> dict[str, ModelCard]:
    """Every card in the pack, by model name."""
    folder = folder or pack_dir()
    cards = [ModelCard.load(path) for path in sorted(folder.glob("*.toml"))]
    return {card.name: card for card in cards}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise ModelError(f"model file {path} is missing") from None
    except OSError as error:
        raise ModelError(f"model file {path}: cannot read it ({error.strerror or error})") from None
    return digest.hexdigest()


def verify_checksum(card: ModelCard) -> str:
    """The file's sha256, after checking it against the card (a corrupt download or a swapped file)."""
    actual = file_sha256(card.file)
    if actual != card.sha256:
        raise ModelError(
            f"model {card.name}: {card.file.name} has sha256 {actual[:12]}..., "
            f"the card says {card.sha256[:12]}... (corrupt or replaced file; reinstall edgetag)"
        )
    return actual


_INDEXED_LABEL = re.compile(r"^\s*(\d+)[\s:,]+(.+?)\s*$")


def read_labels(path: Path) -> list[str]:
    """Read a label file in any of the common layouts, as a list where index i is class i.

    - one label per line (ImageNet style; a first line `???` is the TF sample's background and is dropped);
    - `index label` per line (Coral and Frigate `labelmap.txt`, e.g. `0  person`); gaps become "".
    """
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise ModelError(f"label file {path}: cannot read it ({error})") from None
    lines = [line for line in lines if line]
    if not lines:
        raise ModelError(f"label file {path} is empty")
    matches = [_INDEXED_LABEL.match(line) for line in lines]
    if all(matches):
        indexed = {int(m.group(1)): m.group(2) for m in matches if m}
        if len(indexed) != len(lines):
            raise ModelError(f"label file {path} gives the same index twice")
        return [indexed.get(i, "") for i in range(max(indexed) + 1)]
    if lines[0] == "???":
        lines = lines[1:]
    return lines
