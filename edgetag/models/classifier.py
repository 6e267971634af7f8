"""Softmax classifiers (the pack's EfficientNet-Lite0, or your own): one probability per label."""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from edgetag.models.base import ImageModel, ModelInput, PackModelSpec, output_format
from edgetag.runtime import FloatArray


@dataclass
class Classifier(ImageModel):
    """Softmax classifier: one probability per label."""

    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_outputs_fit(self.labels, "classes")

    def run(self, prepared: ModelInput) -> FloatArray:
        """One probability per label."""
        return self.invoke(prepared)[0].reshape(-1)

    def classify(self, image: Image.Image) -> FloatArray:
        return self.run(self.prepare(image))


@output_format("softmax", "classifier")
def load_softmax(spec: PackModelSpec) -> Classifier:
    return Classifier(spec.info, spec.model, spec.card.input, labels=spec.labels)
