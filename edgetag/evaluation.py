"""How well edgetag describes photos, measured on labelled real photos; thresholds chosen on them.

A labels file is JSON Lines, one photo a line (eval/README.md): the concepts a person saw in it,
how many people and how many of them smile, and whether the photo belongs to the calibration part
(thresholds are chosen there) or the test part (figures are reported there, never tuned on).

A concept's truth is hierarchical: a photo labelled "dog" also holds "animal". A prediction is what
the sentence says: a said "dog" is also a said "animal". Concepts a labeller marked ambiguous are
not scored either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgetag.errors import ConfigError, PhotoError
from edgetag.tagger import Observation, Tagger
from edgetag.vocabulary import SMILING, PeopleRule, Vocabulary

SPLITS = ("calibration", "test")
TARGET_PRECISION = 0.8
# How sure a threshold's precision must be: Wilson's lower bound this many standard errors down
# (1.28: one-sided 90%). Chosen by cross-validation inside the calibration part (docs/quality.md):
# at one standard error, held-out halves saw twice as many said concepts fall below 0.8.
SURE_Z = 1.28
THRESHOLD_GRID = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))  # 0.1 .. 0.95


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    split: str
    concepts: frozenset[str]
    ambiguous: frozenset[str]
    people: int
    smiling: int
    composite: str | None = None
    people_max: int | None = None  # a range where a count cannot be exact (a crowd, tiny figures)
    smiling_max: int | None = None  # a range where a smile is faint

    @property
    def people_range(self) -> tuple[int, int]:
        return self.people, self.people if self.people_max is None else self.people_max

    @property
    def smiling_range(self) -> tuple[int, int]:
        return self.smiling, self.smiling if self.smiling_max is None else self.smiling_max


def read_labels(paths: Sequence[Path]) -> list[LabelledPhoto]:
    """Every labelled photo in the given .jsonl files (or folders of them), photos resolved beside them."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise ConfigError(f"no labels files in {', '.join(map(str, paths))}")
    photos: list[LabelledPhoto] = []
    for labels in files:
        try:
            lines = labels.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"labels {labels}: cannot read it ({error})") from error
        for number, line in enumerate(lines, start=1):
            if line.strip():
                photos.append(_labelled_photo(line, labels, number))
    return photos


def _labelled_photo(line: str, labels: Path, number: int) -> LabelledPhoto:
    where = f"labels {labels}, line {number}"
    try:
        entry = json.loads(line)
        name = str(entry["file"])
        split = str(entry["split"])
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        people, people_max = _count_range(entry.get("people", 0), "people")
        smiling, smiling_max = _count_range(entry.get("smiling", 0), "smiling")
        if smiling > people_max:
            raise ValueError(f"{smiling} smiling of at most {people_max} people")
        concepts = frozenset(str(c) for c in entry.get("concepts", ()))
        ambiguous = frozenset(str(c) for c in entry.get("ambiguous", ()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from error
    # Photos live beside the labels file, or beside the folder of labels files (eval/labels/*.jsonl).
    candidates = [labels.parent / name, labels.parent.parent / name]
    path = next((c for c in candidates if c.exists()), candidates[0])
    composite = entry.get("composite")
    return LabelledPhoto(
        path, split, concepts, ambiguous, people, smiling, composite and str(composite),
        people_max if people_max != people else None, smiling_max if smiling_max != smiling else None,
    )  # fmt: skip


def _count_range(value: Any, what: str) -> tuple[int, int]:
    """A count as labelled: a number, or [fewest, most] where it cannot be exact."""
    bounds = value if isinstance(value, list) else [value, value]
    if len(bounds) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) for n in bounds):
        raise ValueError(f"{what}: {value!r} is not a count or a [fewest, most] range of counts")
    low, high = bounds
    if not 0 <= low <= high:
        raise ValueError(f"{what}: {value!r} is not a count or a [fewest, most] range of counts")
    return low, high


