"""Run every built model on the sample photos in the runtime edgetag uses (runtime venv).

ai-edge-litert 2.3.0 with num_threads=2, numpy and Pillow only, like the
daemon. For each model: tensor details, median invoke time, and what it says on
each sample photo, decoded with small numpy decoders written here:

* classifier: top-5 of the int8 softmax;
* person detector: SSD box decoding with the graph's anchors (box coder scales
  10/10/5/5), sigmoid person scores, greedy NMS at IoU 0.6; compared with the
  original TF graph's own detections (work/ssd-report.json);
* test fixture: its TFLite_Detection_PostProcess outputs, compared with the
  raw int8 model + numpy decoding;
* BlazeFace full range and short range: MediaPipe SSD anchors, raw boxes /
  input size, sigmoid scores clipped at +-80, NMS at IoU 0.3, face count;
* expression model: each face BlazeFace found, cropped as edgetag crops it
  (square, margin 0.2), the seven probabilities, compared with the float model.
* NanoDet-g: sigmoid class scores, distance distributions (softmax expectation x
  stride), class-wise NMS at IoU 0.6; int8 compared with the float model, on the
  samples and a side-by-side composite of two of them.

Results go to work/sanity.json (write_cards.py puts them into the cards).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from common import (
    MODELS,
    SAMPLES,
    TEST_MODELS,
    WORK,
    face_crop,
    fit_center_crop,
    fit_letterbox,
    fit_stretch,
    load_rgb,
    read_json,
    sample_photos,
    write_json,
)

if TYPE_CHECKING:
    from PIL import Image

THREADS = 2
TIMING_RUNS = 50
PERSON_THRESHOLD = 0.3  # reporting threshold; the app chooses its own
FACE_THRESHOLD = 0.5
OIDV4_THRESHOLD = 0.3  # reporting threshold for the Open Images SSD


def tensor_info(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": detail["shape"].tolist(),
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zero_point),
    }


class Model:
    """A .tflite model with helpers to feed real values and read real values."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.interpreter = Interpreter(model_path=str(path), num_threads=THREADS)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def set_input(self, real: np.ndarray) -> None:
        """Quantize real values (pixels or [-1, 1]) the way the input tensor says."""
        dtype = self.input["dtype"]
        data = real.astype(np.float32)[np.newaxis]
        scale, zero_point = self.input["quantization"]
        if dtype != np.float32:
            info = np.iinfo(dtype)
            data = np.clip(np.round(data / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], data.astype(dtype))

    def run(self, real: np.ndarray) -> list[np.ndarray]:
        """Invoke and return every output dequantized to float32, batch dimension removed."""
        self.set_input(real)
        self.interpreter.invoke()
        results = []
        for detail in self.outputs:
            value = self.interpreter.get_tensor(detail["index"])
            scale, zero_point = detail["quantization"]
            if detail["dtype"] != np.float32:
                value = (value.astype(np.float32) - zero_point) * scale
            results.append(value[0] if value.ndim > 1 else value)
        return results

    def median_invoke_ms(self, real: np.ndarray) -> float:
        self.set_input(real)
        self.interpreter.invoke()  # warm-up
        times = []
        for _ in range(TIMING_RUNS):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000)
        return round(statistics.median(times), 2)

    def describe(self) -> dict[str, Any]:
        return {
            "file": self.path.name,
            "bytes": self.path.stat().st_size,
            "inputs": [tensor_info(self.input)],
            "outputs": [tensor_info(detail) for detail in self.outputs],
        }


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (ymin, xmin, ymax, xmax) box with many."""
    top = np.maximum(box[0], boxes[:, 0])
    left = np.maximum(box[1], boxes[:, 1])
    bottom = np.minimum(box[2], boxes[:, 2])
    right = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9), dtype=np.float32)


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, iou_limit: float, limit: int = 100
) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = [int(i) for i in np.argsort(-scores) if scores[i] >= threshold]
    kept: list[int] = []
    while order and len(kept) < limit:
        best = order.pop(0)
        kept.append(best)
        if order:
            overlaps = iou(boxes[best], boxes[order])
            order = [index for index, overlap in zip(order, overlaps, strict=True) if overlap < iou_limit]
    return kept


def sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float32)


# ---------------------------------------------------------------- classifier


def check_classifier() -> dict[str, Any]:
    model = Model(MODELS / "efficientnet-lite0-int8.tflite")
    labels = (MODELS / "imagenet-labels.txt").read_text(encoding="utf-8").splitlines()
    photos: dict[str, Any] = {}
    pixels = None
    for photo in sample_photos():
        pixels = fit_center_crop(load_rgb(photo), 224)
        (probabilities,) = model.run(pixels)
        order = np.argsort(-probabilities)[:5]
        photos[photo.name] = [[labels[int(i)], round(float(probabilities[i]), 3)] for i in order]
    assert pixels is not None
    return {**model.describe(), "median_invoke_ms": model.median_invoke_ms(pixels), "photos": photos}


# ---------------------------------------------------------------- person SSD


@dataclass
class SsdDecoder:
    """Decode raw SSD outputs like the TF OD API's FasterRcnnBoxCoder + sigmoid + NMS."""

    anchors: np.ndarray  # [N, 4] (y_center, x_center, height, width)
    scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    nms_iou: float = 0.6

    def boxes(self, encodings: np.ndarray) -> np.ndarray:
        ty, tx, th, tw = (encodings.reshape(-1, 4) / np.array(self.scales, np.float32)).T
        ya, xa, ha, wa = self.anchors.T
        y_center, x_center = ty * ha + ya, tx * wa + xa
        height, width = np.exp(th) * ha, np.exp(tw) * wa
        corners = np.stack(
            [y_center - height / 2, x_center - width / 2, y_center + height / 2, x_center + width / 2], 1
        )
        return np.asarray(np.clip(corners, 0.0, 1.0), dtype=np.float32)

    def detect(self, encodings: np.ndarray, logits: np.ndarray, threshold: float) -> list[dict[str, Any]]:
        boxes = self.boxes(encodings)
        scores = sigmoid(logits.reshape(len(self.anchors), -1)[:, 1])  # column 0 is background
        return [
            {"box": [round(float(v), 4) for v in boxes[i]], "score": round(float(scores[i]), 4)}
            for i in nms(boxes, scores, threshold, self.nms_iou)
        ]


