"""Measuring what edgetag says: labels, hierarchical scoring, threshold choice, and `edgetag eval`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgetag import evaluation
from edgetag.cli import main
from edgetag.errors import ConfigError
from edgetag.evaluation import LabelledPhoto, choose_thresholds, outcome, outcomes, read_labels, report
from edgetag.imaging import Photo
from edgetag.models import Detection
from edgetag.tagger import Observation
from edgetag.vocabulary import Face, Vocabulary

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
LABELS = ["beagle", "tabby", "seashore"]
TABLE = {
    "people": {"threshold": 0.5, "face_threshold": 0.6},
    "concept": [
        {"name": "animal", "group": "animal", "threshold": 0.5},
        {"name": "dog", "parent": "animal", "threshold": 0.5, "classes": ["beagle"]},
        {"name": "cat", "parent": "animal", "threshold": 0.5, "classes": ["tabby"]},
        {"name": "outdoor", "group": "scene", "threshold": 0.5},
        {"name": "beach", "parent": "outdoor", "threshold": 0.5, "classes": ["seashore"]},
    ],
}


def table() -> Vocabulary:
    vocabulary = Vocabulary.from_dict(TABLE, "test")
    vocabulary.bind(LABELS)
    return vocabulary


def seen(
    beagle: float = 0.0, tabby: float = 0.0, seashore: float = 0.0, faces: int = 0, smile: float | None = None
) -> Observation:
    photo = Photo("x.jpg", 10, 10, "JPEG", Image.new("RGB", (10, 10)))
    boxes = tuple(
        Face(Detection("face", 0.9, (0.1 * i, 0.1, 0.1 * i + 0.05, 0.2)), smile) for i in range(faces)
    )
    return Observation(photo, np.array([beagle, tabby, seashore], np.float32), (), boxes, {}, 0.0)


def labelled(
    concepts: set[str], split: str = "test", people: int = 0, ambiguous: set[str] | None = None
) -> LabelledPhoto:
    return LabelledPhoto(Path("x.jpg"), split, frozenset(concepts), frozenset(ambiguous or ()), people, 0)


def test_truth_and_predictions_follow_the_tree() -> None:
    vocabulary = table()
    photos = [labelled({"dog"}), labelled({"cat", "beach"}), labelled({"beach"}, ambiguous={"dog"})]
    observed = [
        seen(beagle=0.3, tabby=0.3),  # neither kind is sure: says "animal", which is right
        seen(tabby=0.9, beagle=0.6),  # says cat and dog: the dog is wrong
        seen(seashore=0.9, beagle=0.7),  # the dog is ambiguous there: not scored either way
    ]
    result = report(vocabulary, outcomes(vocabulary, photos, observed), "test")
    by_name = {c.concept: c for c in result.concepts}
    assert (by_name["animal"].true_positives, by_name["animal"].false_positives) == (2, 0)
    dog = by_name["dog"]
    assert (dog.true_positives, dog.false_positives, dog.false_negatives) == (0, 1, 1)
    assert (by_name["beach"].support, by_name["beach"].recall) == (2, 0.5)
    assert by_name["outdoor"].precision == 1.0
    assert result.described == 3 and result.described_without_error == 2
    assert result.people_right == 3


def test_a_person_count_that_is_wrong_fails_the_photo() -> None:
    vocabulary = table()
    result = report(
        vocabulary, outcomes(vocabulary, [labelled({"dog"}, people=2)], [seen(beagle=0.9, faces=1)]), "test"
    )
    assert (result.people_right, result.described) == (0, 0)


def test_a_crowd_labelled_as_a_range_is_right_anywhere_in_it() -> None:
    vocabulary = table()
    crowd = replace(labelled({"beach"}, people=2), people_max=6)
    right = outcome(vocabulary, crowd, seen(seashore=0.9, faces=4))
    assert right.people_right and right.described
    assert not outcome(vocabulary, crowd, seen(seashore=0.9, faces=1)).people_right


def test_a_faint_smile_is_right_either_way_and_a_clear_one_is_not() -> None:
    vocabulary = table()
    faint = replace(labelled(set(), people=1), smiling=0, smiling_max=1)
    clear = replace(labelled(set(), people=1), smiling=1)
    none = labelled(set(), people=1)
    smiles, straight = seen(faces=1, smile=0.9), seen(faces=1, smile=0.1)
    assert (
        outcome(vocabulary, faint, smiles).smiling_right
        and outcome(vocabulary, faint, straight).smiling_right
    )
    assert (
        outcome(vocabulary, clear, smiles).smiling_right
        and not outcome(vocabulary, clear, straight).smiling_right
    )
    assert not outcome(vocabulary, none, smiles).smiling_right


def test_a_photo_of_nothing_the_vocabulary_knows_is_described_by_saying_nothing_wrong() -> None:
    vocabulary = table()
    nothing = labelled(set())
    assert outcome(vocabulary, nothing, seen()).described
    assert not outcome(vocabulary, nothing, seen(beagle=0.9)).described  # "dog" would be wrong
    assert outcome(vocabulary, labelled(set(), ambiguous={"dog"}), seen(beagle=0.9)).described


def test_only_the_chosen_part_is_reported() -> None:
    vocabulary = table()
    photos = [labelled({"dog"}, "calibration"), labelled({"cat"}, "test")]
    result = report(vocabulary, outcomes(vocabulary, photos, [seen(beagle=0.9), seen(tabby=0.9)]), "test")
    assert result.photos == 1 and {c.concept for c in result.concepts} == {"cat", "animal"}


def test_thresholds_are_the_lowest_that_keep_precision_on_the_calibration_part() -> None:
    vocabulary = table()
    cases = [  # (beagle score, truly a dog)
        (0.32, True), (0.42, True), (0.45, True), (0.5, True), (0.55, True), (0.65, True), (0.8, True),
        (0.9, True), (0.37, False), (0.2, False),
    ]  # fmt: skip
    photos = [labelled({"dog"} if dog else set(), "calibration") for _, dog in cases]
    photos.append(labelled({"cat"}, "test"))  # the test part never moves a threshold
    observed = [seen(beagle=score) for score, _ in cases] + [seen(beagle=0.95)]
    choices = {c.concept: c for c in choose_thresholds(vocabulary, outcomes(vocabulary, photos, observed))}
    # At 0.3: 7 of 8 right, not sure of 0.8; from 0.4 up: every prediction right, seven of them
    # (enough to be sure).
    assert choices["dog"].threshold == 0.4 and choices["dog"].said
    assert choices["dog"].precision == 1.0 and choices["dog"].recall == 0.875


def test_three_right_are_too_few_to_lower_a_threshold_and_none_fired_keeps_the_table() -> None:
    vocabulary = table()
    cases = [(0.42, True), (0.45, True), (0.9, True), (0.2, False)]  # (beagle score, truly a dog)
    photos = [labelled({"dog"} if dog else set(), "calibration") for _, dog in cases]
    photos += [labelled({"cat"}, "calibration")]  # a cat the model never sees: no evidence either way
    observed = [seen(beagle=score) for score, _ in cases] + [seen()]
    choices = {c.concept: c for c in choose_thresholds(vocabulary, outcomes(vocabulary, photos, observed))}
    assert (choices["dog"].threshold, choices["dog"].said) == (0.5, True)
    assert (choices["cat"].threshold, choices["cat"].said) == (0.5, True)
    assert evaluation.precision_lower_bound(4, 0, z=1.0) == pytest.approx(0.8)  # one standard error
    assert evaluation.precision_lower_bound(6, 0) < 0.8 < evaluation.precision_lower_bound(7, 0)
    assert evaluation.precision_lower_bound(13, 1) < 0.8 < evaluation.precision_lower_bound(14, 1)


def test_a_concept_that_is_never_precise_is_not_said_and_one_without_labels_only_rises() -> None:
    vocabulary = table()
    photos = [labelled({"cat"}, "calibration") for _ in range(3)] + [
        labelled(set(), "calibration") for _ in range(3)
    ]
    observed = [seen(tabby=0.6, seashore=0.55) for _ in range(6)]  # a cat score everywhere; beach never true
    choices = {c.concept: c for c in choose_thresholds(vocabulary, outcomes(vocabulary, photos, observed))}
    assert not choices["cat"].said and choices["cat"].precision == 0.5
    assert choices["beach"].said and choices["beach"].threshold == 0.6  # above its false alarms at 0.55
    assert choices["dog"].threshold == 0.5  # no evidence either way: the table's


def test_thin_concepts_take_the_threshold_their_photos_reach_together() -> None:
    vocabulary = table()
    # Each kind alone has three or four right at 0.3 to 0.45: too few to be sure. The three kinds
    # together have ten right and no false alarm from 0.3 up: sure. Animal repeats dog's and cat's
    # evidence (seven right: calibrated on its own) and outdoor beach's; neither adds to the pool.
    cases = [({"dog"}, seen(beagle=s)) for s in (0.3, 0.35, 0.4, 0.45)]
    cases += [({"cat"}, seen(tabby=s)) for s in (0.3, 0.4, 0.45)]
    cases += [({"beach"}, seen(seashore=s)) for s in (0.3, 0.35, 0.4)]
    cases += [(set(), seen(seashore=0.25))]  # a false alarm below the pooled threshold
    photos = [labelled(concepts, "calibration") for concepts, _ in cases]
    observed = [observation for _, observation in cases]
    choices = {c.concept: c for c in choose_thresholds(vocabulary, outcomes(vocabulary, photos, observed))}
    for name in ("dog", "cat", "beach", "outdoor"):
        assert (choices[name].threshold, choices[name].why) == (0.3, evaluation.POOLED), name
    assert choices["animal"].why == "calibrated"
    # Two false alarms at 0.5 leave the pool unsure at every threshold: each concept is judged on
    # its own evidence again (dog: wrong above all it got right, so never said; beach: the table's).
    photos.append(labelled(set(), "calibration"))
    observed.append(seen(tabby=0.5, beagle=0.5))
    choices = {c.concept: c for c in choose_thresholds(vocabulary, outcomes(vocabulary, photos, observed))}
    assert not choices["dog"].said and not choices["cat"].said
    assert (choices["beach"].threshold, choices["beach"].why) == (0.5, evaluation.THIN)


def test_people_thresholds_count_a_crowd_and_not_a_lone_weak_box() -> None:
    vocabulary = table()
    photo = Photo("x.jpg", 10, 10, "JPEG", Image.new("RGB", (10, 10)))

    def boxes(*scores: float) -> Observation:
        found = tuple(
            Detection("person", s, (0.2 * i, 0.1, 0.2 * i + 0.15, 0.9)) for i, s in enumerate(scores)
        )
        return Observation(photo, np.zeros(3, np.float32), found, (), {}, 0.0)

    # Crowds: one sure person and weaker ones behind; a bird the detector calls a person at 0.4.
    cases = [
        (3, boxes(0.8, 0.42, 0.4)),
        (2, boxes(0.7, 0.41)),
        (0, boxes(0.4)),
        (0, boxes(0.42)),
        (1, boxes(0.9)),
    ]
    photos = [replace(labelled(set(), "calibration"), people=people) for people, _ in cases]
    chosen = evaluation.choose_people(vocabulary, photos, [observed for _, observed in cases])
    assert 0.42 < chosen["threshold"] <= 0.7 and chosen["company_threshold"] <= 0.4
    rule = vocabulary.with_thresholds({"people": chosen}).people
    assert [rule.count(*rule.find(o.detections, o.faces)) for _, o in cases] == [3, 2, 0, 0, 1]


def test_bad_labels_name_the_file_and_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    for line, message in [
        ('{"file": "a.jpg", "split": "train"}', "split 'train' is not one of"),
        ('{"file": "a.jpg", "split": "test", "people": 1, "smiling": 2}', "2 smiling of at most 1 people"),
        ('{"file": "a.jpg", "split": "test", "people": [3, 1]}', r"people: \[3, 1\] is not a count"),
        ('{"file": "a.jpg", "split": "test", "people": [1, 2, 3]}', "is not a count or a"),
        ('{"file": "a.jpg", "split": "test", "smiling": "one"}', "smiling: 'one' is not a count"),
        ('{"split": "test"}', "'file'"),
        ("{not json", "Expecting property name"),
    ]:
        labels.write_text('{"file": "b.jpg", "split": "test"}\n' + line + "\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=rf"labels .*labels.jsonl, line 2: .*{message}"):
            read_labels([labels])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no labels files"):
        read_labels([tmp_path / "empty"])


SAMPLE_LABELS: list[dict[str, object]] = [
    {"file": "chelsea.jpg", "split": "test", "concepts": ["cat", "indoor"], "people": 0},
    {"file": "two_people.jpg", "split": "test", "concepts": [], "people": 2, "smiling": 1},
    {"file": "coffee.jpg", "split": "calibration", "concepts": ["coffee", "cup"], "people": 0},
    {"file": "astronaut.jpg", "split": "calibration", "concepts": ["outdoor"], "people": 1, "smiling": 1},
]


def test_edgetag_eval_on_real_photos_reports_and_calibrates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        "".join(json.dumps(e | {"file": str(SAMPLES / str(e["file"]))}) + "\n" for e in SAMPLE_LABELS)
    )
    assert main(["eval", str(labels), "--split", "all", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["photos"] == 4
    cat = next(c for c in figures["concepts"] if c["concept"] == "cat")
    assert (cat["tp"], cat["fp"], cat["precision"]) == (1, 0, 1.0)
    assert figures["people_count"] == 1.0  # 0, 2, 0 and 1 people, as labelled

    thresholds = tmp_path / "thresholds.toml"
    assert main(["eval", str(labels), "--calibrate", str(thresholds)]) == 0
    out = capsys.readouterr().out
    assert "thresholds chosen on 2 calibration photos" in out and "test part: 2 photos" in out
    calibrated = Vocabulary.load(None, thresholds)
    assert calibrated.people.threshold in evaluation.PERSON_GRID
    assert {c.name for c in calibrated.concepts} == {c.name for c in Vocabulary.load().concepts}
