"""NanoDet (v0.x, GFL head): multi-class boxes from three raw head outputs, decoded here in numpy.

Each output is one level of the feature pyramid, [1, H, W, classes + 4 * bins]; the level's stride
is the input size over H (outputs are matched to levels by their shape, never by their order).
Per cell: class logits (score = sigmoid), then for each side (left, top, right, bottom) `bins`
logits of a discrete distribution over distances 0..bins-1 in units of the stride; the distance is
its expectation. Boxes are measured from the cell centre ((x + 0.5) * stride, (y + 0.5) * stride).

Speed: a 416 input has 3549 cells x 80 classes. The class logits are compared with the threshold
as the int8 values the tensor stores; only the few cells that pass are dequantized and decoded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetag.errors import ModelError
from edgetag.models.base import (
    Detection,
    DetectorModel,
    ModelInput,
    PackModelSpec,
    make_detection,
    non_max_suppression,
    output_format,
    sigmoid,
)
from edgetag.runtime import FloatArray, TensorSpec


@dataclass(frozen=True)
class Level:
    """One pyramid level: which output holds it, its grid and stride, its raw class threshold."""

    output: int
    height: int
    width: int
    stride: int
    raw_threshold: float


def raw_threshold(spec: TensorSpec, min_score: float) -> float:
    """The stored value at or above which a class logit may reach `min_score` after sigmoid.

    Rounded down, so that no candidate is lost to rounding; the exact score is checked afterwards.
    """
    logit = math.log(min_score / (1.0 - min_score))
    if not spec.quantized:
        return logit
    return float(math.floor(spec.zero_point + logit / spec.scale))


def distances(logits: FloatArray, bins: int) -> FloatArray:
    """[N, 4 * bins] distribution logits -> [N, 4] expected distances (left, top, right, bottom), in bins."""
    grouped = logits.reshape(-1, 4, bins)
    weights = np.exp(grouped - grouped.max(axis=2, keepdims=True))
    weights /= weights.sum(axis=2, keepdims=True)
    expected: FloatArray = (weights @ np.arange(bins, dtype=np.float32)).astype(np.float32)
    return expected


def decode_level(
    stored: npt.NDArray[Any],
    spec: TensorSpec,
    level: Level,
    *,
    classes: int,
    bins: int,
    min_score: float,
    max_candidates: int,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """Candidates of one level: boxes [N, 4] in input pixels (x_min, y_min, x_max, y_max), scores, classes."""
    cells = stored.reshape(level.height * level.width, -1)
    class_values = cells[:, :classes]
    cell_index, class_index = np.nonzero(class_values >= level.raw_threshold)
    if cell_index.size > max_candidates:
        best = np.argpartition(-class_values[cell_index, class_index].astype(np.float32), max_candidates)
        cell_index, class_index = cell_index[best[:max_candidates]], class_index[best[:max_candidates]]
    scores = sigmoid(spec.dequantize(class_values[cell_index, class_index]))
    passed = scores >= min_score
    cell_index, class_index, scores = cell_index[passed], class_index[passed], scores[passed]
    if cell_index.size == 0:
        return np.zeros((0, 4), np.float32), scores, class_index
    unique_cells, rows = np.unique(cell_index, return_inverse=True)
    side = distances(spec.dequantize(cells[unique_cells, classes:]), bins)[rows] * level.stride
    y, x = np.divmod(cell_index, level.width)
    centre_x = (x.astype(np.float32) + 0.5) * level.stride
    centre_y = (y.astype(np.float32) + 0.5) * level.stride
    boxes = np.stack(
        [centre_x - side[:, 0], centre_y - side[:, 1], centre_x + side[:, 2], centre_y + side[:, 3]], axis=1
    ).astype(np.float32)
    return boxes, scores, class_index


@dataclass
class NanoDetDetector(DetectorModel):
    """NanoDet-g and its relatives: three (or more) raw head outputs, decoded and NMS'd here."""

    labels: list[str] = field(default_factory=list)
    strides: tuple[int, ...] = (8, 16, 32)
    bins: int = 11
    nms_iou: float = 0.6
    max_detections: int = 100
    max_candidates: int = 1000
    min_score: float = 0.3
    levels: tuple[Level, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.min_score < 1.0:
            raise ModelError(f"{self.info.name}: min_score {self.min_score} is not between 0 and 1")
        values = len(self.labels) + 4 * self.bins
        levels: dict[int, Level] = {}
        for index, spec in enumerate(self.model.outputs):
            if len(spec.shape) != 4 or spec.shape[-1] != values:
                raise ModelError(
                    f"{self.info.name}: output {list(spec.shape)} is not [1, H, W, {values}] "
                    f"({len(self.labels)} labels + 4 x {self.bins} distance bins)"
                )
            stride = self.input.height // spec.shape[1]
            if stride not in self.strides or stride * spec.shape[2] != self.input.width or stride in levels:
                raise ModelError(
                    f"{self.info.name}: output {list(spec.shape)} is no level of a "
                    f"{self.input.width}x{self.input.height} input with strides {list(self.strides)}"
                )
            threshold = raw_threshold(spec, self.min_score)
            levels[stride] = Level(index, spec.shape[1], spec.shape[2], stride, threshold)
        if sorted(levels) != sorted(self.strides):
            raise ModelError(
                f"{self.info.name}: outputs give strides {sorted(levels)}, the card says {list(self.strides)}"
            )
        self.levels = tuple(levels[stride] for stride in sorted(levels))

    def run(self, prepared: ModelInput) -> list[Detection]:
        self.model.set_stored_input(prepared.tensor)
        self.model.invoke()
        return self.decode(self.model.read_stored_outputs(), prepared)

    def decode(self, stored: Sequence[npt.NDArray[Any]], prepared: ModelInput) -> list[Detection]:
        """Detections from the outputs as stored (int8 or float), in the model's output order."""
        found = [
            decode_level(
                stored[level.output], self.model.outputs[level.output], level, classes=len(self.labels),
                bins=self.bins, min_score=self.min_score, max_candidates=self.max_candidates,
            )
            for level in self.levels
        ]  # fmt: skip
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        classes = np.concatenate([f[2] for f in found])
        if scores.size == 0:
            return []
        boxes /= np.array([self.input.width, self.input.height] * 2, np.float32)
        kept: list[tuple[int, int]] = []  # (class, candidate index)
        for class_index in np.unique(classes):
            members = np.flatnonzero(classes == class_index)
            keep = non_max_suppression(boxes[members], scores[members], self.nms_iou, self.max_detections)
            kept += [(int(class_index), int(members[k])) for k in keep]
        kept.sort(key=lambda pair: -float(scores[pair[1]]))
        kept = kept[: self.max_detections]
        photo_boxes = prepared.placement.to_photo(boxes[[k for _c, k in kept]])
        return [
            make_detection(self.labels[c], float(scores[k]), box)
            for (c, k), box in zip(kept, photo_boxes, strict=True)
        ]


@output_format("nanodet", "detector")
def load_nanodet(spec: PackModelSpec) -> NanoDetDetector:
    out = spec.card.output
    return NanoDetDetector(
        spec.info, spec.model, spec.card.input, labels=spec.labels,
        strides=tuple(int(s) for s in out["strides"]), bins=int(out["bins"]),
        nms_iou=float(out["nms_iou"]), max_detections=int(out.get("max_detections", 100)),
        max_candidates=int(out.get("max_candidates_per_level", 1000)),
        min_score=spec.min_score if spec.min_score is not None else float(out.get("min_score", 0.3)),
    )  # fmt: skip
