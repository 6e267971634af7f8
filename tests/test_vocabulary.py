"""Concepts, people counting and the sentence, from hand-made model outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgetag.errors import ConfigError
from edgetag.models import Detection
from edgetag.vocabulary import GROUPS, NOTHING, SCENE_GROUP, Concept, Face, Tag, Vocabulary, sentence
from tests.conftest import ROOT

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


def test_weaker_person_boxes_count_only_beside_someone_sure_and_not_twice() -> None:
    table = vocabulary().with_thresholds({"people": {"threshold": 0.5, "company_threshold": 0.35}})
    left, right = (0.05, 0.1, 0.3, 0.9), (0.6, 0.1, 0.9, 0.9)
    assert table.describe(None, [person(0.4, left)], []).people == 0  # alone: a bird as often as not
    assert table.describe(None, [person(0.8, left), person(0.4, right)], []).people == 2
    assert table.describe(None, [person(0.8, left), person(0.3, right)], []).people == 1  # too weak
    again = (0.08, 0.1, 0.33, 0.9)  # the sure person's box again, a little shifted
    assert table.describe(None, [person(0.8, left), person(0.4, again)], []).people == 1
    with_face = table.describe(None, [person(0.4, right)], [face(0.9, (0.1, 0.2, 0.2, 0.3))])
    assert with_face.people == 2 and [d.score for d in with_face.objects] == [0.4]
    # One threshold for everything (`edgetag tag --threshold`) leaves no weaker boxes.
    assert table.describe(None, [person(0.4, left)], [], threshold=0.4).people == 1
    assert vocabulary().describe(None, [person(0.8, left), person(0.4, right)], []).people == 1  # unset


@pytest.mark.parametrize(
    ("people", "message"),
    [
        ({"treshold": 0.5}, r"\[people\]: unknown keys treshold"),
        ({"company_threshold": 1.5}, r"\[people\]: company_threshold 1.5 is not in \(0, 1\]"),
        ({"face_threshold": "high"}, r"\[people\]: face_threshold 'high' is not in \(0, 1\]"),
    ],
)
def test_a_bad_people_table_is_refused_with_the_key_named(people: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Vocabulary.from_dict({**TABLE, "people": people}, "test")
    with pytest.raises(ConfigError, match="thresholds x.toml: " + message):
        vocabulary().with_thresholds({"people": people}, "x.toml")


def test_detector_labels_count_their_concept_and_unlisted_labels_stay_out_of_the_sentence() -> None:
    detections = [
        Detection("dog", 0.8, (0.0, 0.0, 0.5, 0.5)),
        Detection("dog", 0.6, (0.5, 0.5, 1.0, 1.0)),
        Detection("dog", 0.3, (0.2, 0.2, 0.3, 0.3)),
        Detection("tie", 0.9, (0.4, 0.4, 0.5, 0.6)),
        Detection("kite", 0.2, (0.4, 0.4, 0.5, 0.6)),
    ]
    described = vocabulary().describe(None, detections, [])
    assert [t.to_dict() for t in described.tags] == [
        {"concept": "dog", "score": 0.8, "count": 2, "parents": []}
    ]
    assert [(d.label, d.score) for d in described.objects] == [("tie", 0.9), ("dog", 0.8), ("dog", 0.6)]
    assert described.sentence == "Image may contain: 2 dogs"


def test_a_said_concept_counts_its_boxes_from_the_count_threshold_when_its_own_is_higher() -> None:
    strict: dict[str, Any] = {"concept": [{"name": "dog", "group": "animal", "threshold": 0.7}]}
    two_dogs = [Detection("dog", 0.75, (0.0, 0.0, 0.4, 0.5)), Detection("dog", 0.6, (0.5, 0.0, 0.9, 0.5))]
    two_dogs.append(Detection("dog", 0.45, (0.2, 0.6, 0.4, 0.9)))  # below both: not counted
    counted = Vocabulary.from_dict(strict, "test").describe(None, two_dogs, [])
    assert counted.sentence == "Image may contain: 2 dogs"
    as_strict = Vocabulary.from_dict({**strict, "count_threshold": 0.7}, "test").describe(None, two_dogs, [])
    assert as_strict.sentence == "Image may contain: dog"
    lone = Vocabulary.from_dict(strict, "test").describe(None, two_dogs[1:], [])
    assert lone.sentence == NOTHING  # a box at 0.6 alone does not make the dog said


@pytest.mark.parametrize("value", [0, 1.5, "high", True])
def test_a_bad_table_wide_score_is_refused_with_its_key_named(value: object) -> None:
    for key in ("count_threshold", "unlisted_object_threshold"):
        with pytest.raises(ConfigError, match=rf"vocabulary mine.toml: {key} .* is not a score in \(0, 1\]"):
            Vocabulary.from_dict({**TABLE, key: value}, "mine.toml")


def test_classifier_and_detector_agreeing_are_surer_than_either_alone() -> None:
    table = vocabulary().with_thresholds({"concept": {"dog": {"threshold": 0.7}}})
    box = [Detection("dog", 0.5, (0.1, 0.1, 0.6, 0.6))]
    assert table.describe(probabilities(beagle=0.5), [], []).sentence == NOTHING
    assert table.describe(None, box, []).sentence == NOTHING
    agreed = table.describe(probabilities(beagle=0.5), box, [])
    assert agreed.sentence == "Image may contain: dog"  # 1 - (1 - 0.5) (1 - 0.5) = 0.75
    assert agreed.evidence["dog"] == pytest.approx(0.75)
    assert table.describe(probabilities(beagle=0.65), [], []).evidence["dog"] == pytest.approx(0.65)


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


# --- the concept tree (format 2) -------------------------------------------------------------------

TREE_LABELS = ["beagle", "pug", "tabby", "daisy", "rose", "ram", "seashore", "lakeside"]
TREE: dict[str, Any] = {
    "people": {"threshold": 0.5, "face_threshold": 0.6, "smiling_threshold": 0.6},
    "concept": [
        {"name": "animal", "group": "animal", "threshold": 0.5},
        {
            "name": "dog",
            "parent": "animal",
            "threshold": 0.5,
            "classes": ["beagle", "pug"],
            "objects": ["Dog"],
        },
        {"name": "cat", "parent": "animal", "threshold": 0.5, "classes": ["tabby"], "objects": ["cat"]},
        {"name": "sheep", "parent": "animal", "threshold": 0.5, "plural": "sheep", "classes": ["ram"]},
        {"name": "plant", "group": "plant", "threshold": 0.5},
        {"name": "flower", "parent": "plant", "threshold": 0.5},
        {"name": "daisy", "parent": "flower", "threshold": 0.5, "classes": ["daisy"]},
        {"name": "rose", "parent": "flower", "threshold": 0.5, "classes": ["rose"], "said": False},
        {"name": "outdoor", "group": "scene", "threshold": 0.5},
        {"name": "beach", "parent": "outdoor", "threshold": 0.5, "classes": ["seashore"]},
        {"name": "lake", "parent": "outdoor", "threshold": 0.5, "classes": ["lakeside"]},
    ],
}


def tree() -> Vocabulary:
    table = Vocabulary.from_dict(TREE, "tree")
    assert table.bind(TREE_LABELS) == []
    return table


def tree_probabilities(**by_label: float) -> np.ndarray:
    values = np.zeros(len(TREE_LABELS), np.float32)
    for label, value in by_label.items():
        values[TREE_LABELS.index(label)] = value
    return values


def test_a_confident_kind_is_said_and_not_its_broader_concept() -> None:
    described = tree().describe(tree_probabilities(beagle=0.7), [], [])
    assert described.sentence == "Image may contain: dog"
    assert [t.to_dict() for t in described.tags] == [{"concept": "dog", "score": 0.7, "parents": ["animal"]}]


def test_the_broader_concept_is_said_when_no_kind_is_confident() -> None:
    # 0.3 dog + 0.3 cat: neither kind is sure, but an animal it is.
    described = tree().describe(tree_probabilities(beagle=0.3, tabby=0.3), [], [])
    assert described.sentence == "Image may contain: animal"
    assert described.tags[0].parents == ()
    assert round(described.tags[0].score, 2) == 0.6


def test_parents_go_up_the_whole_tree_and_a_tag_is_each_of_its_kinds() -> None:
    tag = tree().describe(tree_probabilities(daisy=0.8), [], []).tags[0]
    assert (tag.concept, tag.parents) == ("daisy", ("flower", "plant"))
    assert tag.is_a("daisy") and tag.is_a("flower") and tag.is_a("plant") and not tag.is_a("animal")


def test_a_concept_that_is_not_said_stays_in_the_json_and_lets_its_parent_speak() -> None:
    described = tree().describe(tree_probabilities(rose=0.9), [], [])
    assert described.sentence == "Image may contain: flower"
    assert [(t.concept, t.said) for t in described.tags] == [("flower", True), ("rose", False)]
    assert described.tags[1].to_dict()["said"] is False


def test_detector_boxes_are_counted_with_plurals_and_labels_match_case_insensitively() -> None:
    boxes = [Detection("dog", 0.9, (0.0, 0.0, 0.3, 0.5)), Detection("Dog", 0.8, (0.35, 0.0, 0.65, 0.5))]
    boxes.append(Detection("dog", 0.7, (0.7, 0.0, 1.0, 0.5)))
    described = tree().describe(tree_probabilities(ram=0.9), boxes, [])
    assert described.sentence == "Image may contain: 3 dogs and sheep"
    assert described.tags[0].count == 3


def test_one_animal_called_dog_and_cat_by_the_detector_is_counted_once_as_an_animal() -> None:
    same_place = [
        Detection("dog", 0.55, (0.1, 0.1, 0.6, 0.9)),
        Detection("cat", 0.52, (0.12, 0.1, 0.6, 0.88)),
    ]
    unsure_kinds = tree().with_thresholds({"concept": {"dog": {"threshold": 0.9}, "cat": {"threshold": 0.9}}})
    described = unsure_kinds.describe(None, same_place, [])
    assert [(t.concept, t.count) for t in described.tags] == [("animal", 1)]
    assert described.sentence == "Image may contain: animal"


def test_boxes_that_only_count_prove_an_animal_and_count_the_kind_the_classifier_names() -> None:
    """A COCO "dog" box on a calf: an animal is there; that it is a dog is the classifier's to say."""
    counting = {
        **TREE,
        "concept": [dict(c, boxes="count") if c["name"] == "dog" else c for c in TREE["concept"]],
    }
    table = Vocabulary.from_dict(counting, "tree")
    table.bind(TREE_LABELS)
    calf = [Detection("dog", 0.8, (0.1, 0.1, 0.6, 0.9))]
    described = table.describe(tree_probabilities(), calf, [])
    assert [(t.concept, t.count) for t in described.tags] == [("animal", 1)]
    assert "dog" not in described.evidence
    dogs = [Detection("dog", 0.7, (0.0, 0.0, 0.3, 0.5)), Detection("dog", 0.6, (0.4, 0.0, 0.7, 0.5))]
    described = table.describe(tree_probabilities(beagle=0.8), dogs, [])
    assert described.sentence == "Image may contain: 2 dogs"
    with pytest.raises(ConfigError, match="boxes 'maybe' is not 'prove' or 'count'"):
        Vocabulary.from_dict(
            {"concept": [{"name": "a", "group": "animal", "threshold": 0.5, "boxes": "maybe"}]}
        )


