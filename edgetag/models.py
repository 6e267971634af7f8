"""What each model's outputs mean: classifier probabilities, SSD boxes, BlazeFace faces.

The decoders (anchor decoding, NMS, BlazeFace anchors) are pure numpy functions so they can be tested
with arrays; the classes around them only fit a photo to the model's input and call the runtime.
Boxes everywhere are (x_min, y_min, x_max, y_max) as fractions of the photo's width and height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from edgetag.errors import ModelError
from edgetag.imaging import Placement, fit
from edgetag.modelpack import InputSpec, ModelCard, file_sha256, read_labels, verify_checksum
from edgetag.runtime import FloatArray, TFLiteModel

POSTPROCESS_OP = "TFLite_Detection_PostProcess"


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


# --- pure decoders ---------------------------------------------------------------------------------


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


# --- models fed with photos -------------------------------------------------------------------------


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

    def invoke(self, prepared: ModelInput) -> list[FloatArray]:
        """Run the interpreter on a prepared input; real-valued outputs. Interpreter thread only."""
        self.model.set_stored_input(prepared.tensor)
        self.model.invoke()
        return self.model.read_outputs()


@dataclass
class Classifier(ImageModel):
    """Softmax classifier: one probability per label."""

    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        classes = self.model.outputs[0].shape[-1]
        if classes != len(self.labels):
            raise ModelError(
                f"{self.info.name}: the model has {classes} classes but its label file has "
                f"{len(self.labels)} labels"
            )

    def run(self, prepared: ModelInput) -> FloatArray:
        """One probability per label."""
        return self.invoke(prepared)[0].reshape(-1)

    def classify(self, image: Image.Image) -> FloatArray:
        return self.run(self.prepare(image))


class DetectorModel(ImageModel):
    """A model whose result is a list of boxes (persons, objects or faces)."""

    def run(self, prepared: ModelInput) -> list[Detection]:
        raise NotImplementedError

    def detect(self, image: Image.Image) -> list[Detection]:
        return self.run(self.prepare(image))


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
                _detection(label, float(class_scores[k]), b) for k, b in zip(keep, photo_boxes, strict=True)
            ]
        return sorted(detections, key=lambda d: -d.score)


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
            _detection(self.labels[c] if 0 <= c < len(self.labels) else f"class {c}", float(s), b)
            for c, s, b in zip(classes, scores, photo_boxes, strict=True)
            if s >= self.min_score
        ]


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
            _detection("face", float(scores[candidates][k]), b)
            for k, b in zip(keep, photo_boxes, strict=True)
        ]


def _detection(label: str, score: float, box: npt.NDArray[Any]) -> Detection:
    x_min, y_min, x_max, y_max = (round(float(v), 4) for v in box)
    return Detection(label=label, score=round(score, 4), box=(x_min, y_min, x_max, y_max))


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


# --- loading ---------------------------------------------------------------------------------------


def load_pack_model(card: ModelCard, threads: int | None, min_score: float | None = None) -> ImageModel:
    """Build the model a pack card describes, after checking its checksum and labels."""
    info = ModelInfo(card.name, card.role, verify_checksum(card), card.file)
    model = TFLiteModel(card.file, threads)
    out = card.output
    labels = read_labels(card.labels) if card.labels else []
    fmt = out.get("format")
    try:
        if card.role == "classifier" and fmt == "softmax":
            return Classifier(info, model, card.input, labels=labels)
        if card.role == "detector" and fmt == "ssd-raw":
            anchors = np.load(card.file.parent / out["anchors"]).astype(np.float32)
            return SsdRawDetector(
                info, model, card.input, labels=labels, anchors=anchors,
                box_scales=tuple(float(v) for v in out["box_scales"]),
                background_class=bool(out.get("background_class", True)), nms_iou=float(out["nms_iou"]),
                box_output=int(out["box_output"]), class_output=int(out["class_output"]),
                min_score=min_score if min_score is not None else float(out.get("min_score", 0.25)),
            )  # fmt: skip
        if card.role == "faces" and fmt == "blazeface":
            anchors = blazeface_anchors(
                card.input.width, [int(s) for s in out["strides"]], float(out.get("anchor_offset", 0.5)),
                float(out.get("interpolated_scale_aspect_ratio", 1.0)),
            )  # fmt: skip
            return FaceDetector(
                info, model, card.input, anchors=anchors,
                box_output=int(out["box_output"]), score_output=int(out["score_output"]),
                raw_score_limit=float(out.get("raw_score_limit", 80.0)), nms_iou=float(out["nms_iou"]),
                min_score=min_score if min_score is not None else float(out.get("min_score", 0.5)),
            )  # fmt: skip
    except (KeyError, ValueError, OSError) as error:
        raise ModelError(f"model card {card.name}: output section is incomplete ({error})") from error
    raise ModelError(
        f"model card {card.name}: role {card.role!r} with output format {fmt!r} is not supported"
    )


def load_custom_model(
    role: str, path: Path, labels_path: Path | None, threads: int | None, min_score: float | None = None
) -> ImageModel:
    """A user's own model: a softmax classifier, or an SSD detector with the post-process op.

    Classifiers get a center crop, detectors the whole photo stretched. uint8 and int8 models take
    pixels through their own quantization; float models take [-1, 1] (the convention of the Coral
    and TF sample models).
    """
    if labels_path is None:
        raise ModelError(f"{path}: a custom {role} needs its label file too")
    info = ModelInfo(path.stem, role, file_sha256(path), path)
    model = TFLiteModel(path, threads)
    shape = model.input.shape
    if len(shape) != 4:
        raise ModelError(f"{path}: input shape {list(shape)} is not [1, H, W, 3]")
    height, width = shape[1], shape[2]
    value_range = (-1.0, 1.0) if model.input.dtype == np.float32 else (0.0, 255.0)
    spec = InputSpec(width, height, value_range, "center-crop" if role == "classifier" else "stretch")
    labels = read_labels(labels_path)
    if role == "classifier":
        return Classifier(info, model, spec, labels=labels)
    if role == "detector":
        return SsdPostprocessDetector(
            info, model, spec, labels=labels, min_score=0.25 if min_score is None else min_score
        )
    raise ModelError(f"custom models can be a classifier or a detector, not {role!r}")
