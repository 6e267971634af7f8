"""What the stock pack says about real photos: counts, the hierarchy, classes that used to say nothing.

The photos are from the calibration part of the labelled set (eval/) or built from packages
(tests/data/photos/); none is from the test part the quality figures are reported on.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import ROOT

EVAL_PHOTOS = ROOT / "eval" / "photos"
TEST_PHOTOS = ROOT / "tests" / "data" / "photos"


def tags(tagger: Any, path: Any) -> dict[str, Any]:
    result = tagger.tag_file(path)
    return {tag["concept"]: tag for tag in result.to_dict()["tags"]} | {"sentence": result.sentence}


def test_three_dogs_are_counted(tagger: Any) -> None:
    found = tags(tagger, TEST_PHOTOS / "three-huskies.jpg")  # a composite of a real photo, three times
    assert found["sentence"] == "Image may contain: 3 dogs"
    assert found["dog"]["count"] == 3 and found["dog"]["parents"] == ["animal"]


def test_two_birds_in_one_real_photo_are_counted(tagger: Any) -> None:
    found = tags(tagger, EVAL_PHOTOS / "debian" / "gcompris-erase-spoonbills.jpg")
    assert found["sentence"].startswith("Image may contain: 2 birds")
    assert found["bird"]["count"] == 2


def test_a_confident_castle_is_said_now_that_the_class_maps_to_a_concept(tagger: Any) -> None:
    """The flat table of old had no concept for ImageNet's "castle": this photo said only "outdoor"."""
    found = tags(tagger, EVAL_PHOTOS / "debian" / "gcompris-explore-monuments-neuschwanstein-castle.jpg")
    assert found["castle"]["parents"] == ["building"]
    assert "building" not in found  # never a concept and its ancestor together
    assert found["sentence"].startswith("Image may contain: castle")


def test_the_cat_is_an_animal_for_whoever_asks_for_animals(tagger: Any) -> None:
    found = tags(tagger, ROOT / "samples" / "chelsea.jpg")
    assert found["sentence"] == "Image may contain: cat"
    assert found["cat"]["parents"] == ["animal"]
