"""Model outputs -> concepts -> the sentence, the way Facebook's automatic alt text spoke.

The concept table is data (`vocabulary.toml`). Concepts form a tree (dog -> animal, rose -> flower
-> plant): a concept's score combines the summed classifier probability of its own and its
descendants' classes (so "dog" is any of 118 breeds, and "animal" any animal) with the best detector
score of their labels, and each concept has its own threshold. The sentence names the most specific confident
concept, never it and an ancestor together; detector boxes are counted ("3 dogs"). People are
counted from person boxes and faces together (`PeopleRule`); faces the expression model finds happy
are "smiling".

Thresholds chosen on labelled photos live beside the table (`thresholds.toml`, written by
`edgetag eval --calibrate`): they override the table's and drop concepts that cannot be said with
enough precision from the sentence (they stay in the JSON, marked `"said": false`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetag.errors import ConfigError
from edgetag.models import Detection, iou

DEFAULT_VOCABULARY = Path(__file__).resolve().parent / "vocabulary.toml"
THRESHOLDS_NAME = "thresholds.toml"
SCENE_GROUP = "scene"
PEOPLE_GROUP = "people"
NOTHING = "No automatic alt text available."
GROUPS = ("animal", "vehicle", "object", "furniture", "food", "plant", "building", SCENE_GROUP)
SMILING = "smiling"
SAME_THING_IOU = 0.7  # boxes of one concept overlapping this much are one thing counted once
SAME_PERSON_IOU = 0.3  # a weak person box overlapping a counted person this much is that person again


@dataclass(frozen=True)
class Concept:
    name: str
    group: str
    threshold: float
    classes: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    parent: str | None = None
    plural: str | None = None
    said: bool = True
    boxes: str = "prove"
    """What a detector box of this concept's labels does: "prove" it (its score is evidence), or only
    "count" it, proving its ancestors. A COCO detector has ten mammals and puts every other one
    into them (a calf is a "dog", a lion a "cat"): its box says "an animal, here", the kind is
    the classifier's to say."""
    parents: tuple[str, ...] = ()  # every ancestor, nearest first (filled in when the tree is built)

    @property
    def plural_name(self) -> str:
        return self.plural or f"{self.name}s"


@dataclass(frozen=True)
class PeopleRule:
    """How people are counted: person detections, plus faces that no person box already contains.

    A person box at `threshold` counts on its own. A weaker one, down to `company_threshold`, counts
    only where someone surely is (a box at `threshold` or a face) and only if it overlaps no person
    already counted: a lone weak "person" is as often a bird or a statue, while weaker boxes beside
    a sure one are mostly the same group, and the detector at times boxes one person twice. None:
    the same as `threshold` (no weaker boxes).
    """

    threshold: float = 0.5
    face_threshold: float = 0.6
    objects: tuple[str, ...] = ("person",)
    smiling_threshold: float = 0.5
    company_threshold: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> PeopleRule:
        """The [people] table, with unknown keys and bad values named."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"{source}: [people]: unknown keys {', '.join(unknown)}")
        rule = cls(**data)
        for name in ("threshold", "face_threshold", "smiling_threshold", "company_threshold"):
            value = getattr(rule, name)
            if value is not None and (not isinstance(value, int | float) or not 0.0 < value <= 1.0):
                raise ConfigError(f"{source}: [people]: {name} {value!r} is not in (0, 1]")
        return replace(rule, objects=tuple(rule.objects))

    def find(
        self, detections: Sequence[Detection], faces: Sequence[Face], threshold: float | None = None
    ) -> tuple[list[Detection], list[Face]]:
        """The person boxes that count and the faces that are sure enough (`threshold`: for all)."""
        sure = self.threshold if threshold is None else threshold
        company = sure if threshold is not None or self.company_threshold is None else self.company_threshold
        face_limit = self.face_threshold if threshold is None else threshold
        labels = {label.lower() for label in self.objects}
        boxes = sorted((d for d in detections if d.label.lower() in labels), key=lambda d: -d.score)
        persons = [d for d in boxes if d.score >= sure]
        kept_faces = [f for f in faces if f.detection.score >= face_limit]
        if persons or kept_faces:
            for box in boxes:
                if company <= box.score < sure and not _overlaps(box, persons, SAME_PERSON_IOU):
                    persons.append(box)
        return persons, kept_faces

    def count(self, persons: Sequence[Detection], faces: Sequence[Face]) -> int:
        """Person boxes, plus faces whose center lies in no person box (a face the detector missed)."""
        return len(persons) + sum(
            1 for f in faces if not any(_contains(p.box, f.detection.box) for p in persons)
        )


@dataclass(frozen=True)
class Tag:
    concept: str
    score: float
    group: str
    count: int | None = None
    parents: tuple[str, ...] = ()
    said: bool = True
    plural: str | None = None  # for the sentence ("3 sheep"); not in the JSON

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"concept": self.concept, "score": round(self.score, 3)}
        if self.count is not None:
            data["count"] = self.count
        data["parents"] = list(self.parents)
        if not self.said:
            data["said"] = False
        return data

    def is_a(self, concept: str) -> bool:
        """Whether this tag is `concept` or one of its kinds (a "dog" tag is an "animal")."""
        return concept == self.concept or concept in self.parents


@dataclass(frozen=True)
class Face:
    """A face box, with the expression model's probability that it smiles (None: not measured)."""

    detection: Detection
    smile: float | None = None


