"""What each model's outputs mean, one module per model family, behind one interface.

A pack model is loaded by the family that registered its card's `output.format` (see `base.py`):
`softmax` (classifier.py), `ssd-raw` (ssd.py), `blazeface` (faces.py), `nanodet` (nanodet.py), and
whatever other modules of this package register. Adding a family is adding a file here: every module
is imported below.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np

from edgetag.errors import ModelError
from edgetag.modelpack import InputSpec, ModelCard, file_sha256, read_labels, verify_checksum
from edgetag.models.base import (
    FORMATS,
    Detection,
    DetectorModel,
    ImageModel,
    ModelInfo,
    ModelInput,
    PackModelSpec,
    box_area,
    iou,
    non_max_suppression,
    sigmoid,
)
from edgetag.models.classifier import Classifier
from edgetag.models.expressions import ExpressionModel, face_crop
from edgetag.models.faces import FaceDetector, blazeface_anchors, decode_blazeface_boxes
from edgetag.models.ssd import POSTPROCESS_OP, SsdPostprocessDetector, SsdRawDetector, decode_ssd_boxes
from edgetag.runtime import TFLiteModel

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "POSTPROCESS_OP",
    "Classifier",
    "Detection",
    "DetectorModel",
    "ExpressionModel",
    "FaceDetector",
    "ImageModel",
    "ModelInfo",
    "ModelInput",
    "SsdPostprocessDetector",
    "SsdRawDetector",
    "blazeface_anchors",
    "box_area",
    "decode_blazeface_boxes",
    "decode_ssd_boxes",
    "face_crop",
    "iou",
    "load_custom_model",
    "load_pack_model",
    "non_max_suppression",
    "sigmoid",
]


def load_pack_model(card: ModelCard, threads: int | None, min_score: float | None = None) -> ImageModel:
    """Build the model a pack card describes, after checking its checksum and labels."""
    fmt = card.output.get("format")
    family = FORMATS.get(str(fmt))
    if family is None or card.role not in family.roles:
        raise ModelError(
            f"model card {card.name}: role {card.role!r} with output format {fmt!r} is not supported"
        )
    info = ModelInfo(card.name, card.role, verify_checksum(card), card.file)
    model = TFLiteModel(card.file, threads)
    labels = read_labels(card.labels) if card.labels else []
    try:
        return family.load(PackModelSpec(card, info, model, labels, min_score))
    except (KeyError, ValueError, OSError) as error:
        raise ModelError(f"model card {card.name}: output section is incomplete ({error})") from error


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
