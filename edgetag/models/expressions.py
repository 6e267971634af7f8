"""Facial expression classifiers: a face crop in, one probability per expression out.

edgetag uses one output only, how likely the face is to smile ("happy" in FER2013's seven), so that
it can say "people smiling". It never says anything else about a face: not who, not gender, not age.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from edgetag.errors import ModelError
from edgetag.models.base import Detection, ImageModel, PackModelSpec, output_format

SMILE_LABEL = "happy"


@dataclass
class ExpressionModel(ImageModel):
    """Softmax over expressions for a face crop; `smile()` is the probability of the smiling one."""

    labels: list[str] = field(default_factory=list)
    face_margin: float = 0.2  # the crop grows the face box by this share of its size on each side

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_outputs_fit(self.labels, "outputs")
        if SMILE_LABEL not in self.labels:
            raise ModelError(f"{self.info.name}: its labels have no {SMILE_LABEL!r} expression")
        self._smile_index = self.labels.index(SMILE_LABEL)

    def smile(self, image: Image.Image, face: Detection) -> float:
        """The probability that the face in `face.box` (fractions of `image`) smiles."""
        crop = image.crop(face_crop(face.box, image.width, image.height, self.face_margin))
        probabilities = self.invoke(self.prepare(crop))[0].reshape(-1)
        return float(probabilities[self._smile_index])


def face_crop(
    box: tuple[float, float, float, float], width: int, height: int, margin: float
) -> tuple[int, int, int, int]:
    """A square pixel crop around a face box, grown by `margin` on each side and kept on the photo."""
    x_min, y_min, x_max, y_max = box
    side = max(x_max - x_min, 1e-6) * width, max(y_max - y_min, 1e-6) * height
    size = max(side) * (1 + 2 * margin)
    center_x, center_y = (x_min + x_max) / 2 * width, (y_min + y_max) / 2 * height
    left, top = center_x - size / 2, center_y - size / 2
    left, top = float(np.clip(left, 0, max(width - size, 0))), float(np.clip(top, 0, max(height - size, 0)))
    right, bottom = min(left + size, width), min(top + size, height)
    return round(left), round(top), max(round(right), round(left) + 1), max(round(bottom), round(top) + 1)


@output_format("softmax-expressions", "expressions")
def load_expressions(spec: PackModelSpec) -> ExpressionModel:
    margin = float(spec.card.output.get("face_margin", 0.2))
    return ExpressionModel(spec.info, spec.model, spec.card.input, labels=spec.labels, face_margin=margin)
