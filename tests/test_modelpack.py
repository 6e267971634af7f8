"""The pack's cards and files, and the clear start-up errors when a model is missing or broken."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgetag.errors import ModelError
from edgetag.modelpack import PACK_ENV, file_sha256, load_cards, pack_dir, read_labels
from edgetag.runtime import TFLiteModel
from edgetag.tagger import ModelSettings, Tagger


def test_every_card_is_complete_and_matches_its_files() -> None:
    cards = load_cards()
    assert {c.role for c in cards.values()} == {"classifier", "detector", "faces", "expressions"}
    for card in cards.values():
        assert file_sha256(card.file) == card.sha256
        assert card.license and card.license_file and card.license_file.is_file()
        assert card.source["package"] and card.source["version"]
        assert card.build["how"] and card.sanity["result"]
        model = TFLiteModel(card.file, threads=1)
        assert model.input.shape[1:3] == (card.input.height, card.input.width)
        assert model.input.dtype.name == card.input.dtype


def test_classifier_detector_and_expressions_are_fully_int8() -> None:
    cards = load_cards()
    for name in ("efficientnet-lite0", "ssdlite-person", "emotion-fer", "nanodet-g", "ssd-oidv4"):
        model = TFLiteModel(cards[name].file, threads=1)
        assert model.input.dtype.name == "int8"
        assert all(out.dtype.name == "int8" for out in model.outputs)
        # The real (dequantized) scale comes from each tensor, never a constant in the code.
        assert model.input.scale > 0 and all(out.scale > 0 for out in model.outputs)


def test_quantization_round_trip_uses_the_tensors_own_parameters() -> None:
    model = TFLiteModel(load_cards()["efficientnet-lite0"].file, threads=1)
    spec = model.input
    pixels = np.array([0, 1, 127, 128, 255], dtype=np.uint8)
    stored = spec.quantize(pixels)
    assert stored.dtype == np.int8
    np.testing.assert_allclose(spec.dequantize(stored), pixels, atol=spec.scale)


@pytest.fixture
def pack_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the pack that a test may break; edgetag is pointed at it."""
    copy = tmp_path / "pack"
    shutil.copytree(pack_dir(), copy, ignore=shutil.ignore_patterns("build"))
    monkeypatch.setenv(PACK_ENV, str(copy))
    return copy


def test_the_copy_works_before_it_is_broken(pack_copy: Path) -> None:
    tagger = Tagger.from_settings(ModelSettings())
    assert {m.path.parent for m in tagger.models} == {pack_copy}


def test_a_missing_model_file_is_a_clear_start_up_error(pack_copy: Path) -> None:
    (pack_copy / "nanodet-g-int8.tflite").unlink()
    with pytest.raises(ModelError, match=r"model file .*nanodet-g-int8.tflite is missing"):
        Tagger.from_settings(ModelSettings())


def test_a_changed_model_file_fails_its_checksum(pack_copy: Path) -> None:
    path = pack_copy / "efficientnet-lite0-int8.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(
        ModelError, match=r"efficientnet-lite0: .* has sha256 .*the card says .*corrupt or replaced"
    ):
        Tagger.from_settings(ModelSettings())


def test_a_corrupt_model_file_is_refused_by_the_runtime(pack_copy: Path) -> None:
    """Even with a matching checksum (a broken pack build), a file that is not a model is a clear error."""
    path = pack_copy / "blazeface-full-range.tflite"
    path.write_bytes(b"this is not a flatbuffer" * 100)
    card = pack_copy / "blazeface.toml"
    text = card.read_text(encoding="utf-8")
    old = load_cards(pack_copy)["blazeface"].sha256
    card.write_text(text.replace(old, file_sha256(path)), encoding="utf-8")
    with pytest.raises(ModelError, match=r"blazeface-full-range.tflite: not a usable TFLite model"):
        Tagger.from_settings(ModelSettings())


def test_a_label_file_that_does_not_fit_the_model_is_a_start_up_error(pack_copy: Path) -> None:
    labels = pack_copy / "imagenet-labels.txt"
    labels.write_text("\n".join(read_labels(labels)[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(ModelError, match="the model has 1000 classes but its label file has 999 labels"):
        Tagger.from_settings(ModelSettings())
    (pack_copy / "ssdlite-person-labels.txt").write_text("person\ncyclist\n", encoding="utf-8")
    with pytest.raises(
        ModelError, match="scores 2 classes but its label file gives 2 labels plus background"
    ):
        Tagger.from_settings(ModelSettings(classifier="none", detector="ssdlite-person"))


def test_a_broken_card_names_itself(pack_copy: Path) -> None:
    (pack_copy / "blazeface.toml").write_text("name = 'blazeface'\nrole = 'faces'\n", encoding="utf-8")
    with pytest.raises(ModelError, match=r"model card .*blazeface.toml: missing key 'input'"):
        load_cards(pack_copy)


def test_unknown_model_names_list_the_choices() -> None:
    with pytest.raises(ModelError, match=r"classifier 'mobilenet': not a pack model \(efficientnet-lite0\)"):
        Tagger.from_settings(ModelSettings(classifier="mobilenet"))
    with pytest.raises(ModelError, match="ssdlite-person is a detector model, not a classifier model"):
        Tagger.from_settings(ModelSettings(classifier="ssdlite-person"))
    with pytest.raises(ModelError, match="no models selected"):
        Tagger.from_settings(ModelSettings(classifier="none", detector="none", faces="none"))