@dataclass(frozen=True)
class Description:
    """What edgetag says about one photo: the tags in sentence order, people, the kept boxes."""

    tags: tuple[Tag, ...]
    people: int
    faces: tuple[Detection, ...]
    objects: tuple[Detection, ...]
    smiles: tuple[float | None, ...] = ()  # per kept face, in the order of `faces`
    smiling: int = 0
    evidence: dict[str, float] = field(default_factory=dict)  # every concept's score before thresholds

    @property
    def sentence(self) -> str:
        return sentence(self.tags)

    @property
    def said(self) -> tuple[Tag, ...]:
        return tuple(tag for tag in self.tags if tag.said)


def sentence(tags: Sequence[Tag]) -> str:
    """`Image may contain: 2 people, people smiling, 3 dogs and outdoor`.

    People first, then smiling, then objects by confidence, then scenes; counts where boxes were
    counted. Tags marked not to be said are left out.
    """
    said = [tag for tag in tags if tag.said]
    people = next((tag.count or 1 for tag in said if tag.concept == "person"), 0)
    words = [_words(tag, people) for tag in said]
    if not words:
        return NOTHING
    listed = words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
    return f"Image may contain: {listed}"


def _words(tag: Tag, people: int) -> str:
    if tag.concept == "person":
        count = tag.count or 1
        return "1 person" if count == 1 else f"{count} people"
    if tag.concept == SMILING:
        return "smiling" if people == 1 else "people smiling"
    if tag.count is not None and tag.count > 1:
        return f"{tag.count} {tag.plural or tag.concept + 's'}"
    return tag.concept


