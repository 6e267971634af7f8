"""The TFLite interpreter and nothing model-specific: load once, quantize in, dequantize out.

LiteRT (`ai_edge_litert`) is the runtime where it has wheels (x86-64, 64-bit Pi OS); 32-bit Pi OS
only has `tflite_runtime`. Both expose the same Interpreter API. Quantization parameters are read from
each tensor, so int8, uint8 and float models all take and return *real* values: callers never
hard-code a scale or a zero point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgetag.errors import ModelError

FloatArray = npt.NDArray[np.float32]


def _interpreter_class() -> Any:
    """The Interpreter class of whichever runtime is installed (LiteRT first)."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # noqa: PLC0415

        return Interpreter
    except ImportError as error:
        raise ModelError(
            "no TFLite runtime is installed: install ai-edge-litert (x86-64, aarch64) "
            "or tflite-runtime (32-bit ARM)"
        ) from error


def runtime_name() -> str:
    """Which runtime package is in use, for `edgetag models` and the event's model list."""
    module = _interpreter_class().__module__
    return "ai-edge-litert" if module.startswith("ai_edge_litert") else "tflite-runtime"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: where it is, its shape and type, and how it is quantized."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @classmethod
    def from_details(cls, details: dict[str, Any]) -> TensorSpec:
        params = details.get("quantization_parameters", {})
        scales = params.get("scales", np.zeros(0))
        if len(scales) > 1:
            raise ModelError(
                f"tensor {details['name']!r} is quantized per channel; edgetag expects per tensor"
            )
        scale, zero_point = details["quantization"]
        return cls(
            index=int(details["index"]),
            name=str(details["name"]),
            shape=tuple(int(n) for n in details["shape"]),
            dtype=np.dtype(details["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def quantized(self) -> bool:
        return self.dtype.kind in "iu" and self.scale != 0.0

    def quantize(self, real: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Real values -> what the tensor stores: q = round(real / scale + zero_point), clipped."""
        if not self.quantized:
            as_stored: npt.NDArray[Any] = np.asarray(real, dtype=self.dtype)
            return as_stored
        limits = np.iinfo(self.dtype)
        values = np.asarray(real, dtype=np.float32) / np.float32(self.scale) + np.float32(self.zero_point)
        stored: npt.NDArray[Any] = np.clip(np.rint(values), limits.min, limits.max).astype(self.dtype)
        return stored

    def dequantize(self, stored: npt.NDArray[Any]) -> FloatArray:
        """What the tensor stores -> real values: (q - zero_point) * scale."""
        if not self.quantized:
            return np.asarray(stored, dtype=np.float32)
        return (stored.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


class TFLiteModel:
    """One interpreter, built once and reused for every photo (never per frame).

    Not thread-safe: the pipeline gives each model to one inference thread.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = path
        self.threads = threads or os.cpu_count() or 1
        interpreter_class = _interpreter_class()
        try:
            self._interpreter = interpreter_class(model_path=str(path), num_threads=self.threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"{path}: not a usable TFLite model ({error})") from error
        self.inputs = tuple(TensorSpec.from_details(d) for d in self._interpreter.get_input_details())
        self.outputs = tuple(TensorSpec.from_details(d) for d in self._interpreter.get_output_details())
        if len(self.inputs) != 1:
            raise ModelError(f"{path}: has {len(self.inputs)} inputs; edgetag models take one image")

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def set_input(self, real: npt.NDArray[Any]) -> None:
        """Quantize and load one input batch (shape as the model's input, e.g. [1, H, W, 3])."""
        self.set_stored_input(self.input.quantize(real))

    def set_stored_input(self, stored: npt.NDArray[Any]) -> None:
        """Load an input that is already in the tensor's own type (quantized)."""
        self._interpreter.set_tensor(self.input.index, stored)

    def invoke(self) -> None:
        self._interpreter.invoke()

    def read_outputs(self) -> list[FloatArray]:
        """Every output as real (dequantized) float32 values, in the model's output order."""
        return [spec.dequantize(self._interpreter.get_tensor(spec.index)) for spec in self.outputs]

    def read_stored_outputs(self) -> list[npt.NDArray[Any]]:
        """Every output as the tensor stores it (int8 for a quantized model), in the model's output order.

        For decoders that threshold the raw values first and dequantize only what passes: cheaper than
        dequantizing tens of thousands of values per photo.
        """
        return [self._interpreter.get_tensor(spec.index) for spec in self.outputs]

    def run(self, real: npt.NDArray[Any]) -> list[FloatArray]:
        self.set_input(real)
        self.invoke()
        return self.read_outputs()

    def operators(self) -> list[dict[str, Any]]:
        """The graph's operators (name, input and output tensor indices), to find a post-process op."""
        details: list[dict[str, Any]] = self._interpreter._get_ops_details()
        return details

    def tensor_shape(self, index: int) -> tuple[int, ...]:
        """Shape of any tensor in the graph, e.g. an operator's input."""
        for details in self._interpreter.get_tensor_details():
            if int(details["index"]) == index:
                return tuple(int(n) for n in details["shape"])
        raise ModelError(f"{self.path}: no tensor with index {index}")