def output_index(model: Model, suffix_or_rank: str) -> int:
    """Index (in get_output_details order) of the output whose name is `suffix_or_rank`."""
    for index, detail in enumerate(model.outputs):
        if detail["name"] == suffix_or_rank:
            return index
    raise KeyError(suffix_or_rank)


def match(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> tuple[int, float, float]:
    """How many expected boxes have a counterpart (IoU >= 0.7): count, min IoU, max score diff."""
    found, worst_iou, worst_score = 0, 1.0, 0.0
    if not actual:
        return 0, 0.0 if expected else 1.0, 0.0
    boxes = np.array([detection["box"] for detection in actual], np.float32)
    for detection in expected:
        overlaps = iou(np.array(detection["box"], np.float32), boxes)
        best = int(overlaps.argmax())
        if overlaps[best] >= 0.7:
            found += 1
            worst_iou = min(worst_iou, float(overlaps[best]))
            worst_score = max(worst_score, abs(detection["score"] - actual[best]["score"]))
    return found, round(worst_iou, 3), round(worst_score, 3)


def check_detector() -> dict[str, Any]:
    model = Model(MODELS / "ssdlite-person-int8.tflite")
    float_model = Model(WORK / "ssdlite-person-float.tflite")
    decoder = SsdDecoder(np.load(MODELS / "ssdlite-person-anchors.npy"))
    box_index, class_index = output_index(model, "concat"), output_index(model, "concat_1")
    graph = read_json(WORK / "ssd-report.json")["graph_detections"]
    photos: dict[str, Any] = {}
    real = None
    for photo in sample_photos():
        pixels = fit_stretch(load_rgb(photo), 300, 300)
        real = pixels.astype(np.float32) * (2.0 / 255.0) - 1.0
        outputs = model.run(real)
        detections = decoder.detect(outputs[box_index], outputs[class_index], PERSON_THRESHOLD)
        float_outputs = float_model.run(real)
        float_detections = decoder.detect(
            float_outputs[box_index], float_outputs[class_index], PERSON_THRESHOLD
        )
        graph_people = [d for d in graph[photo.name] if d["score"] >= PERSON_THRESHOLD]
        # For each of the graph's detections: the int8 score of the best-overlapping int8 box, even
        # below the reporting threshold (shows how far int8 moved a borderline score).
        low = decoder.detect(outputs[box_index], outputs[class_index], 0.01)
        low_boxes = np.array([d["box"] for d in low], np.float32).reshape(-1, 4)
        int8_scores = []
        for expected in graph_people:
            overlaps = iou(np.array(expected["box"], np.float32), low_boxes) if len(low) else np.zeros(0)
            best = int(overlaps.argmax()) if len(low) else -1
            int8_scores.append(low[best]["score"] if best >= 0 and overlaps[best] >= 0.7 else 0.0)
        photos[photo.name] = {
            "int8_score_of_graph_detections": int8_scores,
            "int8": detections,
            "float": float_detections,
            "graph": graph_people,
            "float_vs_graph": match(graph_people, float_detections),
            "int8_vs_graph": match(graph_people, detections),
        }
    assert real is not None
    return {
        **model.describe(),
        "box_output": box_index,
        "class_output": class_index,
        "median_invoke_ms": model.median_invoke_ms(real),
        "photos": photos,
    }


def check_fixture(detector: dict[str, Any]) -> dict[str, Any]:
    """The Coral-style fixture vs the raw int8 model + numpy decoding (score >= 0.5)."""
    model = Model(TEST_MODELS / "ssd-person-postprocess-uint8.tflite")
    photos: dict[str, Any] = {}
    pixels = None
    for photo in sample_photos():
        pixels = fit_stretch(load_rgb(photo), 300, 300)
        boxes, classes, scores, count = model.run(pixels.astype(np.float32))
        found = [
            {
                "box": [round(float(v), 4) for v in boxes[i]],
                "class": int(classes[i]),
                "score": round(float(scores[i]), 4),
            }
            for i in range(int(count[0]))
            if scores[i] >= PERSON_THRESHOLD
        ]
        raw = detector["photos"][photo.name]["int8"]
        photos[photo.name] = {"detections": found, "count": int(count[0]), "vs_raw_int8": match(raw, found)}
    assert pixels is not None
    names = [detail["name"] for detail in model.outputs]
    return {
        **model.describe(),
        "output_names": names,
        "median_invoke_ms": model.median_invoke_ms(pixels.astype(np.float32)),
        "photos": photos,
    }


# ---------------------------------------------------------------- BlazeFace


@dataclass(frozen=True)
class BlazeFaceOptions:
    """MediaPipe SsdAnchorsCalculator options for one BlazeFace model (fixed_anchor_size = true)."""

    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)

    def anchors(self) -> np.ndarray:
        """[N, 2] anchor centres (x, y), normalized, in the model's output order.

        Consecutive layers with the same stride share one feature map; each cell
        gets, per such layer, one anchor per aspect ratio plus one more when
        interpolated_scale_aspect_ratio > 0. With a fixed anchor size only the
        centres matter.
        """
        centres: list[tuple[float, float]] = []
        layer = 0
        while layer < len(self.strides):
            per_cell = 0
            last = layer
            while last < len(self.strides) and self.strides[last] == self.strides[layer]:
                per_cell += len(self.aspect_ratios) + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)
                last += 1
            cells = int(np.ceil(self.size / self.strides[layer]))
            for y in range(cells):
                for x in range(cells):
                    centre = ((x + self.anchor_offset) / cells, (y + self.anchor_offset) / cells)
                    centres.extend([centre] * per_cell)
            layer = last
        return np.array(centres, np.float32)