class Vocabulary:
    """The concept tree, bound to a classifier's labels so scoring is one matrix product."""

    def __init__(
        self,
        concepts: Sequence[Concept],
        people: PeopleRule,
        unlisted_object_threshold: float = 0.5,
        source: str = "",
        count_threshold: float = 0.5,
    ) -> None:
        self.concepts = _with_ancestors(concepts, source)
        self.people = people
        self.unlisted_object_threshold = unlisted_object_threshold
        self.count_threshold = count_threshold
        self.source = source
        self._by_name = {c.name: c for c in self.concepts}
        self._column = {c.name: i for i, c in enumerate(self.concepts)}
        self._class_matrix: npt.NDArray[np.float32] = np.zeros((0, len(self.concepts)), np.float32)
        # Which concepts each detector label is evidence of: its own concept and all their ancestors.
        # A label named like a concept counts too, so a COCO model's "dog" needs no listing.
        people_labels = {label.lower() for label in people.objects}
        self._label_concepts: dict[str, set[int]] = {}  # label -> the concepts its boxes prove
        self._label_counts: dict[str, set[int]] = {}  # label -> the concepts that count its boxes
        for concept in self.concepts:
            lineage = self._lineage(concept)
            proves = lineage if concept.boxes == "prove" else lineage[1:]
            for label in {*(o.lower() for o in concept.objects), concept.name.lower()} - people_labels:
                self._label_concepts.setdefault(label, set()).update(proves)
                self._label_counts.setdefault(label, set()).update(lineage)

    def _lineage(self, concept: Concept) -> list[int]:
        return [self._column[concept.name], *(self._column[p] for p in concept.parents)]

    @classmethod
    def load(
        cls, path: Path | None = None, thresholds: Path | None = None, *, calibrated: bool = True
    ) -> Vocabulary:
        """The table at `path` (the stock one by default) with the calibrated thresholds beside it.

        The stock table takes `thresholds.toml` from its own folder; a table of your own takes one only
        when `thresholds` names it. `calibrated=False` gives the table's own thresholds (to calibrate).
        """
        path = path or DEFAULT_VOCABULARY
        data = _read_toml(path, "vocabulary")
        if not calibrated:
            return cls.from_dict(data, str(path))
        if thresholds is None and path == DEFAULT_VOCABULARY and (path.parent / THRESHOLDS_NAME).exists():
            thresholds = path.parent / THRESHOLDS_NAME
        table = cls.from_dict(data, str(path))
        if thresholds is not None:
            table = table.with_thresholds(_read_toml(thresholds, "thresholds"), str(thresholds))
        return table

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> Vocabulary:
        people = PeopleRule.from_dict(data.get("people", {}), f"vocabulary {source}")
        concepts: list[Concept] = []
        for number, entry in enumerate(data.get("concept", []), start=1):
            where = f"vocabulary {source}: concept {number} ({entry.get('name', '?')})"
            try:
                concept = Concept(
                    name=str(entry["name"]),
                    group=str(entry.get("group", "")),
                    threshold=float(entry["threshold"]),
                    classes=tuple(entry.get("classes", ())),
                    objects=tuple(entry.get("objects", ())),
                    parent=str(entry["parent"]) if "parent" in entry else None,
                    plural=str(entry["plural"]) if "plural" in entry else None,
                    said=bool(entry.get("said", True)),
                    boxes=str(entry.get("boxes", "prove")),
                )
            except (KeyError, TypeError, ValueError) as error:
                raise ConfigError(f"{where}: {error}") from error
            if concept.parent is None and concept.group not in GROUPS:
                raise ConfigError(f"{where}: group {concept.group!r} is not one of {', '.join(GROUPS)}")
            if concept.parent is not None and concept.group:
                raise ConfigError(f"{where}: only a concept without a parent has a group")
            if not 0.0 < concept.threshold <= 1.0:
                raise ConfigError(f"{where}: threshold {concept.threshold} is not in (0, 1]")
            if concept.boxes not in ("prove", "count"):
                raise ConfigError(f"{where}: boxes {concept.boxes!r} is not 'prove' or 'count'")
            concepts.append(concept)
        names = [c.name for c in concepts]
        if len(set(names)) != len(names):
            raise ConfigError(f"vocabulary {source}: a concept name appears twice")
        unlisted, count = (
            _score_setting(data, key, source) for key in ("unlisted_object_threshold", "count_threshold")
        )
        return cls(concepts, people, unlisted, source, count)

    def with_thresholds(self, data: dict[str, Any], source: str = "") -> Vocabulary:
        """A copy with calibrated thresholds: `[concept.NAME] threshold = T, said = false`."""
        calibrated = data.get("concept", {})
        unknown = sorted(set(calibrated) - set(self._by_name))
        if unknown:
            raise ConfigError(f"thresholds {source}: unknown concepts {', '.join(unknown)}")
        concepts = []
        for concept in self.concepts:
            entry = calibrated.get(concept.name, {})
            try:
                threshold = float(entry.get("threshold", concept.threshold))
            except (TypeError, ValueError) as error:
                raise ConfigError(f"thresholds {source}: concept {concept.name}: {error}") from error
            if not 0.0 < threshold <= 1.0:
                raise ConfigError(f"thresholds {source}: concept {concept.name}: {threshold} not in (0, 1]")
            said = concept.said and bool(entry.get("said", True))
            concepts.append(replace(concept, threshold=threshold, said=said, parents=()))
        people = PeopleRule.from_dict(
            {**asdict(self.people), **data.get("people", {})}, f"thresholds {source}"
        )
        calibrated_table = Vocabulary(
            concepts, people, self.unlisted_object_threshold, self.source, self.count_threshold
        )
        calibrated_table._class_matrix = self._class_matrix  # same concepts in the same order
        return calibrated_table

    def concept(self, name: str) -> Concept | None:
        return self._by_name.get(name)

    def kinds_of(self, name: str) -> set[str]:
        """`name` and every concept below it in the tree."""
        return {c.name for c in self.concepts if c.name == name or name in c.parents}

    def bind(self, labels: Sequence[str]) -> list[str]:
        """Prepare scoring for a classifier's labels; returns the listed classes it does not have.

        A concept also takes a class named exactly like itself, so a custom classifier whose labels
        are "cat" and "dog" works with the stock vocabulary. Each class counts for its concepts and
        all their ancestors, once.
        """
        index = {label: i for i, label in enumerate(labels)}
        matrix = np.zeros((len(labels), len(self.concepts)), np.float32)
        missing: list[str] = []
        for concept in self.concepts:
            for name in {*concept.classes, concept.name}:
                if name in index:
                    matrix[index[name], self._lineage(concept)] = 1.0
                elif name in concept.classes:
                    missing.append(name)
        self._class_matrix = matrix
        return sorted(missing)

    def scores(self, probabilities: npt.NDArray[np.float32] | None) -> npt.NDArray[np.float32]:
        """Each concept's classifier score: the summed probability of its and its kinds' classes."""
        if probabilities is None or self._class_matrix.shape[0] != probabilities.shape[0]:
            return np.zeros(len(self.concepts), np.float32)
        summed: npt.NDArray[np.float32] = np.minimum(probabilities @ self._class_matrix, 1.0)
        return summed

    def describe(
        self,
        probabilities: npt.NDArray[np.float32] | None,
        detections: Sequence[Detection],
        faces: Sequence[Detection] | Sequence[Face],
        threshold: float | None = None,
    ) -> Description:
        """Scores -> tags above their thresholds, in sentence order. `threshold` overrides them all.

        Detector labels that no concept lists (a COCO model's "hair drier", say) are kept as objects in
        the event above `unlisted_object_threshold` but never reach the sentence.
        """
        class_scores = self.scores(probabilities)
        people_labels = {label.lower() for label in self.people.objects}
        persons, kept_faces = self.people.find(detections, [_as_face(f) for f in faces], threshold)
        people = self.people.count(persons, kept_faces)

        confident: dict[int, tuple[float, list[Detection]]] = {}
        evidence: dict[str, float] = {}
        for column, concept in enumerate(self.concepts):
            limit = concept.threshold if threshold is None else threshold
            proof = [d for d in detections if column in self._label_concepts.get(d.label.lower(), ())]
            score = _agreeing(float(class_scores[column]), max((d.score for d in proof), default=0.0))
            if score > 0:
                evidence[concept.name] = score
            if score >= limit:
                counted = [d for d in detections if column in self._label_counts.get(d.label.lower(), ())]
                # Boxes that only count are held to the threshold of the concept they prove. Once the
                # concept is said, a box at `count_threshold` counts too: a threshold raised for the
                # sentence's precision must not hide the second bird.
                box_limit = limit
                if concept.boxes == "count" and concept.parent is not None and threshold is None:
                    box_limit = self._by_name[concept.parent].threshold
                if threshold is None:
                    box_limit = min(box_limit, self.count_threshold)
                confident[column] = (score, [d for d in counted if d.score >= box_limit])

        # The most specific confident concepts: drop every ancestor of a concept that is said.
        covered = {p for c in confident if self.concepts[c].said for p in self.concepts[c].parents}
        tags: list[Tag] = []
        kept_objects = list(persons)
        for column, (score, found) in confident.items():
            concept = self.concepts[column]
            if concept.name in covered:
                continue
            count = _count_things(found) if found else None
            group = self._group(concept)
            tags.append(
                Tag(concept.name, score, group, count, concept.parents, concept.said, concept.plural_name)
            )
            kept_objects += [d for d in found if d not in kept_objects]
        unlisted_limit = self.unlisted_object_threshold if threshold is None else threshold
        kept_objects += [
            d
            for d in detections
            if d.label.lower() not in people_labels
            and d.label.lower() not in self._label_counts
            and d.score >= unlisted_limit
        ]
        tags.sort(key=lambda t: (not t.said, t.group == SCENE_GROUP, -t.score))

        smile_limit = self.people.smiling_threshold if threshold is None else max(threshold, 0.5)
        smiles = tuple(f.smile for f in kept_faces)
        smiling = sum(1 for s in smiles if s is not None and s >= smile_limit)
        if smiling:
            best_smile = max(s for s in smiles if s is not None)
            tags.insert(0, Tag(SMILING, best_smile, PEOPLE_GROUP, smiling))
        if people:
            best = max([*(p.score for p in persons), *(f.detection.score for f in kept_faces)])
            tags.insert(0, Tag("person", best, PEOPLE_GROUP, people))
        kept_objects.sort(key=lambda d: -d.score)
        kept = tuple(f.detection for f in kept_faces)
        return Description(tuple(tags), people, kept, tuple(kept_objects), smiles, smiling, evidence)

    def _group(self, concept: Concept) -> str:
        root = self._by_name[concept.parents[-1]] if concept.parents else concept
        return root.group