@dataclass
class Outcome:
    """One labelled photo and what edgetag made of it."""

    photo: LabelledPhoto
    truth: frozenset[str]  # the labels and all their ancestors
    ignored: frozenset[str]  # ambiguous concepts (and their ancestors) that are not true
    said: frozenset[str]  # the said tags and all their ancestors
    evidence: dict[str, float]
    people: int
    smiling: int
    sentence: str

    @property
    def people_right(self) -> bool:
        low, high = self.photo.people_range
        return low <= self.people <= high

    @property
    def smiling_right(self) -> bool:
        """Whether anyone smiles, as labelled; a faint smile (a range from 0) is right either way."""
        low, high = self.photo.smiling_range
        return low <= self.smiling <= high if self.smiling == 0 or low == 0 else True

    @property
    def described(self) -> bool:
        """Automatic alt text's bar: a correct concept named, and the people count right.

        A photo that holds nothing the vocabulary knows and no one is described by saying nothing
        wrong ("No automatic alt text available." is then the right description).
        """
        if not self.truth and self.photo.people_range[1] == 0:
            return not self.wrong and self.people == 0
        named_right = bool(self.said & self.truth) or (self.people > 0 and self.people_right)
        return named_right and self.people_right

    @property
    def wrong(self) -> frozenset[str]:
        return self.said - self.truth - self.ignored


def closure(vocabulary: Vocabulary, names: Iterable[str]) -> frozenset[str]:
    """Names and all their ancestors in the vocabulary's tree."""
    result: set[str] = set()
    for name in names:
        result.add(name)
        concept = vocabulary.concept(name)
        if concept is not None:
            result.update(concept.parents)
    return frozenset(result)


def outcome(vocabulary: Vocabulary, photo: LabelledPhoto, seen: Observation) -> Outcome:
    """Describe what the models saw with this vocabulary, and compare it with the labels."""
    described = vocabulary.describe(seen.probabilities, seen.detections, seen.faces)
    truth = closure(vocabulary, photo.concepts)
    ignored = closure(vocabulary, photo.ambiguous) - truth
    said = closure(vocabulary, (t.concept for t in described.said if t.concept not in ("person", SMILING)))
    return Outcome(
        photo, truth, ignored, said, dict(described.evidence), described.people, described.smiling,
        described.sentence,
    )  # fmt: skip


def observe(tagger: Tagger, photos: Sequence[LabelledPhoto]) -> list[Observation]:
    """Run the models on every labelled photo; a photo that cannot be read is an error, not a skip."""
    observations = []
    for photo, (_, seen) in zip(photos, tagger.observe_files([p.path for p in photos]), strict=True):
        if isinstance(seen, PhotoError):
            raise ConfigError(f"labelled photo {photo.path}: {seen}")
        observations.append(seen)
    return observations


def outcomes(
    vocabulary: Vocabulary, photos: Sequence[LabelledPhoto], seen: Sequence[Observation]
) -> list[Outcome]:
    return [outcome(vocabulary, photo, observed) for photo, observed in zip(photos, seen, strict=True)]


# --- figures --------------------------------------------------------------------------------------


@dataclass
class ConceptFigures:
    concept: str
    said: bool
    threshold: float
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def support(self) -> int:
        """Photos that hold the concept."""
        return self.true_positives + self.false_negatives

    @property
    def precision(self) -> float | None:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.support if self.support else None