FULL_RANGE = BlazeFaceOptions(size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0)
SHORT_RANGE = BlazeFaceOptions(size=128, strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0)
RAW_SCORE_LIMIT = 80.0
FACE_NMS_IOU = 0.3


def check_blazeface(path: Path, options: BlazeFaceOptions) -> dict[str, Any]:
    model = Model(path)
    anchors = options.anchors()
    box_index = next(i for i, d in enumerate(model.outputs) if d["shape"][-1] == 16)
    score_index = next(i for i, d in enumerate(model.outputs) if d["shape"][-1] == 1)
    assert model.outputs[box_index]["shape"][1] == len(anchors), (model.outputs, len(anchors))
    photos: dict[str, Any] = {}
    real = None
    for photo in sample_photos():
        image = load_rgb(photo)
        pixels, box = fit_letterbox(image, options.size)
        real = pixels.astype(np.float32) / 127.5 - 1.0
        outputs = model.run(real)
        raw = outputs[box_index].reshape(-1, 16) / options.size
        x_center = raw[:, 0] + anchors[:, 0]
        y_center = raw[:, 1] + anchors[:, 1]
        width, height = raw[:, 2], raw[:, 3]
        boxes = np.stack(
            [y_center - height / 2, x_center - width / 2, y_center + height / 2, x_center + width / 2], 1
        )
        scores = sigmoid(np.clip(outputs[score_index].reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT))
        kept = nms(boxes, scores, FACE_THRESHOLD, FACE_NMS_IOU)
        faces = []
        for i in kept:
            left, top = box.to_photo(float(boxes[i, 1]), float(boxes[i, 0]))
            right, bottom = box.to_photo(float(boxes[i, 3]), float(boxes[i, 2]))
            faces.append(
                {
                    "box": [round(v, 3) for v in (top, left, bottom, right)],
                    "score": round(float(scores[i]), 3),
                }
            )
        photos[photo.name] = {"faces": len(faces), "detections": faces}
    assert real is not None
    return {
        **model.describe(),
        "box_output": box_index,
        "score_output": score_index,
        "anchors": len(anchors),
        "median_invoke_ms": model.median_invoke_ms(real),
        "photos": photos,
    }


