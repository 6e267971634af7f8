"""What every model family shares: the result types, box maths, and a model fed with one photo.

Boxes everywhere are (x_min, y_min, x_max, y_max) as fractions of the photo's width and height.
A family module (classifier.py, ssd.py, faces.py...) subclasses `ImageModel` and registers a loader
for the output format its model cards name, with `@output_format(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from edgetag.errors import ModelError
from edgetag.imaging import Placement, fit
from edgetag.modelpack import InputSpec, ModelCard
from edgetag.runtime import FloatArray, TFLiteModel


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ModelInput:
    """One model's input for one photo: the tensor as the model stores it, and where it sits on the photo."""

    tensor: npt.NDArray[Any]
    placement: Placement


@dataclass(frozen=True)
class ModelInfo:
    """Name and sha256 of a model in use: every event says which models made it."""

    name: str
    role: str
    sha256: str
    path: Path


# --- box maths shared by the detectors -------------------------------------------------------------


def sigmoid(values: FloatArray) -> FloatArray:
    result: FloatArray = (1.0 / (1.0 + np.exp(-values))).astype(np.float32)
    return result


def box_area(boxes: FloatArray) -> FloatArray:
    area: FloatArray = np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )
    return area


def iou(box: FloatArray, boxes: FloatArray) -> FloatArray:
    """Intersection over union of one box with each of [N, 4] boxes."""
    low = np.maximum(box[:2], boxes[:, :2])
    high = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=1)
    union = box_area(box) + box_area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def non_max_suppression(
    boxes: FloatArray, scores: FloatArray, iou_threshold: float, max_results: int = 100
) -> list[int]:
    """Greedy NMS: indices of the kept boxes, best first."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[int] = []
    while order and len(kept) < max_results:
        best = int(order.pop(0))
        kept.append(best)
        if order:
            rest = np.asarray(order)
            overlap = iou(boxes[best], boxes[rest])
            order = [int(i) for i in rest[overlap <= iou_threshold]]
    return kept


def make_detection(label: str, score: float, box: npt.NDArray[Any]) -> Detection:
    x_min, y_min, x_max, y_max = (round(float(v), 4) for v in box)
    return Detection(label=label, score=round(score, 4), box=(x_min, y_min, x_max, y_max))


# --- a model fed with photos -----------------------------------------------------------------------


@dataclass
class ImageModel:
    """A TFLite model fed with one photo: fits the photo, scales pixels to the model's value range."""

    info: ModelInfo
    model: TFLiteModel
    input: InputSpec

    def __post_init__(self) -> None:
        shape = self.model.input.shape
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"{self.info.name}: input shape {list(shape)} is not [1, H, W, 3]")
        if (shape[1], shape[2]) != (self.input.height, self.input.width):
            raise ModelError(
                f"{self.info.name}: the model's input is {shape[2]}x{shape[1]}, "
                f"its card says {self.input.width}x{self.input.height}"
            )
        actual = self.model.input.dtype.name
        if self.input.dtype is not None and actual != self.input.dtype:
            raise ModelError(
                f"{self.info.name}: the model's input is {actual}, its card says {self.input.dtype}"
            )

        # Pixel value -> what the input tensor stores, for all 256 pixel values at once: the card's value
        # range, then the tensor's own quantization. Preparing an input is then one table lookup.
        low, high = self.input.value_range
        self._pixel_table = self.model.input.quantize(np.linspace(low, high, 256, dtype=np.float32))

    def prepare(self, image: Image.Image) -> ModelInput:
        """The model's input tensor for a photo, ready to load. Thread-safe: touches no interpreter."""
        pixels, placement = fit(image, self.input.width, self.input.height, self.input.fit)
        return ModelInput(np.take(self._pixel_table, pixels), placement)

    def check_outputs_fit(self, labels: list[str], what: str) -> None:
        """The first output has one value per label, or the label file belongs to another model."""
        values = self.model.outputs[0].shape[-1]
        if values != len(labels):
            raise ModelError(
                f"{self.info.name}: the model has {values} {what} but its label file has {len(labels)} labels"
            )

    def invoke(self, prepared: ModelInput) -> list[FloatArray]:
        """Run the interpreter on a prepared input; real-valued outputs. Interpreter thread only."""
        self.model.set_stored_input(prepared.tensor)
        self.model.invoke()
        return self.model.read_outputs()


class DetectorModel(ImageModel):
    """A model whose result is a list of boxes (persons, objects or faces)."""

    def run(self, prepared: ModelInput) -> list[Detection]:
        raise NotImplementedError

    def detect(self, image: Image.Image) -> list[Detection]:
        return self.run(self.prepare(image))


# --- the registry of output formats ----------------------------------------------------------------


@dataclass(frozen=True)
class PackModelSpec:
    """What a loader gets: the card, the opened interpreter, its identity, and the labels read."""

    card: ModelCard
    info: ModelInfo
    model: TFLiteModel
    labels: list[str]
    min_score: float | None


Loader = Callable[[PackModelSpec], ImageModel]


@dataclass(frozen=True)
class OutputFormat:
    name: str
    roles: tuple[str, ...]
    load: Loader


FORMATS: dict[str, OutputFormat] = {}


def output_format(name: str, *roles: str) -> Callable[[Loader], Loader]:
    """Register a loader for cards whose `output.format` is `name` and whose role is in `roles`."""

    def register(load: Loader) -> Loader:
        if name in FORMATS:
            raise ValueError(f"output format {name!r} is registered twice")
        FORMATS[name] = OutputFormat(name, roles, load)
        return load

    return register
