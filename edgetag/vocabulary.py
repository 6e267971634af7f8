"""Model outputs -> concepts -> the sentence, the way Facebook's automatic alt text spoke.

The concept table is data (`vocabulary.toml`): each concept sums the classifier probabilities of its
member classes (so "dog" is any of 118 breeds) and takes the best detector score of its member
labels, and has its own threshold. People are counted from the person detector and the face model.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetag.errors import ConfigError
from edgetag.models import Detection

DEFAULT_VOCABULARY = Path(__file__).resolve().parent / "vocabulary.toml"
SCENE_GROUP = "scene"
NOTHING = "No automatic alt text available."
GROUPS = ("animal", "vehicle", "object", "furniture", "food", "plant", SCENE_GROUP)


@dataclass(frozen=True)
class Concept:
    name: str
    group: str
    threshold: float
    classes: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()


@dataclass(frozen=True)
class PeopleRule:
    """How people are counted: person detections, plus faces that no person box already contains."""

    threshold: float = 0.5
    face_threshold: float = 0.6
    objects: tuple[str, ...] = ("person",)


@dataclass(frozen=True)
class Tag:
    concept: str
    score: float
    group: str
    count: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"concept": self.concept, "score": round(self.score, 3)}
        if self.count is not None:
            data["count"] = self.count
        return data


@dataclass(frozen=True)
class Description:
    """What edgetag says about one photo: the tags in sentence order, people, the kept boxes."""

    tags: tuple[Tag, ...]
    people: int
    faces: tuple[Detection, ...]
    objects: tuple[Detection, ...]

    @property
    def sentence(self) -> str:
        return sentence(self.tags)


def sentence(tags: Sequence[Tag]) -> str:
    """`Image may contain: 2 people, dog and outdoor`: people first, then objects, then scenes."""
    words = [_people_words(tag.count or 1) if tag.group == "people" else tag.concept for tag in tags]
    if not words:
        return NOTHING
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return f"Image may contain: {listed}"


def _people_words(count: int) -> str:
    return "1 person" if count == 1 else f"{count} people"


class Vocabulary:
    """The concept table, bound to a classifier's labels so scoring is one matrix product."""

    def __init__(
        self,
        concepts: Sequence[Concept],
        people: PeopleRule,
        unlisted_object_threshold: float = 0.5,
        source: str = "",
    ) -> None:
        self.concepts = tuple(concepts)
        self.people = people
        self.unlisted_object_threshold = unlisted_object_threshold
        self.source = source
        self._class_matrix: npt.NDArray[np.float32] = np.zeros((0, len(self.concepts)), np.float32)
        self._object_concept = {label: c for c in self.concepts for label in c.objects}
        self._object_concept.update({c.name: c for c in self.concepts if c.name not in self._object_concept})

    @classmethod
    def load(cls, path: Path | None = None) -> Vocabulary:
        path = path or DEFAULT_VOCABULARY
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"vocabulary {path}: cannot read it ({error})") from error
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"vocabulary {path}: not valid TOML ({error})") from error
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> Vocabulary:
        people = PeopleRule(**data.get("people", {}))
        concepts: list[Concept] = []
        for number, entry in enumerate(data.get("concept", []), start=1):
            where = f"vocabulary {source}: concept {number} ({entry.get('name', '?')})"
            try:
                concept = Concept(
                    name=str(entry["name"]),
                    group=str(entry["group"]),
                    threshold=float(entry["threshold"]),
                    classes=tuple(entry.get("classes", ())),
                    objects=tuple(entry.get("objects", ())),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ConfigError(f"{where}: {error}") from error
            if concept.group not in GROUPS:
                raise ConfigError(f"{where}: group {concept.group!r} is not one of {', '.join(GROUPS)}")
            if not 0.0 < concept.threshold <= 1.0:
                raise ConfigError(f"{where}: threshold {concept.threshold} is not in (0, 1]")
            concepts.append(concept)
        names = [c.name for c in concepts]
        if len(set(names)) != len(names):
            raise ConfigError(f"vocabulary {source}: a concept name appears twice")
        return cls(concepts, people, float(data.get("unlisted_object_threshold", 0.5)), source)

    def bind(self, labels: Sequence[str]) -> list[str]:
        """Prepare scoring for a classifier's labels; returns the listed classes it does not have.

        A concept also takes a class named exactly like itself, so a custom classifier whose labels
        are "cat" and "dog" works with the stock vocabulary.
        """
        index = {label: i for i, label in enumerate(labels)}
        matrix = np.zeros((len(labels), len(self.concepts)), np.float32)
        missing: list[str] = []
        for column, concept in enumerate(self.concepts):
            for name in {*concept.classes, concept.name}:
                if name in index:
                    matrix[index[name], column] = 1.0
                elif name in concept.classes:
                    missing.append(name)
        self._class_matrix = matrix
        return sorted(missing)

    def describe(
        self,
        probabilities: npt.NDArray[np.float32] | None,
        detections: Sequence[Detection],
        faces: Sequence[Detection],
        threshold: float | None = None,
    ) -> Description:
        """Scores -> tags above their thresholds, in sentence order. `threshold` overrides them all.

        Detector labels that no concept lists (a COCO model's "tie", say) are kept as objects in the
        event above `unlisted_object_threshold` but never reach the sentence: only curated concepts do.
        """
        class_scores = np.zeros(len(self.concepts), np.float32)
        if probabilities is not None and self._class_matrix.shape[0] == probabilities.shape[0]:
            class_scores = np.minimum(probabilities @ self._class_matrix, 1.0)

        people_threshold = self.people.threshold if threshold is None else threshold
        face_threshold = self.people.face_threshold if threshold is None else threshold
        persons = [d for d in detections if d.label in self.people.objects and d.score >= people_threshold]
        kept_faces = tuple(f for f in faces if f.score >= face_threshold)
        people = len(persons) + sum(
            1 for f in kept_faces if not any(_contains(p.box, f.box) for p in persons)
        )

        tags: list[Tag] = []
        kept_objects = list(persons)
        for column, concept in enumerate(self.concepts):
            limit = concept.threshold if threshold is None else threshold
            found = [
                d for d in detections if d.score >= limit and self._object_concept.get(d.label) is concept
            ]
            score = max([float(class_scores[column]), *(d.score for d in found)])
            if score >= limit:
                tags.append(Tag(concept.name, score, concept.group, len(found) if found else None))
                kept_objects += found
        unlisted_limit = self.unlisted_object_threshold if threshold is None else threshold
        kept_objects += [
            d
            for d in detections
            if d.label not in self.people.objects
            and d.label not in self._object_concept
            and d.score >= unlisted_limit
        ]
        tags.sort(key=lambda t: (t.group == SCENE_GROUP, -t.score))
        if people:
            best = max([*(p.score for p in persons), *(f.score for f in kept_faces)])
            tags.insert(0, Tag("person", best, "people", people))
        kept_objects.sort(key=lambda d: -d.score)
        return Description(tuple(tags), people, kept_faces, tuple(kept_objects))


def _contains(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    """Whether the center of `inner` lies inside `outer` (a face inside a person's box)."""
    x, y = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= x <= outer[2] and outer[1] <= y <= outer[3]