# ---------------------------------------------------------------- expressions

EXPRESSION_MARGIN = 0.2  # edgetag's face_margin (the card's output.face_margin)


def check_expressions(faces: dict[str, Any]) -> dict[str, Any]:
    """The int8 expression model on every face BlazeFace found, vs the float model."""
    model = Model(MODELS / "emotion-fer-int8.tflite")
    float_model = Model(WORK / "emotion-fer-float.tflite")
    labels = (MODELS / "emotion-fer-labels.txt").read_text(encoding="utf-8").splitlines()
    photos: dict[str, Any] = {}
    equal = total = 0
    pixels = None
    for name, result in faces["photos"].items():
        image = load_rgb(SAMPLES / name)
        for index, detection in enumerate(result["detections"]):
            top, left, bottom, right = detection["box"]
            crop = image.crop(
                face_crop((left, top, right, bottom), image.width, image.height, EXPRESSION_MARGIN)
            )
            pixels = fit_stretch(crop, 64, 64).astype(np.float32)
            (probabilities,) = model.run(pixels)
            (float_probabilities,) = float_model.run(pixels)
            equal += int(probabilities.argmax() == float_probabilities.argmax())
            total += 1
            photos[f"{name}#{index}"] = {
                "int8": {label: round(float(v), 3) for label, v in zip(labels, probabilities, strict=True)},
                "float": {
                    label: round(float(v), 3) for label, v in zip(labels, float_probabilities, strict=True)
                },
            }
    assert pixels is not None
    return {
        **model.describe(),
        "median_invoke_ms": model.median_invoke_ms(pixels),
        "float_median_invoke_ms": float_model.median_invoke_ms(pixels),
        "top1_equal_float": [equal, total],
        "photos": photos,
    }


