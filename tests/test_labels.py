"""Label files in the layouts people actually have."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetag.errors import ModelError
from edgetag.modelpack import read_labels


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_one_label_per_line(tmp_path: Path) -> None:
    assert read_labels(write(tmp_path, "tench\ngoldfish\n\ngreat white shark\n")) == [
        "tench",
        "goldfish",
        "great white shark",
    ]


def test_tf_sample_background_line_is_dropped(tmp_path: Path) -> None:
    assert read_labels(write(tmp_path, "???\nperson\nbicycle\n")) == ["person", "bicycle"]


def test_indexed_label_maps_keep_their_gaps(tmp_path: Path) -> None:
    labels = read_labels(write(tmp_path, "0  person\n1  bicycle\n3  motorcycle\n"))
    assert labels == ["person", "bicycle", "", "motorcycle"]


def test_problems_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="is empty"):
        read_labels(write(tmp_path, "\n\n"))
    with pytest.raises(ModelError, match="gives the same index twice"):
        read_labels(write(tmp_path, "0 person\n0 dog\n"))
    with pytest.raises(ModelError, match="cannot read it"):
        read_labels(tmp_path / "missing.txt")