def _with_ancestors(concepts: Sequence[Concept], source: str) -> tuple[Concept, ...]:
    """The concepts with `parents` filled in; refuses unknown parents and cycles."""
    by_name = {c.name: c for c in concepts}
    result = []
    for concept in concepts:
        chain: list[str] = []
        parent = concept.parent
        while parent is not None:
            if parent not in by_name:
                raise ConfigError(f"vocabulary {source}: concept {concept.name}: unknown parent {parent!r}")
            if parent == concept.name or parent in chain:
                raise ConfigError(f"vocabulary {source}: concept {concept.name}: its parents form a cycle")
            chain.append(parent)
            parent = by_name[parent].parent
        result.append(replace(concept, parents=tuple(chain)))
    return tuple(result)


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{what} {path}: cannot read it ({error})") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{what} {path}: not valid TOML ({error})") from error


def _as_face(face: Detection | Face) -> Face:
    return face if isinstance(face, Face) else Face(face)


def _agreeing(classifier: float, detector: float) -> float:
    """One concept's evidence from both models: two that agree are surer than either alone.

    Read as independent chances of being right (noisy-OR): a classifier's 0.5 and a box's 0.5 make
    0.75, while either alone is unchanged. Thresholds are calibrated on this combined score.
    """
    return 1.0 - (1.0 - classifier) * (1.0 - detector)