# ---------------------------------------------------------------- NanoDet (COCO-80)

NANODET_THRESHOLD = 0.3  # the card's min_score; the vocabulary applies its own thresholds on top
NANODET_BINS = 11
NANODET_IOU = 0.6
# Two real photos side by side (one person each): the count should be 2.
NANODET_COMPOSITES = {"grace_hopper+astronaut": ("grace_hopper.jpg", "astronaut.jpg")}


def side_by_side(names: tuple[str, ...]) -> Any:
    from PIL import Image  # noqa: PLC0415

    photos = [load_rgb(SAMPLES / name) for name in names]
    height = min(photo.height for photo in photos)
    photos = [photo.resize((round(photo.width * height / photo.height), height)) for photo in photos]
    canvas = Image.new("RGB", (sum(photo.width for photo in photos), height))
    left = 0
    for photo in photos:
        canvas.paste(photo, (left, 0))
        left += photo.width
    return canvas


def nanodet_detect(outputs: list[np.ndarray], labels: list[str], threshold: float) -> list[dict[str, Any]]:
    """Straightforward float decoding (everything dequantized), as a reference for the runtime's."""
    boxes, scores, classes = [], [], []
    for output in outputs:
        height = output.shape[0]
        stride = 416 // height
        cells = output.reshape(height * height, -1)
        probabilities = sigmoid(cells[:, :80])
        cell, cls = np.nonzero(probabilities >= threshold)
        groups = cells[cell, 80:].reshape(-1, 4, NANODET_BINS)
        weights = np.exp(groups - groups.max(axis=2, keepdims=True))
        weights /= weights.sum(axis=2, keepdims=True)
        side = (weights * np.arange(NANODET_BINS)).sum(axis=2) * stride
        y, x = np.divmod(cell, height)
        cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
        # (ymin, xmin, ymax, xmax) in input pixels, like the other sanity decoders' boxes
        boxes.append(np.stack([cy - side[:, 1], cx - side[:, 0], cy + side[:, 3], cx + side[:, 2]], 1))
        scores.append(probabilities[cell, cls])
        classes.append(cls)
    all_boxes, all_scores, all_classes = (
        np.concatenate(boxes),
        np.concatenate(scores),
        np.concatenate(classes),
    )
    found = []
    for label in np.unique(all_classes):
        members = np.flatnonzero(all_classes == label)
        for index in nms(all_boxes[members], all_scores[members], threshold, NANODET_IOU):
            member = members[index]
            found.append(
                {
                    "label": labels[int(label)],
                    "box": [round(float(v) / 416, 4) for v in all_boxes[member]],
                    "score": round(float(all_scores[member]), 4),
                }
            )
    return sorted(found, key=lambda d: -d["score"])


