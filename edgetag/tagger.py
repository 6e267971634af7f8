"""One photo through the whole core: decode -> infer (classifier, detector, faces, expressions) -> describe.

`Tagger` is what both `edgetag tag` and the daemon use; it owns the loaded models (built once) and
the vocabulary, and turns a photo into a `TagResult`, whose JSON form is the documented contract.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgetag.config import threads_problem
from edgetag.errors import ModelError, PhotoError
from edgetag.imaging import ImageLimits, Photo, decode, from_image, load_photo
from edgetag.modelpack import ModelCard, load_cards
from edgetag.models import (
    Classifier,
    Detection,
    DetectorModel,
    ExpressionModel,
    FaceDetector,
    ImageModel,
    ModelInfo,
    ModelInput,
    load_custom_model,
    load_pack_model,
)
from edgetag.runtime import FloatArray
from edgetag.vocabulary import Description, Face, Vocabulary

TOP_CLASSES = 5
MIN_CLASS_SCORE = 0.05
NO_MODEL = "none"


@dataclass(frozen=True)
class ModelSettings:
    """Which models to use: a pack name, a path to your own .tflite (with its labels), or "none"."""

    classifier: str = "efficientnet-lite0"
    classifier_labels: Path | None = None
    detector: str = "nanodet-g"
    detector_labels: Path | None = None
    faces: str = "blazeface"
    expressions: str = "emotion-fer"  # used only with a face model
    threads: int = 0
    vocabulary: Path | None = None


@dataclass(frozen=True)
class PreparedPhoto:
    """A decoded photo with each model's input ready: what decoding hands to inference."""

    photo: Photo
    classifier: ModelInput | None
    detector: ModelInput | None
    faces: ModelInput | None
    timing_ms: dict[str, float]


@dataclass(frozen=True)
class Observation:
    """What the models saw in one photo, before the vocabulary's thresholds: enough to describe it
    again with other thresholds (calibration) without running the models twice."""

    photo: Photo
    probabilities: FloatArray | None
    detections: tuple[Detection, ...]
    faces: tuple[Face, ...]
    timing_ms: dict[str, float]
    started: float


@dataclass(frozen=True)
class TagResult:
    """Everything edgetag says about one photo. `to_dict()` is the JSON contract (schema in docs/)."""

    photo: Photo
    description: Description
    classes: tuple[tuple[str, float], ...]
    models: tuple[ModelInfo, ...]
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def sentence(self) -> str:
        return self.description.sentence

    def to_dict(self) -> dict[str, Any]:
        described = self.description
        return {
            "photo": {"name": self.photo.name, "width": self.photo.width, "height": self.photo.height},
            "sentence": described.sentence,
            "tags": [tag.to_dict() for tag in described.tags],
            "people": described.people,
            "faces": [_face_dict(face, smile) for face, smile in _with_smiles(described)],
            "objects": [_box_dict(obj, with_label=True) for obj in described.objects],
            "classes": [{"label": label, "score": round(score, 3)} for label, score in self.classes],
            "models": [{"name": m.name, "role": m.role, "sha256": m.sha256} for m in self.models],
            "timing_ms": {step: round(ms, 2) for step, ms in self.timing_ms.items()},
        }


def _with_smiles(described: Description) -> list[tuple[Detection, float | None]]:
    smiles = described.smiles or (None,) * len(described.faces)
    return list(zip(described.faces, smiles, strict=True))


def _face_dict(face: Detection, smile: float | None) -> dict[str, Any]:
    """A face is a score, a box and, when the expression model ran, how likely it smiles: no more."""
    data = _box_dict(face, with_label=False)
    if smile is not None:
        data["smile"] = round(smile, 3)
    return data


def _box_dict(detection: Detection, with_label: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"label": detection.label} if with_label else {}
    data.update(score=round(detection.score, 3), box=list(detection.box))
    return data


