"""What must be equal between this machine's `edgetag tag --json` and the emulated Pi's, and what may differ.

Equal: the sentence, the people count, the set of tag concepts and the classifier's top class. The
int8 classifier's softmax comes out in steps of 1/256, so two classes can tie exactly for the top: the
top class then counts as equal if the two runs' tied-for-top classes overlap (reported as a tie).
Scores may differ (another runtime on 32-bit ARM, other kernels): they are reported, never failed on.

A tag at its threshold is the one exception. A concept said on one side only, whose score there is
less than SCORE_TOLERANCE above the concept's threshold, is "at the threshold": a score difference
smaller than the runtimes' own moves it across, so it is reported and not failed on (nor are the
sentence and the broader concepts it covers, which change with it). A tag clear of its threshold,
the people count and the top class must still be equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

# How far a score may move between x86-64 and emulated ARM runtimes on the same int8 model: the
# largest difference pi-test has seen over the sample photos' tags and classes is 0.031 (armhf).
SCORE_TOLERANCE = 0.04


@dataclass(frozen=True)
class Tagged:
    """The parts of one photo's tag event that the comparison looks at."""

    photo: str  # the file name
    sentence: str
    people: int
    concepts: frozenset[str]
    tag_scores: dict[str, float]
    tag_parents: dict[str, tuple[str, ...]]
    top: tuple[str, ...]  # every class tied at the top score (one, nearly always)
    top_score: float
    class_scores: dict[str, float]
    total_ms: float

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> Tagged:
        classes = event.get("classes", [])
        top_score = float(classes[0]["score"]) if classes else 0.0
        return cls(
            photo=PurePosixPath(event["photo"]["name"]).name,
            sentence=event["sentence"],
            people=int(event["people"]),
            concepts=frozenset(tag["concept"] for tag in event["tags"]),
            tag_scores={tag["concept"]: float(tag["score"]) for tag in event["tags"]},
            tag_parents={tag["concept"]: tuple(tag.get("parents", ())) for tag in event["tags"]},
            top=tuple(item["label"] for item in classes if float(item["score"]) == top_score),
            top_score=top_score,
            class_scores={item["label"]: float(item["score"]) for item in classes},
            total_ms=float(event.get("timing_ms", {}).get("total", 0.0)),
        )


def parse_events(json_lines: str) -> dict[str, Tagged]:
    """`edgetag tag --json` output (JSON Lines) by photo file name."""
    events = [Tagged.from_event(json.loads(line)) for line in json_lines.splitlines() if line.strip()]
    return {event.photo: event for event in events}


@dataclass(frozen=True)
class PhotoComparison:
    """One photo on the reference and on the emulated Pi."""

    reference: Tagged
    pi: Tagged
    problems: tuple[str, ...]  # what is not equal: a failure
    top_tie: bool  # the top classes differ only within an exact tie
    max_score_diff: float  # the largest score difference over shared tags and classes
    at_threshold: frozenset[str] = frozenset()  # tags on one side only, within tolerance of their threshold

    @property
    def ok(self) -> bool:
        return not self.problems


def compare_photo(
    reference: Tagged, pi: Tagged, thresholds: Mapping[str, float] | None = None
) -> PhotoComparison:
    """Compare one photo; the problems name the field and both values.

    `thresholds` (concept -> threshold, the vocabulary's) lets a tag at its threshold differ.
    """
    at_threshold = _at_threshold(reference, pi, thresholds or {})
    excused = at_threshold | {p for c in at_threshold for p in (reference.tag_parents | pi.tag_parents)[c]}
    problems = []
    if pi.sentence != reference.sentence and not at_threshold:
        problems.append(f"sentence {pi.sentence!r} instead of {reference.sentence!r}")
    if pi.people != reference.people:
        problems.append(f"{pi.people} people instead of {reference.people}")
    if pi.concepts - excused != reference.concepts - excused:
        problems.append(f"concepts {sorted(pi.concepts)} instead of {sorted(reference.concepts)}")
    same_top = pi.top[:1] == reference.top[:1]
    tie = not same_top and bool(set(pi.top) & set(reference.top))
    if not same_top and not tie:
        problems.append(f"top class {pi.top} instead of {reference.top}")
    diffs = [
        abs(pi.tag_scores[name] - score)
        for name, score in reference.tag_scores.items()
        if name in pi.tag_scores
    ]
    diffs += [
        abs(pi.class_scores[name] - score)
        for name, score in reference.class_scores.items()
        if name in pi.class_scores
    ]
    return PhotoComparison(reference, pi, tuple(problems), tie, max(diffs, default=0.0), at_threshold)


def _at_threshold(reference: Tagged, pi: Tagged, thresholds: Mapping[str, float]) -> frozenset[str]:
    """Concepts said on one side only, with a score there less than the tolerance above threshold."""
    found = set()
    for concept in reference.concepts ^ pi.concepts:
        score = (reference.tag_scores | pi.tag_scores)[concept]
        if concept in thresholds and score - thresholds[concept] < SCORE_TOLERANCE:
            found.add(concept)
    return frozenset(found)


def compare_runs(
    reference: dict[str, Tagged], pi: dict[str, Tagged], thresholds: Mapping[str, float] | None = None
) -> list[PhotoComparison]:
    """Every reference photo must be on the Pi side too (a missing one is a failure of its own)."""
    missing = sorted(set(reference) - set(pi))
    if missing:
        raise ValueError(f"no result on the Pi for {', '.join(missing)}")
    return [compare_photo(reference[name], pi[name], thresholds) for name in sorted(reference)]


def top_text(tagged: Tagged) -> str:
    """``label 0.352`` (or ``a = b 0.352`` for a tie)."""
    return f"{' = '.join(tagged.top) or '-'} {tagged.top_score:.3f}"


def tags_text(tagged: Tagged) -> str:
    """``person 0.968`` (comma-separated, highest first; ``-`` for none)."""
    ranked = sorted(tagged.tag_scores.items(), key=lambda item: -item[1])
    return ", ".join(f"{concept} {score:.3f}" for concept, score in ranked) or "-"
