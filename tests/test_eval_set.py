"""The labelled evaluation set itself: every photo there, sourced, not from a reserved package."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from PIL import Image

from edgetag.vocabulary import Vocabulary
from tests.conftest import ROOT

EVAL = ROOT / "eval"
# Kept for an independent check (the brief): never in this set, its calibration or any test.
RESERVED_PACKAGES = {
    "caer", "opencv-doc", "lomiri-wallpapers", "palapeli-data", "mate-backgrounds",
    "@vladmandic/face-api", "tracking", "face-recognition", "face_recognition", "insightface",
    "mahotas", "ultralytics", "imgaug", "pillow",
}  # fmt: skip
RESERVED_PATHS = ("explore_farm_animals", "explore_world_animals")  # activities of gcompris-qt-data


def entries() -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for labels in sorted((EVAL / "labels").glob("*.jsonl"))
        for line in labels.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_the_set_has_200_photos_or_more_split_by_the_file_name() -> None:
    found = entries()
    assert len(found) >= 200
    for entry in found:
        test = int(hashlib.sha1(entry["file"].encode()).hexdigest(), 16) % 2 == 0
        assert entry["split"] == ("test" if test else "calibration"), entry["file"]
    assert sum(e["split"] == "test" for e in found) >= 100


@pytest.mark.parametrize("entry", entries(), ids=lambda e: e["file"])
def test_each_photo_is_there_sourced_and_labelled_with_known_concepts(entry: dict[str, Any]) -> None:
    path = EVAL / entry["file"]
    with Image.open(path) as photo:
        assert photo.format == "JPEG" and photo.mode == "RGB" and max(photo.size) <= 800
        assert not photo.getexif(), "EXIF stripped"
    sources = entry.get("sources") or [entry["source"]]
    for source in sources:
        assert source["registry"] in ("debian", "pypi", "npm")
        assert source["package"] and source["version"] and source["path"] and source["license"]
        assert source["package"].lower() not in RESERVED_PACKAGES
        assert not any(part in source["path"] for part in RESERVED_PATHS)
    known = {c.name for c in Vocabulary.load().concepts}
    assert set(entry["concepts"]) | set(entry["ambiguous"]) <= known
    assert "person" not in entry["concepts"] and "smiling" not in entry["concepts"]
    assert entry["checked"].startswith("looked at by ")
    assert bool(entry.get("composite")) == entry["file"].split("/")[-1].startswith("composite-")