def label_match(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> tuple[int, float, float]:
    """Like match(), per label: a detection counts when the other model has the same label there."""
    found, worst_iou, worst_score = 0, 1.0, 0.0
    for label in {d["label"] for d in expected}:
        result = match(
            [d for d in expected if d["label"] == label], [d for d in actual if d["label"] == label]
        )
        found += result[0]
        if result[0]:
            worst_iou, worst_score = min(worst_iou, result[1]), max(worst_score, result[2])
    return found, round(worst_iou, 3), round(worst_score, 3)


def compare_int8_float(
    model: Model,
    float_model: Model,
    fit: Callable[[Image.Image], np.ndarray],
    detect: Callable[[list[np.ndarray]], list[dict[str, Any]]],
    person: str,
) -> tuple[dict[str, Any], np.ndarray]:
    """A detector's int8 and float model on every sample photo and composite (NanoDet-g, Open Images SSD).

    `fit` makes the input (real values) from a photo, `detect` decodes either model's outputs, and
    `person` is the label counted as a person. Returns the results by photo and the last input (to time).
    """
    images = [(photo.name, load_rgb(photo)) for photo in sample_photos()]
    images += [(name, side_by_side(parts)) for name, parts in NANODET_COMPOSITES.items()]
    photos: dict[str, Any] = {}
    real = None
    for name, image in images:
        real = fit(image)
        int8 = detect(model.run(real))
        reference = detect(float_model.run(real))
        photos[name] = {
            "int8": int8,
            "float": reference,
            "int8_vs_float": label_match(reference, int8),
            "persons": sum(d["label"] == person for d in int8),
        }
    assert real is not None
    return photos, real


def check_nanodet() -> dict[str, Any]:
    model = Model(MODELS / "nanodet-g-int8.tflite")
    float_model = Model(WORK / "nanodet-g-float.tflite")
    labels = (MODELS / "coco-labels.txt").read_text(encoding="utf-8").splitlines()
    photos, pixels = compare_int8_float(
        model,
        float_model,
        lambda image: fit_letterbox(image, 416)[0].astype(np.float32),
        lambda outputs: nanodet_detect(outputs, labels, NANODET_THRESHOLD),
        "person",
    )
    return {
        **model.describe(),
        "median_invoke_ms": model.median_invoke_ms(pixels),
        "float_median_invoke_ms": float_model.median_invoke_ms(pixels),
        "threshold": NANODET_THRESHOLD,
        "photos": photos,
    }


# ---------------------------------------------------------------- Open Images SSD (optional detector)


def oidv4_detect(decoder: SsdDecoder, outputs: list[np.ndarray], labels: list[str]) -> list[dict[str, Any]]:
    """Per-label SSD decoding (column 0 is background), boxes (ymin, xmin, ymax, xmax) normalized."""
    box_output = 0 if outputs[0].shape[-1] == 4 else 1
    encodings, logits = outputs[box_output], outputs[1 - box_output]
    boxes = decoder.boxes(encodings)
    scores = sigmoid(logits.reshape(len(decoder.anchors), -1)[:, 1:])
    found = [
        {
            "label": label,
            "box": [round(float(v), 4) for v in boxes[i]],
            "score": round(float(scores[i, c]), 4),
        }
        for c, label in enumerate(labels)
        for i in nms(boxes, scores[:, c], OIDV4_THRESHOLD, decoder.nms_iou)
    ]
    return sorted(found, key=lambda d: -d["score"])


def check_oidv4() -> dict[str, Any]:
    model = Model(MODELS / "ssd-oidv4-int8.tflite")
    float_model = Model(WORK / "ssd-oidv4-float.tflite")
    decoder = SsdDecoder(np.load(MODELS / "ssdlite-person-anchors.npy"))
    labels = (MODELS / "ssd-oidv4-labels.txt").read_text(encoding="utf-8").splitlines()
    photos, real = compare_int8_float(
        model,
        float_model,
        lambda image: fit_stretch(image, 300, 300).astype(np.float32) * (2.0 / 255.0) - 1.0,
        lambda outputs: oidv4_detect(decoder, outputs, labels),
        "Person",
    )
    return {
        **model.describe(),
        "box_output": 0 if model.outputs[0]["shape"][-1] == 4 else 1,
        "class_output": 1 if model.outputs[0]["shape"][-1] == 4 else 0,
        "median_invoke_ms": model.median_invoke_ms(real),
        "float_median_invoke_ms": float_model.median_invoke_ms(real),
        "threshold": OIDV4_THRESHOLD,
        "photos": photos,
    }


# ---------------------------------------------------------------- report


def print_report(report: dict[str, Any]) -> None:
    for key in (
        "classifier",
        "detector",
        "fixture",
        "blazeface_full_range",
        "blazeface_short_range",
        "expressions",
        "nanodet",
        "oidv4",
    ):
        section = report[key]
        print(
            f"\n== {section['file']} ({section['bytes']} bytes), median invoke {section['median_invoke_ms']} ms"
        )
        for tensor in section["inputs"] + section["outputs"]:
            print(
                f"   {tensor['name']}: {tensor['shape']} {tensor['dtype']} scale={tensor['scale']:.6g} zp={tensor['zero_point']}"
            )
    print("\nclassifier top-5:")
    for name, top5 in report["classifier"]["photos"].items():
        print(f"   {name:18s} " + ", ".join(f"{label} {score:.3f}" for label, score in top5))
    print(f"\nperson detector (score >= {PERSON_THRESHOLD}; box = ymin, xmin, ymax, xmax):")
    for name, result in report["detector"]["photos"].items():
        people = "; ".join(f"{d['box']} {d['score']:.2f}" for d in result["int8"]) or "none"
        print(
            f"   {name:18s} {people}   [graph: {len(result['graph'])}, int8 matches graph {result['int8_vs_graph'][0]}"
            f" (min IoU {result['int8_vs_graph'][1]}, max score diff {result['int8_vs_graph'][2]})]"
        )
    print("\nfixture (TFLite_Detection_PostProcess) vs raw int8 + numpy:")
    for name, result in report["fixture"]["photos"].items():
        raw = len(report["detector"]["photos"][name]["int8"])
        print(
            f"   {name:18s} fixture {len(result['detections'])} person(s), raw {raw}, matched {result['vs_raw_int8'][0]}"
            f" (min IoU {result['vs_raw_int8'][1]}, max score diff {result['vs_raw_int8'][2]})"
        )
    print("\nfaces (BlazeFace full range / short range):")
    for name in report["blazeface_full_range"]["photos"]:
        full = report["blazeface_full_range"]["photos"][name]
        short = report["blazeface_short_range"]["photos"][name]
        scores = ", ".join(str(d["score"]) for d in full["detections"])
        print(f"   {name:18s} full {full['faces']} ({scores})  short {short['faces']}")
    expressions = report["expressions"]
    print(
        f"\nexpressions (int8; top-1 equals float on {expressions['top1_equal_float'][0]}/{expressions['top1_equal_float'][1]} faces):"
    )
    for name, result in expressions["photos"].items():
        top = max(result["int8"], key=result["int8"].get)
        print(
            f"   {name:18s} {top} {result['int8'][top]:.2f}, happy {result['int8']['happy']:.2f} (float {result['float']['happy']:.2f})"
        )
    print(
        f"\nNanoDet-g int8 (score >= {NANODET_THRESHOLD}) [int8 detections matching float / float detections]:"
    )
    for name, result in report["nanodet"]["photos"].items():
        found = "; ".join(f"{d['label']} {d['score']:.2f}" for d in result["int8"]) or "none"
        print(f"   {name:18s} {found}   [{result['int8_vs_float'][0]}/{len(result['float'])}]")
    print(
        f"\nOpen Images SSD int8 (score >= {OIDV4_THRESHOLD}) [int8 detections matching float / float detections]:"
    )
    for name, result in report["oidv4"]["photos"].items():
        found = "; ".join(f"{d['label']} {d['score']:.2f}" for d in result["int8"]) or "none"
        print(f"   {name:18s} {found}   [{result['int8_vs_float'][0]}/{len(result['float'])}]")


def main() -> None:
    report: dict[str, Any] = {"threads": THREADS, "timing_runs": TIMING_RUNS}
    report["classifier"] = check_classifier()
    report["detector"] = check_detector()
    report["fixture"] = check_fixture(report["detector"])
    report["blazeface_full_range"] = check_blazeface(MODELS / "blazeface-full-range.tflite", FULL_RANGE)
    report["blazeface_short_range"] = check_blazeface(WORK / "blazeface-short-range.tflite", SHORT_RANGE)
    report["expressions"] = check_expressions(report["blazeface_full_range"])
    report["nanodet"] = check_nanodet()
    report["oidv4"] = check_oidv4()
    write_json(WORK / "sanity.json", report)
    print_report(report)


if __name__ == "__main__":
    main()