class Tagger:
    """The loaded models and vocabulary; tags one photo at a time (one thread at a time)."""

    def __init__(
        self,
        classifier: Classifier | None,
        detector: DetectorModel | None,
        faces: FaceDetector | None,
        vocabulary: Vocabulary,
        *,
        expressions: ExpressionModel | None = None,
        threshold: float | None = None,
        limits: ImageLimits | None = None,
    ) -> None:
        self.classifier, self.detector, self.faces = classifier, detector, faces
        self.expressions = expressions if faces is not None else None
        self.threshold = threshold
        self.limits = limits or ImageLimits()
        loaded: list[ImageModel] = [m for m in (classifier, detector, faces) if m is not None]
        self.models = tuple(m.info for m in (*loaded, self.expressions) if m is not None)
        if not loaded:
            raise ModelError("no models selected: choose at least a classifier, a detector or faces")
        self.working_side = max(max(m.input.width, m.input.height) for m in loaded)
        self.bind(vocabulary)

    def bind(self, vocabulary: Vocabulary) -> None:
        """Describe with this vocabulary from now on (bound to the classifier's labels)."""
        if self.classifier is not None:
            vocabulary.bind(self.classifier.labels)
        self.vocabulary = vocabulary

    @classmethod
    def from_settings(
        cls, settings: ModelSettings, threshold: float | None = None, limits: ImageLimits | None = None
    ) -> Tagger:
        """Load the chosen models (checksums and labels checked) and the vocabulary."""
        problem = threads_problem(settings.threads)
        if problem:  # not the model's fault: LiteRT would blame the model file
            raise ModelError(f"threads: {problem}")
        cards = load_cards()
        threads = settings.threads or None
        min_score = threshold if threshold is not None and threshold < 0.25 else None

        def pick(choice: str, role: str, labels: Path | None) -> ImageModel | None:
            if choice.lower() in (NO_MODEL, ""):
                return None
            if choice in cards:
                card = cards[choice]
                _check_role(card, role)
                return load_pack_model(card, threads, min_score)
            path = Path(choice).expanduser()
            if path.suffix != ".tflite" and not path.exists():
                known = ", ".join(sorted(c.name for c in cards.values() if c.role == role)) or "none"
                raise ModelError(f"{role} {choice!r}: not a pack model ({known}) nor a .tflite file")
            if role in ("faces", "expressions"):
                raise ModelError(f"{role}: only the pack's {role} models can be used, not {choice!r}")
            return load_custom_model(role, path, labels, threads, min_score)

        classifier = pick(settings.classifier, "classifier", settings.classifier_labels)
        detector = pick(settings.detector, "detector", settings.detector_labels)
        faces = pick(settings.faces, "faces", None)
        expressions = pick(settings.expressions, "expressions", None) if faces is not None else None
        vocabulary = Vocabulary.load(settings.vocabulary)
        assert classifier is None or isinstance(classifier, Classifier)
        assert detector is None or isinstance(detector, DetectorModel)
        assert faces is None or isinstance(faces, FaceDetector)
        assert expressions is None or isinstance(expressions, ExpressionModel)
        return cls(
            classifier,
            detector,
            faces,
            vocabulary,
            expressions=expressions,
            threshold=threshold,
            limits=limits,
        )

    def decode(self, data: bytes, name: str) -> Photo:
        return decode(data, name, self.working_side, self.limits)

    def load(self, path: Path, name: str | None = None) -> Photo:
        return load_photo(path, self.working_side, self.limits, name)

    # Decode and prepare: thread-safe, so it can run ahead of inference on another thread.

    def prepare(self, photo: Photo, decode_ms: float = 0.0) -> PreparedPhoto:
        """Every model's input tensor for a decoded photo."""
        started = time.perf_counter()
        inputs = [m.prepare(photo.image) if m else None for m in (self.classifier, self.detector, self.faces)]
        timing = {"decode": decode_ms, "prepare": _since(started)}
        return PreparedPhoto(photo, inputs[0], inputs[1], inputs[2], timing)

    def prepare_file(self, path: Path, name: str | None = None) -> PreparedPhoto:
        started = time.perf_counter()
        photo = self.load(path, name)
        return self.prepare(photo, decode_ms=_since(started))

    def prepare_image(self, image: Image.Image, name: str) -> PreparedPhoto:
        started = time.perf_counter()
        photo = from_image(image, name, self.working_side)
        return self.prepare(photo, decode_ms=_since(started))

    def prepare_bytes(self, data: bytes, name: str) -> PreparedPhoto:
        started = time.perf_counter()
        photo = self.decode(data, name)
        return self.prepare(photo, decode_ms=_since(started))

    # Inference: the interpreters are not thread-safe; one thread calls this.

    def observe(self, prepared: PreparedPhoto) -> Observation:
        """Run every loaded model on a prepared photo: what they saw, before any threshold."""
        timing = dict(prepared.timing_ms)
        started = time.perf_counter()
        probabilities = None
        if self.classifier is not None and prepared.classifier is not None:
            probabilities = self.classifier.run(prepared.classifier)
            timing["classifier"] = _since(started)
        detections: list[Detection] = []
        if self.detector is not None and prepared.detector is not None:
            step = time.perf_counter()
            detections = self.detector.run(prepared.detector)
            timing["detector"] = _since(step)
        faces: list[Detection] = []
        if self.faces is not None and prepared.faces is not None:
            step = time.perf_counter()
            faces = self.faces.run(prepared.faces)
            timing["faces"] = _since(step)
        measured: list[Face] = [Face(face) for face in faces]
        if self.expressions is not None and faces:
            step = time.perf_counter()
            measured = [Face(face, self.expressions.smile(prepared.photo.image, face)) for face in faces]
            timing["expressions"] = _since(step)
        return Observation(prepared.photo, probabilities, tuple(detections), tuple(measured), timing, started)

    def infer(self, prepared: PreparedPhoto) -> TagResult:
        """Run every loaded model on a prepared photo and describe what they saw."""
        seen = self.observe(prepared)
        description = self.vocabulary.describe(
            seen.probabilities, seen.detections, seen.faces, self.threshold
        )
        classes = self._top_classes(seen.probabilities)
        timing = dict(seen.timing_ms)
        timing["total"] = sum(prepared.timing_ms.values()) + _since(seen.started)
        return TagResult(prepared.photo, description, classes, self.models, timing)

    def observe_files(self, paths: Iterable[Path]) -> Iterator[tuple[Path, Observation | PhotoError]]:
        """What the models saw in each file, decoding ahead on a second thread (for evaluation)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgetag-decode") as decoder:
            pending = deque((path, decoder.submit(self.prepare_file, path)) for path in paths)
            while pending:
                path, future = pending.popleft()
                try:
                    yield path, self.observe(future.result())
                except PhotoError as error:
                    yield path, error

    def tag(self, photo: Photo) -> TagResult:
        return self.infer(self.prepare(photo))

    def tag_file(self, path: Path, name: str | None = None) -> TagResult:
        return self.infer(self.prepare_file(path, name))

    def tag_bytes(self, data: bytes, name: str) -> TagResult:
        return self.infer(self.prepare_bytes(data, name))

    def tag_files(
        self, paths: Iterable[Path], lookahead: int = 2
    ) -> Iterator[tuple[Path, TagResult | PhotoError]]:
        """Tag many files in order, decoding the next ones on a second thread during inference.

        A photo that cannot be tagged comes back as its PhotoError; the others are still tagged.
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgetag-decode") as decoder:
            pending: deque[tuple[Path, Future[PreparedPhoto]]] = deque()
            for path in paths:
                pending.append((path, decoder.submit(self.prepare_file, path)))
                if len(pending) > lookahead:
                    yield self._finish(*pending.popleft())
            while pending:
                yield self._finish(*pending.popleft())

    def _finish(self, path: Path, prepared: Future[PreparedPhoto]) -> tuple[Path, TagResult | PhotoError]:
        try:
            return path, self.infer(prepared.result())
        except PhotoError as error:
            return path, error

    def _top_classes(self, probabilities: np.ndarray[Any, Any] | None) -> tuple[tuple[str, float], ...]:
        if probabilities is None or self.classifier is None:
            return ()
        best = np.argsort(-probabilities)[:TOP_CLASSES]
        labels = self.classifier.labels
        return tuple(
            (labels[i], float(probabilities[i])) for i in best if probabilities[i] >= MIN_CLASS_SCORE
        )


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _check_role(card: ModelCard, role: str) -> None:
    if card.role != role:
        raise ModelError(f"{card.name} is a {card.role} model, not a {role} model")
