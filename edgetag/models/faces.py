"""MediaPipe BlazeFace: face boxes from SSD-style anchors with fixed sizes, decoded here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
from edgetag.runtime import FloatArray


def blazeface_anchors(
    input_size: int, strides: list[int], offset: float = 0.5, interpolated_scale_aspect_ratio: float = 1.0
) -> FloatArray:
    """MediaPipe's SSD anchors for BlazeFace: [N, 2] centers (x, y), normalized; sizes are fixed at 1.

    Consecutive layers with the same stride share one grid; each layer puts one anchor per cell,
    plus one more when an interpolated scale is configured.
    """
    per_layer = 2 if interpolated_scale_aspect_ratio > 0 else 1
    centers: list[FloatArray] = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer < len(strides) and strides[layer] == stride:
            same += 1
            layer += 1
        cells = math.ceil(input_size / stride)
        grid = (np.arange(cells, dtype=np.float32) + offset) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centers = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centers.append(np.repeat(cell_centers, same * per_layer, axis=0))
    return np.concatenate(centers).astype(np.float32)


def decode_blazeface_boxes(raw: FloatArray, anchors: FloatArray, input_size: int) -> FloatArray:
    """[N, >=4] raw regressors (x, y, w, h in input pixels, relative to anchors) -> [N, 4] boxes."""
    x_center = raw[:, 0] / input_size + anchors[:, 0]
    y_center = raw[:, 1] / input_size + anchors[:, 1]
    half_w = raw[:, 2] / input_size / 2
    half_h = raw[:, 3] / input_size / 2
    return np.stack([x_center - half_w, y_center - half_h, x_center + half_w, y_center + half_h], axis=1)


@dataclass
class FaceDetector(DetectorModel):
    """MediaPipe BlazeFace: one score and box per anchor; decoding and NMS here."""

    anchors: FloatArray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    box_output: int = 0
    score_output: int = 1
    raw_score_limit: float = 80.0
    nms_iou: float = 0.3
    min_score: float = 0.5

    def run(self, prepared: ModelInput) -> list[Detection]:
        outputs, placement = self.invoke(prepared), prepared.placement
        raw_boxes = outputs[self.box_output].reshape(self.anchors.shape[0], -1)
        raw_scores = outputs[self.score_output].reshape(-1)
        scores = sigmoid(np.clip(raw_scores, -self.raw_score_limit, self.raw_score_limit))
        candidates = np.flatnonzero(scores >= self.min_score)
        if candidates.size == 0:
            return []
        boxes = decode_blazeface_boxes(raw_boxes[candidates], self.anchors[candidates], self.input.width)
        keep = non_max_suppression(boxes, scores[candidates], self.nms_iou)
        photo_boxes = placement.to_photo(boxes[keep])
        return [
            make_detection("face", float(scores[candidates][k]), b)
            for k, b in zip(keep, photo_boxes, strict=True)
        ]


@output_format("blazeface", "faces")
def load_blazeface(spec: PackModelSpec) -> FaceDetector:
    card, out = spec.card, spec.card.output
    anchors = blazeface_anchors(
        card.input.width, [int(s) for s in out["strides"]], float(out.get("anchor_offset", 0.5)),
        float(out.get("interpolated_scale_aspect_ratio", 1.0)),
    )  # fmt: skip
    return FaceDetector(
        spec.info, spec.model, card.input, anchors=anchors,
        box_output=int(out["box_output"]), score_output=int(out["score_output"]),
        raw_score_limit=float(out.get("raw_score_limit", 80.0)), nms_iou=float(out["nms_iou"]),
        min_score=spec.min_score if spec.min_score is not None else float(out.get("min_score", 0.5)),
    )  # fmt: skip