def test_scenes_follow_the_tree_too() -> None:
    described = tree().describe(tree_probabilities(seashore=0.6, beagle=0.9), [], [])
    assert described.sentence == "Image may contain: dog and beach"


def test_smiling_faces_are_counted_and_said_after_the_people() -> None:
    faces = [
        Face(face(0.9, (0.1, 0.1, 0.2, 0.3)), smile=0.95),
        Face(face(0.9, (0.4, 0.1, 0.5, 0.3)), smile=0.7),
        Face(face(0.9, (0.7, 0.1, 0.8, 0.3)), smile=0.2),
    ]
    described = tree().describe(tree_probabilities(beagle=0.9), [], faces)
    assert described.sentence == "Image may contain: 3 people, people smiling and dog"
    assert [(t.concept, t.count) for t in described.tags[:2]] == [("person", 3), ("smiling", 2)]
    assert described.smiles == (0.95, 0.7, 0.2)
    alone = tree().describe(None, [], faces[:1])
    assert alone.sentence == "Image may contain: 1 person and smiling"


def test_nobody_smiles_without_the_expression_model() -> None:
    described = tree().describe(None, [], [face(0.9, (0.1, 0.1, 0.2, 0.3))])
    assert (described.smiling, described.sentence) == (0, "Image may contain: 1 person")


