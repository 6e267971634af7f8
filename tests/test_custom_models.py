"""Bring your own model: a classifier with its labels, an SSD detector in the common TFLite format.

The detector fixture is the pack's person SSD rebuilt by the model build in the format Coral, Frigate and
picamera2 users have: uint8 pixels in, TFLite_Detection_PostProcess out (boxes, classes, scores, count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetag.errors import ModelError
from edgetag.models import Detection, iou
from edgetag.tagger import ModelSettings, Tagger
from tests.conftest import SAMPLES, TEST_MODELS

SSD = TEST_MODELS / "ssd-person-postprocess-uint8.tflite"
LABELMAP = TEST_MODELS / "ssd-person-postprocess-labelmap.txt"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def custom_detector() -> Tagger:
    return Tagger.from_settings(
        ModelSettings(classifier="none", faces="none", detector=str(SSD), detector_labels=LABELMAP)
    )


@pytest.fixture(scope="module")
def pack_detector() -> Tagger:
    return Tagger.from_settings(ModelSettings(classifier="none", faces="none"))


def people(detections: list[Detection]) -> list[Detection]:
    return [d for d in detections if d.label == "person" and d.score >= 0.5]


@pytest.mark.parametrize(
    "name", ["cameraman.jpg", "grace_hopper.jpg", "astronaut.jpg", "chelsea.jpg", "coffee.jpg"]
)
def test_the_common_format_agrees_with_the_numpy_decoding_of_the_same_network(
    custom_detector: Tagger, pack_detector: Tagger, name: str
) -> None:
    """Two routes to the same answer: TFLite's own post-process op, and edgetag's anchors + NMS."""
    assert custom_detector.detector is not None and pack_detector.detector is not None
    photo = custom_detector.load(SAMPLES / name)
    theirs = people(custom_detector.detector.detect(photo.image))
    ours = people(pack_detector.detector.detect(photo.image))
    assert len(theirs) == len(ours)
    for mine in ours:
        overlaps = iou(np.array(mine.box, np.float32), np.array([t.box for t in theirs], np.float32))
        assert overlaps.max() > 0.8


def test_a_custom_detector_tags_people(custom_detector: Tagger) -> None:
    result = custom_detector.tag_file(SAMPLES / "cameraman.jpg").to_dict()
    assert result["people"] == 1
    assert result["models"] == [
        {"name": SSD.stem, "role": "detector", "sha256": result["models"][0]["sha256"]}
    ]
    assert [o["label"] for o in result["objects"]] == ["person"]


def test_a_custom_classifier_with_its_labels() -> None:
    tagger = Tagger.from_settings(
        ModelSettings(
            classifier=str(ROOT / "models" / "efficientnet-lite0-int8.tflite"),
            classifier_labels=ROOT / "models" / "imagenet-labels.txt",
            detector="none",
            faces="none",
        )
    )
    assert tagger.tag_file(SAMPLES / "chelsea.jpg").sentence == "Image may contain: cat"


def test_a_label_map_that_does_not_fit_is_a_start_up_error(tmp_path: Path) -> None:
    labels = tmp_path / "labelmap.txt"
    labels.write_text("0 person\n1 bicycle\n", encoding="utf-8")
    with pytest.raises(ModelError, match="the model detects 1 classes but its label file has 2 labels"):
        Tagger.from_settings(ModelSettings(detector=str(SSD), detector_labels=labels))


def test_a_custom_model_needs_labels_and_the_right_shape() -> None:
    with pytest.raises(ModelError, match="needs its label file too"):
        Tagger.from_settings(ModelSettings(detector=str(SSD)))
    classifier = ROOT / "models" / "efficientnet-lite0-int8.tflite"
    with pytest.raises(
        ModelError, match="has 1 outputs; an SSD detector with TFLite_Detection_PostProcess has four"
    ):
        Tagger.from_settings(ModelSettings(detector=str(classifier), detector_labels=LABELMAP))
    with pytest.raises(ModelError, match=r"model file .*nothing.tflite is missing"):
        Tagger.from_settings(ModelSettings(detector="/nothing.tflite", detector_labels=LABELMAP))
