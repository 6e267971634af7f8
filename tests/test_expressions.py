"""The pack's int8 expression model on real faces: the smiling astronaut smiles, Grace Hopper does not."""

from __future__ import annotations

import pytest
from PIL import Image

from edgetag.errors import ModelError
from edgetag.modelpack import load_cards
from edgetag.models import ExpressionModel, face_crop, load_pack_model
from edgetag.tagger import ModelSettings, Tagger
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def expressions() -> ExpressionModel:
    model = load_pack_model(load_cards()["emotion-fer"], 1, None)
    assert isinstance(model, ExpressionModel)
    return model


def smiles(tagger: Tagger, name: str) -> list[float | None]:
    return [face.get("smile") for face in tagger.tag_file(SAMPLES / name).to_dict()["faces"]]


def test_the_smiling_astronaut_smiles(tagger: Tagger) -> None:
    result = tagger.tag_file(SAMPLES / "astronaut.jpg").to_dict()
    assert [face["smile"] for face in result["faces"]] == [pytest.approx(1.0, abs=0.1)]
    assert result["sentence"].startswith("Image may contain: 1 person, smiling")
    assert result["tags"][1]["concept"] == "smiling" and result["tags"][1]["count"] == 1


def test_grace_hopper_does_not_smile(tagger: Tagger) -> None:
    (smile,) = smiles(tagger, "grace_hopper.jpg")
    assert smile is not None and smile < 0.2
    assert tagger.tag_file(SAMPLES / "grace_hopper.jpg").sentence == "Image may contain: 1 person"


def test_one_of_the_two_people_smiles(tagger: Tagger) -> None:
    """two_people.jpg is the astronaut (left) beside Grace Hopper (right)."""
    result = tagger.tag_file(SAMPLES / "two_people.jpg").to_dict()
    by_position = sorted(result["faces"], key=lambda face: face["box"][0])
    assert [face["smile"] > 0.5 for face in by_position] == [True, False]
    assert result["sentence"] == "Image may contain: 2 people and people smiling"


def test_faces_without_a_smile_model_say_nothing_about_expressions() -> None:
    tagger = Tagger.from_settings(ModelSettings(expressions="none"))
    result = tagger.tag_file(SAMPLES / "astronaut.jpg").to_dict()
    assert len(result["faces"]) == 1 and "smile" not in result["faces"][0]
    assert result["sentence"].startswith("Image may contain: 1 person")
    assert "smiling" not in result["sentence"]
    assert "emotion-fer" not in {model["name"] for model in result["models"]}


def test_expressions_need_faces() -> None:
    tagger = Tagger.from_settings(ModelSettings(faces="none"))
    assert tagger.expressions is None


def test_mirrored_faces_keep_their_expression(tagger: Tagger) -> None:
    """A smile is not a crop artefact: the mirrored photo gives the same answer."""
    for name, smiling in (("astronaut.jpg", True), ("grace_hopper.jpg", False)):
        photo = tagger.load(SAMPLES / name)
        mirrored = photo.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        result = tagger.infer(tagger.prepare_image(mirrored, name)).to_dict()
        assert [face["smile"] > 0.5 for face in result["faces"]] == [smiling]


def test_the_crop_is_square_grown_and_kept_on_the_photo() -> None:
    assert face_crop((0.4, 0.4, 0.6, 0.6), 100, 100, 0.2) == (36, 36, 64, 64)
    # a face at the corner: the crop shifts onto the photo instead of running off it
    assert face_crop((0.0, 0.0, 0.2, 0.1), 100, 100, 0.25) == (0, 0, 30, 30)


def test_the_model_reads_the_happy_output(expressions: ExpressionModel) -> None:
    assert expressions.labels == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert expressions.face_margin == load_cards()["emotion-fer"].output["face_margin"]


def test_only_pack_expression_models_are_accepted() -> None:
    with pytest.raises(ModelError, match="only the pack's expressions models"):
        Tagger.from_settings(ModelSettings(expressions="my-own.tflite"))
