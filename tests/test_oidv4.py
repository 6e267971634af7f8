"""The optional Open Images detector (ssd-oidv4): the real int8 model on real photos, and its labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edgetag.modelpack import load_cards, read_labels
from edgetag.models import load_pack_model
from edgetag.models.base import Detection
from edgetag.models.ssd import SsdRawDetector
from edgetag.runtime import TFLiteModel
from edgetag.tagger import ModelSettings, Tagger
from edgetag.vocabulary import Vocabulary


@pytest.fixture(scope="module")
def detector() -> SsdRawDetector:
    model = load_pack_model(load_cards()["ssd-oidv4"], threads=2)
    assert isinstance(model, SsdRawDetector)
    return model


def photo(samples: Path, name: str) -> Image.Image:
    return Image.open(samples / name).convert("RGB")


def test_it_is_fully_int8_and_decoded_as_an_ssd_with_a_background_column() -> None:
    card = load_cards()["ssd-oidv4"]
    model = TFLiteModel(card.file, threads=1)
    assert model.input.dtype.name == "int8" and all(out.dtype.name == "int8" for out in model.outputs)
    labels = read_labels(card.labels) if card.labels else []
    assert len(labels) == 23 and "???" not in labels
    assert model.outputs[int(card.output["class_output"])].shape[-1] == len(labels) + 1


def test_the_cat_is_found_where_it_is(detector: SsdRawDetector, samples: Path) -> None:
    found = detector.detect(photo(samples, "chelsea.jpg"))
    assert found and found[0].label == "Cat" and found[0].score > 0.6
    x_min, y_min, x_max, y_max = found[0].box
    # chelsea.jpg (451x300) is the cat's head and chest filling most of the frame
    assert x_min < 0.15 and x_max > 0.85 and y_max > 0.85 and y_min < 0.25


def test_the_coffee_is_a_cup(detector: SsdRawDetector, samples: Path) -> None:
    found = detector.detect(photo(samples, "coffee.jpg"))
    assert found and found[0].label in ("Coffee cup", "Mug")
    x_min, y_min, x_max, y_max = found[0].box
    assert x_min < 0.5 < x_max and y_min < 0.5 < y_max  # the cup is in the middle of coffee.jpg


def test_two_people_are_found_on_both_sides(detector: SsdRawDetector, samples: Path) -> None:
    persons = [d for d in detector.detect(photo(samples, "two_people.jpg")) if d.label == "Person"]
    assert any(d.box[0] > 0.45 for d in persons) and any(d.box[2] < 0.55 for d in persons)


def test_a_photo_with_none_of_its_classes_has_no_detection(detector: SsdRawDetector, samples: Path) -> None:
    assert detector.detect(photo(samples, "rocket.jpg")) == []


def test_every_label_of_the_model_is_evidence_of_a_concept_or_a_person() -> None:
    card = load_cards()["ssd-oidv4"]
    assert card.labels is not None
    table = Vocabulary.load(calibrated=False)
    for label in read_labels(card.labels):
        described = table.describe(None, [Detection(label, 0.9, (0.1, 0.1, 0.5, 0.5))], [])
        if label == "Person":
            assert described.people == 1
        else:
            assert described.evidence, f"{label} counts for no concept"


def test_it_can_be_chosen_as_the_detector_and_its_labels_reach_the_description(samples: Path) -> None:
    tagger = Tagger.from_settings(ModelSettings(classifier="none", detector="ssd-oidv4", faces="none"))
    assert [m.name for m in tagger.models] == ["ssd-oidv4"]
    coffee = tagger.tag_file(samples / "coffee.jpg").description
    assert coffee.evidence["cup"] > 0.5  # "Coffee cup" is the vocabulary's cup (said or not by its threshold)
    cat = tagger.tag_file(samples / "chelsea.jpg").description
    assert cat.evidence["animal"] > 0.5  # like COCO's, its "Cat" box proves an animal
