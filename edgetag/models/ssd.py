"""SSD detectors: raw-output graphs decoded here (anchors, box coder, NMS), and the common TFLite
format with the `TFLite_Detection_PostProcess` op (Coral, Frigate, picamera2 models)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
from edgetag.runtime import FloatArray, TFLiteModel

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def decode_ssd_boxes(encodings: FloatArray, anchors: FloatArray, scales: tuple[float, ...]) -> FloatArray:
    """TF Object Detection API box coder: [N, 4] (ty, tx, th, tw) against anchors (yc, xc, h, w).

    Returns [N, 4] boxes as (x_min, y_min, x_max, y_max), normalized to the model input.
    """
    y_scale, x_scale, h_scale, w_scale = scales
    y_center = encodings[:, 0] / y_scale * anchors[:, 2] + anchors[:, 0]
    x_center = encodings[:, 1] / x_scale * anchors[:, 3] + anchors[:, 1]
    half_h = np.exp(encodings[:, 2] / h_scale) * anchors[:, 2] / 2
    half_w = np.exp(encodings[:, 3] / w_scale) * anchors[:, 3] / 2
    return np.stack([x_center - half_w, y_center - half_h, x_center + half_w, y_center + half_h], axis=1)


@dataclass
class SsdRawDetector(DetectorModel):
    """An SSD whose graph ends before post-processing: anchors, box decoding and NMS done here."""

    labels: list[str] = field(default_factory=list)
    anchors: FloatArray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    box_scales: tuple[float, ...] = (10.0, 10.0, 5.0, 5.0)
    background_class: bool = True
    nms_iou: float = 0.6
    box_output: int = 0
    class_output: int = 1
    min_score: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        box_shape = self.model.outputs[self.box_output].shape
        class_shape = self.model.outputs[self.class_output].shape
        anchors = self.anchors.shape[0]
        if box_shape[-1] != 4 or math.prod(box_shape) != anchors * 4 or class_shape[-2] != anchors:
            raise ModelError(
                f"{self.info.name}: outputs {list(box_shape)} and {list(class_shape)} do not fit "
                f"{anchors} anchors"
            )
        expected = len(self.labels) + (1 if self.background_class else 0)
        if class_shape[-1] != expected:
            raise ModelError(
                f"{self.info.name}: the model scores {class_shape[-1]} classes but its label file "
                f"gives {len(self.labels)} labels{' plus background' if self.background_class else ''}"
            )

    def run(self, prepared: ModelInput) -> list[Detection]:
        outputs, placement = self.invoke(prepared), prepared.placement
        encodings = outputs[self.box_output].reshape(-1, 4)
        logits = outputs[self.class_output].reshape(encodings.shape[0], -1)
        if self.background_class:
            logits = logits[:, 1:]
        scores = sigmoid(logits)
        detections: list[Detection] = []
        for class_index, label in enumerate(self.labels):
            candidates = np.flatnonzero(scores[:, class_index] >= self.min_score)
            if candidates.size == 0:
                continue
            boxes = decode_ssd_boxes(encodings[candidates], self.anchors[candidates], self.box_scales)
            class_scores = scores[candidates, class_index]
            keep = non_max_suppression(boxes, class_scores, self.nms_iou)
            photo_boxes = placement.to_photo(boxes[keep])
            detections += [
                make_detection(label, float(class_scores[k]), b)
                for k, b in zip(keep, photo_boxes, strict=True)
            ]
        return sorted(detections, key=lambda d: -d.score)


@output_format("ssd-raw", "detector")
def load_ssd_raw(spec: PackModelSpec) -> SsdRawDetector:
    card, out = spec.card, spec.card.output
    anchors = np.load(card.file.parent / out["anchors"]).astype(np.float32)
    return SsdRawDetector(
        spec.info, spec.model, card.input, labels=spec.labels, anchors=anchors,
        box_scales=tuple(float(v) for v in out["box_scales"]),
        background_class=bool(out.get("background_class", True)), nms_iou=float(out["nms_iou"]),
        box_output=int(out["box_output"]), class_output=int(out["class_output"]),
        min_score=spec.min_score if spec.min_score is not None else float(out.get("min_score", 0.25)),
    )  # fmt: skip


@dataclass
class SsdPostprocessDetector(DetectorModel):
    """The common TFLite SSD format (Coral, Frigate, picamera2): boxes, classes, scores, count."""

    labels: list[str] = field(default_factory=list)
    min_score: float = 0.25
    order: tuple[int, int, int, int] = (0, 1, 2, 3)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.model.outputs) != 4:
            raise ModelError(
                f"{self.info.name}: has {len(self.model.outputs)} outputs; an SSD detector with "
                f"{POSTPROCESS_OP} has four (boxes, classes, scores, count)"
            )
        self.order, classes = _postprocess_layout(self.model)
        if classes is not None and classes != len(self.labels):
            raise ModelError(
                f"{self.info.name}: the model detects {classes} classes but its label file has "
                f"{len(self.labels)} labels"
            )

    def run(self, prepared: ModelInput) -> list[Detection]:
        outputs, placement = self.invoke(prepared), prepared.placement
        boxes_at, classes_at, scores_at, count_at = self.order
        count = int(outputs[count_at].reshape(-1)[0])
        boxes = outputs[boxes_at].reshape(-1, 4)[:count][:, [1, 0, 3, 2]]  # (y,x,y,x) -> (x,y,x,y)
        classes = outputs[classes_at].reshape(-1)[:count].astype(int)
        scores = outputs[scores_at].reshape(-1)[:count]
        photo_boxes = placement.to_photo(boxes) if count else boxes
        return [
            make_detection(self.labels[c] if 0 <= c < len(self.labels) else f"class {c}", float(s), b)
            for c, s, b in zip(classes, scores, photo_boxes, strict=True)
            if s >= self.min_score
        ]


def _postprocess_layout(model: TFLiteModel) -> tuple[tuple[int, int, int, int], int | None]:
    """Which model output is boxes, classes, scores and count, and how many classes the op scores.

    The op itself always writes (boxes, classes, scores, count), but exporters list the model's
    outputs in different orders (TF1 and TF2 differ), so the order is read from the graph.
    """
    outputs = [spec.index for spec in model.outputs]
    for op in model.operators():
        if op.get("op_name") == POSTPROCESS_OP:
            op_outputs = [int(i) for i in op["outputs"]]
            if sorted(op_outputs) == sorted(outputs):
                order = tuple(outputs.index(i) for i in op_outputs)
                class_scores = model.tensor_shape(int(op["inputs"][1]))
                return (order[0], order[1], order[2], order[3]), class_scores[-1] - 1
    raise ModelError(f"{model.path}: has four outputs but no {POSTPROCESS_OP} operator producing them")
