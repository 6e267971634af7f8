"""Concepts, people counting and the sentence, from hand-made model outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgetag.errors import ConfigError
from edgetag.models import Detection
from edgetag.vocabulary import NOTHING, Tag, Vocabulary, sentence

LABELS = ["beagle", "pug", "tabby", "seashore", "espresso", "teacup", "other"]
TABLE = {
    "people": {"threshold": 0.5, "face_threshold": 0.6},
    "concept": [
        {
            "name": "dog",
            "group": "animal",
            "threshold": 0.5,
            "classes": ["beagle", "pug"],
            "objects": ["dog"],
        },
        {"name": "cat", "group": "animal", "threshold": 0.5, "classes": ["tabby"]},
        {"name": "beach", "group": "scene", "threshold": 0.3, "classes": ["seashore"]},
        {"name": "coffee", "group": "food", "threshold": 0.4, "classes": ["espresso"]},
        {"name": "cup", "group": "object", "threshold": 0.4, "classes": ["teacup"], "objects": ["cup"]},
    ],
}


def vocabulary() -> Vocabulary:
    table = Vocabulary.from_dict(TABLE, "test")
    assert table.bind(LABELS) == []
    return table


def probabilities(**by_label: float) -> np.ndarray:
    values = np.zeros(len(LABELS), np.float32)
    for label, value in by_label.items():
        values[LABELS.index(label)] = value
    return values


def person(score: float, box: tuple[float, float, float, float] = (0.1, 0.1, 0.4, 0.9)) -> Detection:
    return Detection("person", score, box)


def face(score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection("face", score, box)


def test_sentence_wording() -> None:
    assert sentence([]) == NOTHING == "No automatic alt text available."
    assert sentence([Tag("dog", 0.9, "animal")]) == "Image may contain: dog"
    assert sentence([Tag("person", 0.9, "people", 1), Tag("dog", 0.9, "animal")]) == (
        "Image may contain: 1 person and dog"
    )
    tags = [Tag("person", 0.9, "people", 2), Tag("dog", 0.8, "animal"), Tag("outdoor", 0.7, "scene")]
    assert sentence(tags) == "Image may contain: 2 people, dog and outdoor"


def test_a_concept_sums_its_classes() -> None:
    # Neither breed alone reaches the threshold; together they are a confident "dog".
    described = vocabulary().describe(probabilities(beagle=0.3, pug=0.25, tabby=0.2), [], [])
    assert [(t.concept, round(t.score, 2)) for t in described.tags] == [("dog", 0.55)]


def test_each_concept_has_its_own_threshold() -> None:
    described = vocabulary().describe(probabilities(seashore=0.35, tabby=0.45), [], [])
    assert [t.concept for t in described.tags] == ["beach"]  # 0.35 >= 0.3 for beach, 0.45 < 0.5 for cat


def test_order_is_people_then_objects_by_score_then_scenes() -> None:
    described = vocabulary().describe(
        probabilities(seashore=0.9, espresso=0.45, tabby=0.5),
        [person(0.8, (0.0, 0.0, 0.3, 1.0)), person(0.7, (0.5, 0.0, 0.9, 1.0))],
        [],
    )
    assert [t.concept for t in described.tags] == ["person", "cat", "coffee", "beach"]
    assert described.sentence == "Image may contain: 2 people, cat, coffee and beach"
    assert described.people == 2
    assert described.tags[0].count == 2


def test_faces_count_people_that_the_detector_missed_but_not_twice() -> None:
    inside = face(0.9, (0.2, 0.15, 0.3, 0.3))  # center inside the person's box
    outside = face(0.8, (0.7, 0.2, 0.8, 0.35))
    weak = face(0.5, (0.5, 0.5, 0.6, 0.6))  # under the face threshold
    described = vocabulary().describe(None, [person(0.9)], [inside, outside, weak])
    assert described.people == 2
    assert described.faces == (inside, outside)
    assert described.sentence == "Image may contain: 2 people"


def test_faces_alone_count_people() -> None:
    described = vocabulary().describe(None, [], [face(0.95, (0.4, 0.2, 0.6, 0.5))])
    assert (described.people, described.sentence) == (1, "Image may contain: 1 person")


def test_weak_people_are_not_counted() -> None:
    described = vocabulary().describe(None, [person(0.49)], [])
    assert (described.people, described.sentence, described.objects) == (0, NOTHING, ())


def test_detector_labels_count_their_concept_and_unlisted_labels_stay_out_of_the_sentence() -> None:
    detections = [
        Detection("dog", 0.8, (0.0, 0.0, 0.5, 0.5)),
        Detection("dog", 0.6, (0.5, 0.5, 1.0, 1.0)),
        Detection("dog", 0.3, (0.2, 0.2, 0.3, 0.3)),
        Detection("tie", 0.9, (0.4, 0.4, 0.5, 0.6)),
        Detection("kite", 0.2, (0.4, 0.4, 0.5, 0.6)),
    ]
    described = vocabulary().describe(None, detections, [])
    assert [t.to_dict() for t in described.tags] == [{"concept": "dog", "score": 0.8, "count": 2}]
    assert [(d.label, d.score) for d in described.objects] == [("tie", 0.9), ("dog", 0.8), ("dog", 0.6)]
    assert described.sentence == "Image may contain: dog"


def test_one_threshold_can_override_them_all() -> None:
    table = vocabulary()
    outputs = (probabilities(tabby=0.2, espresso=0.15), [person(0.3)], [face(0.35, (0.8, 0.8, 0.9, 0.9))])
    assert table.describe(*outputs).sentence == NOTHING
    assert table.describe(*outputs, threshold=0.18).sentence == "Image may contain: 2 people and cat"


def test_binding_reports_missing_classes_and_takes_classes_named_like_the_concept() -> None:
    table = Vocabulary.from_dict(TABLE, "test")
    missing = table.bind(["cat", "dog", "pug"])
    assert missing == ["beagle", "espresso", "seashore", "tabby", "teacup"]
    described = table.describe(np.array([0.7, 0.1, 0.2], np.float32), [], [])
    assert [t.concept for t in described.tags] == ["cat"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group": "gadgets"}, "group 'gadgets' is not one of"),
        ({"threshold": 1.5}, r"threshold 1.5 is not in \(0, 1\]"),
        ({"threshold": "high"}, "could not convert string to float"),
    ],
)
def test_bad_concepts_are_reported_with_their_name(change: dict[str, object], message: str) -> None:
    table = {"concept": [{"name": "dog", "group": "animal", "threshold": 0.5} | change]}
    with pytest.raises(ConfigError, match=rf"concept 1 \(dog\): {message}"):
        Vocabulary.from_dict(table, "mine.toml")


def test_missing_key_and_duplicate_names_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="concept 1 \\(dog\\): 'threshold'"):
        Vocabulary.from_dict({"concept": [{"name": "dog", "group": "animal"}]})
    twice = {"concept": [{"name": "dog", "group": "animal", "threshold": 0.5}] * 2}
    with pytest.raises(ConfigError, match="a concept name appears twice"):
        Vocabulary.from_dict(twice)
    broken = tmp_path / "v.toml"
    broken.write_text("[[concept]\nname=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Vocabulary.load(broken)


def test_the_stock_vocabulary_loads_and_follows_its_own_rules() -> None:
    table = Vocabulary.load()
    names = [c.name for c in table.concepts]
    assert len(names) >= 60
    assert {"dog", "cat", "car", "motorcycle", "cup", "coffee", "beach", "outdoor"} <= set(names)
    dog = next(c for c in table.concepts if c.name == "dog")
    assert len(dog.classes) == 118