def test_calibrated_thresholds_override_the_table_and_can_silence_a_concept(tmp_path: Path) -> None:
    calibrated = tree().with_thresholds({"concept": {"dog": {"threshold": 0.8}, "beach": {"said": False}}})
    assert calibrated.describe(tree_probabilities(beagle=0.7), [], []).sentence == "Image may contain: animal"
    beach = calibrated.describe(tree_probabilities(seashore=0.9), [], [])
    assert beach.sentence == "Image may contain: outdoor"
    with pytest.raises(ConfigError, match="unknown concepts unicorn"):
        tree().with_thresholds({"concept": {"unicorn": {"threshold": 0.5}}})
    table, thresholds = tmp_path / "v.toml", tmp_path / "t.toml"
    table.write_text('[[concept]]\nname = "cat"\ngroup = "animal"\nthreshold = 0.5\n', encoding="utf-8")
    thresholds.write_text("[concept.cat]\nthreshold = 0.95\n", encoding="utf-8")
    assert Vocabulary.load(table, thresholds).concepts[0].threshold == 0.95


@pytest.mark.parametrize(
    ("concepts", "message"),
    [
        ([{"name": "dog", "parent": "animal", "threshold": 0.5}], "unknown parent 'animal'"),
        (
            [{"name": "a", "parent": "b", "threshold": 0.5}, {"name": "b", "parent": "a", "threshold": 0.5}],
            "its parents form a cycle",
        ),
        (
            [{"name": "animal", "group": "animal", "threshold": 0.5},
             {"name": "dog", "parent": "animal", "group": "animal", "threshold": 0.5}],
            "only a concept without a parent has a group",
        ),
        ([{"name": "animal", "threshold": 0.5}], "group '' is not one of"),
    ],
)  # fmt: skip
def test_a_broken_tree_is_refused_with_the_concept_named(
    concepts: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Vocabulary.from_dict({"concept": concepts}, "mine.toml")


# --- the stock tree covers what the stock and bring-your-own models can see ------------------------

IMAGENET_LABELS = (ROOT / "models" / "imagenet-labels.txt").read_text(encoding="utf-8").splitlines()
COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip
# The optional Open Images detector's labels, as the pack ships them (models/ssd-oidv4-labels.txt).
OPEN_IMAGES_LABELS = (ROOT / "models" / "ssd-oidv4-labels.txt").read_text(encoding="utf-8").splitlines()


def stock() -> Vocabulary:
    table = Vocabulary.load(calibrated=False)
    assert table.bind(IMAGENET_LABELS) == []
    return table


def one_class(label: str, probability: float = 0.9) -> np.ndarray:
    values = np.zeros(len(IMAGENET_LABELS), np.float32)
    values[IMAGENET_LABELS.index(label)] = probability
    return values


def test_every_imagenet_class_is_evidence_of_a_concept() -> None:
    table = stock()
    assert len(IMAGENET_LABELS) == 1000
    unmapped = [label for label in IMAGENET_LABELS if not table.scores(one_class(label, 1.0)).any()]
    assert unmapped == []


@pytest.mark.parametrize("label", COCO_LABELS + OPEN_IMAGES_LABELS)
def test_every_detector_label_is_evidence_of_a_concept_or_a_person(label: str) -> None:
    assert len(COCO_LABELS) == 80 and len(OPEN_IMAGES_LABELS) == 23
    described = stock().describe(None, [Detection(label, 0.9, (0.1, 0.1, 0.5, 0.5))], [])
    if label.lower() == "person":
        assert described.people == 1
    else:
        assert described.evidence, f"{label} counts for no concept"
        assert described.tags and described.tags[0].count == 1


def test_the_stock_tree_is_broad_and_deep() -> None:
    table = stock()
    assert len(table.concepts) >= 150
    roots = {c.group for c in table.concepts if c.parent is None}
    assert roots == set(GROUPS)
    dog = table.describe(one_class("Golden Retriever"), [], []).tags[0]
    assert (dog.concept, dog.parents, dog.group) == ("dog", ("animal",), "animal")
    daisy = table.describe(one_class("daisy"), [], []).tags[0]
    assert (daisy.concept, daisy.parents) == ("daisy", ("flower", "plant"))
    assert table.describe(one_class("castle"), [], []).tags[0].parents == ("building",)
    assert {"big cat", "lion", "tiger"} <= table.kinds_of("animal") and "dog" not in table.kinds_of("cat")
    espresso = table.describe(one_class("espresso"), [], []).tags[0]
    assert (espresso.concept, espresso.parents, espresso.group) == ("coffee", ("drink",), "food")


def test_counted_concepts_have_their_plurals_and_scenes_are_never_counted() -> None:
    table = stock()
    sheep = [Detection("sheep", 0.9, (0.0, 0.0, 0.3, 0.3)), Detection("sheep", 0.8, (0.5, 0.5, 0.9, 0.9))]
    # COCO's sheep boxes prove animals; the kind is the classifier's to say (boxes = "count")
    assert table.describe(None, sheep, []).sentence == "Image may contain: 2 animals"
    knives = [Detection("knife", 0.9, (0.0, 0.0, 0.3, 0.3)), Detection("knife", 0.8, (0.5, 0.5, 0.9, 0.9))]
    assert table.describe(None, knives, []).sentence == "Image may contain: 2 knives"
    plurals = {c.name: c.plural_name for c in table.concepts}
    assert plurals["computer mouse"] == "computer mice" and plurals["glasses"] == "glasses"
    assert plurals["sheep"] == "sheep"
    scenes = [c for c in table.concepts if root_group(table, c) == SCENE_GROUP]
    assert {"outdoor", "indoor", "beach"} <= {c.name for c in scenes}
    assert [c.name for c in scenes if c.objects] == []


def root_group(table: Vocabulary, concept: Concept) -> str:
    root = table.concept(concept.parents[-1]) if concept.parents else concept
    assert root is not None
    return root.group
