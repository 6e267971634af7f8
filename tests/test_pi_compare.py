"""pi-test's comparison of this machine's tags with an emulated Pi's (tests/pi/compare.py), on events."""

from __future__ import annotations

from typing import Any

from tests.pi.compare import SCORE_TOLERANCE, Tagged, compare_photo

THRESHOLDS = {"outdoor": 0.1, "nature": 0.1, "furniture": 0.5, "table": 0.5, "coffee": 0.4}


def event(sentence: str, tags: list[tuple[str, float, list[str]]], top: str = "espresso") -> Tagged:
    data: dict[str, Any] = {
        "photo": {"name": "samples/coffee.jpg"},
        "sentence": sentence,
        "people": 0,
        "tags": [{"concept": c, "score": s, "parents": p} for c, s, p in tags],
        "classes": [{"label": top, "score": 0.9}],
    }
    return Tagged.from_event(data)


def test_equal_runs_pass_and_a_different_top_class_fails() -> None:
    x86 = event("Image may contain: coffee", [("coffee", 0.9, [])])
    assert compare_photo(x86, x86, THRESHOLDS).ok
    other = compare_photo(
        x86, event("Image may contain: coffee", [("coffee", 0.9, [])], top="cup"), THRESHOLDS
    )
    assert other.problems == ("top class ('cup',) instead of ('espresso',)",)


def test_a_tag_at_its_threshold_may_differ_with_the_sentence_and_what_it_covers() -> None:
    x86 = event("Image may contain: coffee and furniture", [("coffee", 0.9, []), ("furniture", 0.7, [])])
    arm = event(
        "Image may contain: coffee and table",
        [("coffee", 0.9, []), ("table", 0.5 + SCORE_TOLERANCE / 2, ["furniture"])],
    )
    comparison = compare_photo(x86, arm, THRESHOLDS)
    assert comparison.ok and comparison.at_threshold == {"table"}


def test_a_tag_clear_of_its_threshold_must_be_on_both_sides() -> None:
    x86 = event(
        "Image may contain: coffee and outdoor",
        [("coffee", 0.9, []), ("outdoor", 0.1 + 2 * SCORE_TOLERANCE, [])],
    )
    arm = event("Image may contain: coffee", [("coffee", 0.9, [])])
    comparison = compare_photo(x86, arm, THRESHOLDS)
    assert not comparison.ok and comparison.at_threshold == frozenset()
    assert any("sentence" in p for p in comparison.problems) and any(
        "concepts" in p for p in comparison.problems
    )
    assert not compare_photo(x86, arm).ok  # without thresholds nothing is excused


def test_people_must_be_equal_even_when_a_tag_is_at_its_threshold() -> None:
    x86 = event("Image may contain: nature", [("nature", 0.11, [])])
    arm = Tagged.from_event({**_raw(x86), "people": 1, "sentence": "Image may contain: 1 person"})
    comparison = compare_photo(x86, arm, THRESHOLDS)
    assert comparison.problems == ("1 people instead of 0",)


def _raw(tagged: Tagged) -> dict[str, Any]:
    return {
        "photo": {"name": tagged.photo},
        "sentence": tagged.sentence,
        "people": tagged.people,
        "tags": [],
        "classes": [{"label": label, "score": tagged.top_score} for label in tagged.top],
    }