@dataclass
class Report:
    split: str
    photos: int
    concepts: list[ConceptFigures]
    people_right: int
    smiling_right: int
    smiling_true_positives: int
    smiling_predicted: int
    smiling_actual: int
    described: int
    described_without_error: int
    failures: list[Outcome] = field(default_factory=list)

    def share(self, count: int) -> float:
        return count / self.photos if self.photos else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "photos": self.photos,
            "described": round(self.share(self.described), 3),
            "described_without_error": round(self.share(self.described_without_error), 3),
            "people_count": round(self.share(self.people_right), 3),
            "smiling": round(self.share(self.smiling_right), 3),
            "concepts": [
                {"concept": c.concept, "said": c.said, "threshold": c.threshold, "support": c.support,
                 "tp": c.true_positives, "fp": c.false_positives, "fn": c.false_negatives,
                 "precision": _round(c.precision), "recall": _round(c.recall)}
                for c in self.concepts
            ],
        }  # fmt: skip


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(vocabulary: Vocabulary, outcomes: Sequence[Outcome], split: str) -> Report:
    chosen = [o for o in outcomes if split in ("all", o.photo.split)]
    figures = {c.name: ConceptFigures(c.name, c.said, c.threshold) for c in vocabulary.concepts}
    for item in chosen:  # each concept: true and false positives and misses, photo by photo
        for name, concept in figures.items():
            if name in item.ignored:
                continue
            held, said = name in item.truth, name in item.said
            concept.true_positives += held and said
            concept.false_positives += said and not held
            concept.false_negatives += held and not said
    scored = [c for c in figures.values() if c.support or c.false_positives]
    scored.sort(key=lambda c: (-c.support, c.concept))
    smiled = [o for o in chosen if o.smiling > 0]
    return Report(
        split=split,
        photos=len(chosen),
        concepts=scored,
        people_right=sum(o.people_right for o in chosen),
        smiling_right=sum(o.smiling_right for o in chosen),
        smiling_true_positives=sum(o.photo.smiling > 0 for o in smiled),
        smiling_predicted=sum(o.photo.smiling > 0 or not o.photo.smiling_range[1] for o in smiled),
        smiling_actual=sum(o.photo.smiling > 0 for o in chosen),
        described=sum(o.described for o in chosen),
        described_without_error=sum(o.described and not o.wrong for o in chosen),
        failures=[o for o in chosen if not o.described or o.wrong],
    )


def format_report(result: Report, min_support: int = 0) -> str:
    """The figures as text: totals first, then a row per concept (precision and recall)."""

    def pct(value: float | None) -> str:
        return "   -" if value is None else f"{value * 100:4.0f}"

    lines = [
        f"{result.split} part: {result.photos} photos",
        f"  described correctly (a right concept, people count right): {result.described:4d}"
        f"  {result.share(result.described):6.1%}",
        f"  ... and nothing wrong named:                              {result.described_without_error:4d}"
        f"  {result.share(result.described_without_error):6.1%}",
        f"  people count right:                                       {result.people_right:4d}"
        f"  {result.share(result.people_right):6.1%}",
        f"  smiling right (said when someone smiles, else not):       {result.smiling_right:4d}"
        f"  {result.share(result.smiling_right):6.1%}"
        f"   ({result.smiling_true_positives} of {result.smiling_predicted} said right;"
        f" {result.smiling_actual} photos with a smile)",
        "",
        f"  {'concept':<22} {'said':>4} {'thr':>5} {'photos':>6} {'tp':>4} {'fp':>4} {'fn':>4}"
        f" {'prec%':>5} {'rec%':>5}",
    ]
    for c in result.concepts:
        if c.support < min_support and not c.false_positives:
            continue
        lines.append(
            f"  {c.concept:<22} {'yes' if c.said else 'no':>4} {c.threshold:5.2f} {c.support:6d}"
            f" {c.true_positives:4d} {c.false_positives:4d} {c.false_negatives:4d}"
            f" {pct(c.precision):>5} {pct(c.recall):>5}"
        )
    return "\n".join(lines)


# --- calibration ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    concept: str
    threshold: float
    said: bool
    positives: int
    precision: float | None
    recall: float | None
    why: str