def _score_setting(data: dict[str, Any], key: str, source: str) -> float:
    """A table-wide score setting (0..1], 0.5 when absent; anything else is the table's error."""
    value = data.get(key, 0.5)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ConfigError(f"vocabulary {source}: {key} {value!r} is not a score in (0, 1]")
    return float(value)


def _count_things(found: Iterable[Detection]) -> int:
    """Boxes of one concept, counting boxes that overlap heavily (a dog also called a cat) once."""
    kept: list[Detection] = []
    for detection in sorted(found, key=lambda d: -d.score):
        box = np.asarray(detection.box, np.float32)
        if not kept or float(iou(box, np.asarray([k.box for k in kept], np.float32)).max()) < SAME_THING_IOU:
            kept.append(detection)
    return len(kept)


def _overlaps(box: Detection, others: Sequence[Detection], limit: float) -> bool:
    """Whether the box overlaps any of the others by at least `limit` (intersection over union)."""
    if not others:
        return False
    overlap = iou(np.asarray(box.box, np.float32), np.asarray([o.box for o in others], np.float32))
    return float(overlap.max()) >= limit


def _contains(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    """Whether the center of `inner` lies inside `outer` (a face inside a person's box)."""
    x, y = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= x <= outer[2] and outer[1] <= y <= outer[3]