def choose_thresholds(vocabulary: Vocabulary, outcomes: Sequence[Outcome]) -> list[Choice]:
    """Each concept's threshold on the calibration part: the lowest that keeps precision >= 0.8.

    "Keeps" is meant with a margin: at the chosen threshold, precision must be at least 0.8 even
    SURE_Z standard errors down (Wilson's lower bound), so that seven right and none wrong is enough
    but a few lucky photos are not; and at every higher threshold precision stays >= 0.8. Scores are the
    concepts' own evidence (before any threshold). A concept that says something wrong too often
    at every threshold is not said.

    A concept with too little evidence of its own to be sure either way (most fine kinds: a few
    labelled photos each) takes the threshold that the most specific of those concepts reach
    together, their photos pooled: one concept's three right are not proof, thirty such concepts'
    are. It is raised above its own false alarms; without a pooled threshold, the table's stands.
    """
    calibration = [o for o in outcomes if o.photo.split == "calibration"]
    scored: dict[str, list[tuple[float, bool]]] = {}
    choices = []
    for concept in vocabulary.concepts:
        scored[concept.name] = [(o.evidence.get(concept.name, 0.0), concept.name in o.truth)
                                for o in calibration if concept.name not in o.ignored]  # fmt: skip
        choices.append(_choose(concept.name, concept.threshold, concept.said, scored[concept.name]))
    thin = [c.concept for c in choices if c.why in (THIN, RAISED)]
    # A broader concept repeats its kinds' evidence on the same photos: pool only the most specific.
    broader = {parent for c in vocabulary.concepts if c.name in thin for parent in c.parents}
    pooled = _surely_precise([case for name in thin if name not in broader for case in scored[name]])
    if pooled is None:
        return choices
    return [_pool(c, pooled, scored[c.concept]) if c.concept in thin else c for c in choices]


THIN = "too little evidence: as the table"
RAISED = "raised above false alarms"
POOLED = "thin evidence: pooled with the other thin concepts"


def precision_lower_bound(right: int, wrong: int, z: float = SURE_Z) -> float:
    """Wilson's score interval, lower end: the precision we are fairly sure of from this many cases."""
    n = right + wrong
    if not n:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def _said_at(scored: list[tuple[float, bool]], threshold: float) -> tuple[int, int]:
    """(right, wrong) among the cases whose score reaches the threshold."""
    right = sum(1 for score, held in scored if score >= threshold and held)
    wrong = sum(1 for score, held in scored if score >= threshold and not held)
    return right, wrong


def _precise_from(scored: list[tuple[float, bool]], threshold: float) -> bool:
    """Precision >= target at this threshold and every higher one that predicts anything."""
    for t in (g for g in THRESHOLD_GRID if g >= threshold):
        right, wrong = _said_at(scored, t)
        if right + wrong and right / (right + wrong) < TARGET_PRECISION:
            return False
    return True


def _surely_precise(
    scored: list[tuple[float, bool]], candidates: Iterable[float] = THRESHOLD_GRID
) -> float | None:
    """The lowest threshold that keeps precision, sure of it by Wilson's lower bound; None if none."""
    for threshold in sorted(candidates):
        if (
            _precise_from(scored, threshold)
            and precision_lower_bound(*_said_at(scored, threshold)) >= TARGET_PRECISION
        ):
            return threshold
    return None


def _figures(scored: list[tuple[float, bool]], threshold: float) -> tuple[int, float | None, float | None]:
    """Labelled photos, precision and recall at this threshold."""
    positives = sum(held for _, held in scored)
    right, wrong = _said_at(scored, threshold)
    precision = right / (right + wrong) if right + wrong else None
    return positives, precision, (right / positives if positives else None)


def _choose(name: str, default: float, said: bool, scored: list[tuple[float, bool]]) -> Choice:
    if not said:
        return Choice(name, default, False, *_figures(scored, default), "not said by the table")
    threshold = _surely_precise(scored, {*THRESHOLD_GRID, default})
    if threshold is not None:
        return Choice(name, threshold, True, *_figures(scored, threshold), "calibrated")
    # No threshold is surely precise. Where the evidence is thin the table's threshold stands, raised
    # above the false alarms seen if it still says something right there (or there is nothing right
    # to say: no labelled photo, or none it ever fired on); else the concept is not said.
    positives = sum(held for _, held in scored)
    never_fired = _said_at(scored, default) == (0, 0)
    for threshold in sorted({*(t for t in THRESHOLD_GRID if t >= default), default}):
        if _precise_from(scored, threshold) and (
            _said_at(scored, threshold)[0] or not positives or never_fired
        ):
            why = THIN if threshold == default else RAISED
            return Choice(name, threshold, True, *_figures(scored, threshold), why)
    return Choice(name, default, False, *_figures(scored, default), "precision below 0.8 at every threshold")


def _pool(choice: Choice, pooled: float, scored: list[tuple[float, bool]]) -> Choice:
    """A thinly evidenced concept at the pooled threshold, or above its own false alarms."""
    own = next((t for t in sorted(THRESHOLD_GRID) if _precise_from(scored, t)), choice.threshold)
    threshold = max(pooled, own)
    return Choice(choice.concept, threshold, True, *_figures(scored, threshold), POOLED)


PERSON_GRID = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
FACE_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
SMILE_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def choose_people(
    vocabulary: Vocabulary, photos: Sequence[LabelledPhoto], seen: Sequence[Observation]
) -> dict[str, float]:
    """Person, company, face and smile thresholds with the best accuracy on the calibration part.

    People counts decide the first three (`PeopleRule`: a person box on its own, a weaker one where
    someone surely is, a face); then, with those, smiling decides the fourth. Ties go to the
    thresholds nearest the table's.
    """
    part = [(p, s) for p, s in zip(photos, seen, strict=True) if p.split == "calibration"]
    rule = vocabulary.people
    table_company = rule.threshold if rule.company_threshold is None else rule.company_threshold

    def counted_right(candidate: PeopleRule) -> int:
        right = 0
        for photo, observed in part:
            low, high = photo.people_range
            right += low <= candidate.count(*candidate.find(observed.detections, observed.faces)) <= high
        return right

    def people_key(triple: tuple[float, float, float]) -> tuple[int, float]:
        person, company, face = triple
        distance = (
            abs(person - rule.threshold) + abs(company - table_company) + abs(face - rule.face_threshold)
        )
        candidate = replace(rule, threshold=person, company_threshold=company, face_threshold=face)
        return counted_right(candidate), -distance

    triples = [(p, c, f) for p in PERSON_GRID for c in PERSON_GRID if c <= p for f in FACE_GRID]
    person, company, face = max(triples, key=people_key)
    chosen = {"threshold": person, "company_threshold": company, "face_threshold": face}
    counted = vocabulary.with_thresholds({"people": chosen})

    def smile_key(threshold: float) -> tuple[int, float]:
        table = counted.with_thresholds({"people": {"smiling_threshold": threshold}})
        right = sum(outcome(table, p, s).smiling_right for p, s in part)
        return right, -abs(threshold - rule.smiling_threshold)

    smile = max(SMILE_GRID, key=smile_key)
    return {**chosen, "smiling_threshold": smile}


def thresholds_toml(choices: Sequence[Choice], people: dict[str, float], photos: int) -> str:
    """The calibrated thresholds as edgetag/thresholds.toml (read by `Vocabulary.load`)."""
    lines = [
        "# Thresholds chosen on the calibration part of the labelled photos (eval/), written by",
        "# `edgetag eval eval/labels --calibrate edgetag/thresholds.toml`. Do not edit by hand: relabel",
        f"# and recalibrate. {photos} calibration photos; target precision {TARGET_PRECISION}.",
        "# said = false: the concept reached that precision at no threshold; it stays in the JSON only.",
        "",
        "[people]",
        *(f"{key} = {value}" for key, value in people.items()),
        "",
    ]
    for choice in choices:
        lines.append(f'[concept."{choice.concept}"]')
        lines.append(f"threshold = {choice.threshold}")
        if not choice.said:
            lines.append("said = false")
        precision = "-" if choice.precision is None else f"{choice.precision:.2f}"
        recall = "-" if choice.recall is None else f"{choice.recall:.2f}"
        lines.append(f"# {choice.why}; {choice.positives} labelled; precision {precision}, recall {recall}")
        lines.append("")
    return "\n".join(lines)
