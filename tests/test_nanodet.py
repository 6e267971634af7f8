"""NanoDet decoding: hand-made head outputs with known answers, then the real int8 model on real photos."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from edgetag.errors import ModelError
from edgetag.imaging import Placement
from edgetag.modelpack import ModelCard, load_cards
from edgetag.models import ModelInput, load_pack_model
from edgetag.models.nanodet import NanoDetDetector, distances, raw_threshold
from edgetag.runtime import TensorSpec, TFLiteModel
from edgetag.tagger import ModelSettings, Tagger

SIZE = 416
CAT, DOG, PERSON = 15, 16, 0


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return load_cards()["nanodet-g"]


@pytest.fixture(scope="module")
def detector(card: ModelCard) -> NanoDetDetector:
    model = load_pack_model(card, threads=2)
    assert isinstance(model, NanoDetDetector)
    return model


def blank(detector: NanoDetDetector) -> list[npt.NDArray[np.int8]]:
    """Outputs in the model's own order where every class logit is as low as int8 can say."""
    return [np.full(spec.shape, -128, np.int8) for spec in detector.model.outputs]


def level_output(detector: NanoDetDetector, stride: int) -> int:
    return next(level.output for level in detector.levels if level.stride == stride)


def stored(spec: TensorSpec, real: float) -> int:
    return int(np.clip(round(real / spec.scale + spec.zero_point), -128, 127))


def put(
    detector: NanoDetDetector,
    outputs: list[npt.NDArray[np.int8]],
    stride: int,
    cell: tuple[int, int],
    label: int,
    score: float,
    bins: tuple[int, int, int, int],
) -> None:
    """One confident cell: class `label` at `score`, and each side's distance exactly one bin."""
    index = level_output(detector, stride)
    spec = detector.model.outputs[index]
    x, y = cell
    values = outputs[index][0, y, x]
    values[label] = stored(spec, math.log(score / (1 - score)))
    for side, bin_index in enumerate(bins):
        values[80 + 11 * side + bin_index] = 127  # 255 steps above the other bins: a one-hot softmax


def identity() -> ModelInput:
    return ModelInput(np.zeros((1, SIZE, SIZE, 3), np.int8), Placement())


def test_one_known_cell_gives_its_box_and_class(detector: NanoDetDetector) -> None:
    outputs = blank(detector)
    put(detector, outputs, 16, (5, 7), CAT, 0.9, (2, 1, 3, 4))
    (found,) = detector.decode(outputs, identity())
    centre_x, centre_y = 5.5 * 16, 7.5 * 16
    expected = (centre_x - 32, centre_y - 16, centre_x + 48, centre_y + 64)
    assert found.label == "cat"
    assert found.score == pytest.approx(0.9, abs=0.01)
    np.testing.assert_allclose(found.box, [v / SIZE for v in expected], atol=1e-4)


def test_every_level_decodes_with_its_own_stride_in_any_output_order(card: ModelCard) -> None:
    normal = load_pack_model(card, threads=1)
    swapped = load_pack_model(card, threads=1)
    assert isinstance(normal, NanoDetDetector) and isinstance(swapped, NanoDetDetector)
    swapped.model.outputs = swapped.model.outputs[::-1]  # as if another exporter listed them backwards
    swapped.__post_init__()
    assert [level.stride for level in swapped.levels] == [8, 16, 32]
    assert [level.output for level in swapped.levels] == [2, 1, 0]
    for model in (normal, swapped):
        outputs = blank(model)
        for stride in (8, 16, 32):
            put(model, outputs, stride, (1, 2), DOG, 0.8, (1, 1, 1, 1))
        found = sorted(model.decode(outputs, identity()), key=lambda d: d.box[2] - d.box[0])
        assert [d.label for d in found] == ["dog"] * 3
        for detection, stride in zip(found, (8, 16, 32), strict=True):
            centre_x, centre_y = 1.5 * stride, 2.5 * stride
            expected = (centre_x - stride, centre_y - stride, centre_x + stride, centre_y + stride)
            np.testing.assert_allclose(detection.box, [v / SIZE for v in expected], atol=1e-4)


def test_nms_is_per_class(detector: NanoDetDetector) -> None:
    outputs = blank(detector)
    put(detector, outputs, 32, (6, 6), CAT, 0.9, (2, 2, 2, 2))
    put(detector, outputs, 32, (6, 7), CAT, 0.7, (2, 3, 2, 1))  # the same box from the next cell down
    put(detector, outputs, 32, (6, 6), DOG, 0.6, (2, 2, 2, 2))  # same box, another class: kept
    put(detector, outputs, 32, (1, 1), CAT, 0.5, (1, 1, 1, 1))  # another cat elsewhere: kept
    found = detector.decode(outputs, identity())
    assert [(d.label, round(d.score, 1)) for d in found] == [("cat", 0.9), ("dog", 0.6), ("cat", 0.5)]


def test_nothing_above_the_threshold_is_no_detection(detector: NanoDetDetector) -> None:
    outputs = blank(detector)
    put(detector, outputs, 8, (3, 3), PERSON, 0.2, (1, 1, 1, 1))
    assert detector.decode(outputs, identity()) == []


def test_the_raw_threshold_loses_no_candidate_and_the_exact_score_decides() -> None:
    spec = TensorSpec(0, "head", (1, 13, 13, 124), np.dtype(np.int8), scale=0.1, zero_point=0)
    limit = raw_threshold(spec, 0.3)  # logit(0.3) = -0.847 -> stored -8.47, rounded down
    assert limit == -9
    sigmoid = [1 / (1 + math.exp(-v * 0.1)) for v in (-9, -8)]
    assert sigmoid[0] < 0.3 < sigmoid[1]
    float_spec = TensorSpec(0, "head", (1, 13, 13, 124), np.dtype(np.float32), scale=0.0, zero_point=0)
    assert raw_threshold(float_spec, 0.5) == 0.0


def test_distance_is_the_expectation_of_the_softmax() -> None:
    logits = np.full((1, 44), -50.0, np.float32)
    logits[0, 3] = 10.0  # left: bin 3
    logits[0, 11 + 0] = logits[0, 11 + 1] = 10.0  # top: bins 0 and 1 equally -> 0.5
    logits[0, 22:33] = 0.0  # right: uniform over 0..10 -> 5
    logits[0, 33 + 10] = 10.0  # bottom: bin 10
    np.testing.assert_allclose(distances(logits, 11), [[3.0, 0.5, 5.0, 10.0]], atol=1e-5)


def test_a_wide_photo_is_letterboxed_and_boxes_map_back(detector: NanoDetDetector) -> None:
    photo = Image.new("RGB", (832, 416), (200, 100, 50))
    prepared = detector.prepare(photo)
    assert prepared.tensor.shape == (1, SIZE, SIZE, 3) and prepared.tensor.dtype == np.int8
    assert prepared.placement == Placement(0.0, 0.25, 1.0, 0.5)
    assert (prepared.tensor[0, :104] == -128).all() and (prepared.tensor[0, 312:] == -128).all()  # black
    assert prepared.tensor[0, 208, 208].tolist() == [200 - 128, 100 - 128, 50 - 128]  # pixel - 128
    outputs = blank(detector)
    put(detector, outputs, 16, (12, 12), CAT, 0.9, (2, 2, 2, 2))  # centre (200, 200), 64 px square
    (found,) = detector.decode(outputs, prepared)
    box = np.array([168, 168, 232, 232]) / SIZE
    expected = [box[0], (box[1] - 0.25) / 0.5, box[2], (box[3] - 0.25) / 0.5]
    np.testing.assert_allclose(found.box, expected, atol=1e-4)


def test_outputs_that_do_not_fit_the_labels_are_refused(card: ModelCard) -> None:
    model = load_pack_model(card, threads=1)
    assert isinstance(model, NanoDetDetector)
    with pytest.raises(ModelError, match=r"is not \[1, H, W, 123\] \(79 labels"):
        NanoDetDetector(model.info, TFLiteModel(card.file, 1), card.input, labels=model.labels[:79])
    with pytest.raises(ModelError, match="no level of a 416x416 input with strides"):
        NanoDetDetector(
            model.info, TFLiteModel(card.file, 1), card.input, labels=model.labels, strides=(4, 8)
        )


# --- the real int8 model on real photos ------------------------------------------------------------


def side_by_side(*paths: Path) -> Image.Image:
    photos = [Image.open(path).convert("RGB") for path in paths]
    height = min(photo.height for photo in photos)
    photos = [photo.resize((round(photo.width * height / photo.height), height)) for photo in photos]
    canvas = Image.new("RGB", (sum(photo.width for photo in photos), height))
    left = 0
    for photo in photos:
        canvas.paste(photo, (left, 0))
        left += photo.width
    return canvas


def test_the_cat_is_found_where_it_is(detector: NanoDetDetector, samples: Path) -> None:
    found = detector.detect(Image.open(samples / "chelsea.jpg").convert("RGB"))
    cats = [d for d in found if d.label == "cat"]
    assert cats and cats[0] == max(found, key=lambda d: d.score)
    x_min, y_min, x_max, y_max = cats[0].box
    # chelsea.jpg (451x300) is the cat's head and chest filling most of the frame
    assert x_min < 0.1 and x_max > 0.9 and y_max > 0.85 and y_min < 0.2


def test_two_people_are_two_persons(detector: NanoDetDetector, samples: Path) -> None:
    found = detector.detect(Image.open(samples / "two_people.jpg").convert("RGB"))
    persons = [d for d in found if d.label == "person"]
    assert len(persons) == 2
    assert persons[0].box[0] > 0.5 and persons[1].box[2] < 0.4  # one on the right, one on the left


def test_two_photos_side_by_side_are_two_persons(detector: NanoDetDetector, samples: Path) -> None:
    found = detector.detect(side_by_side(samples / "grace_hopper.jpg", samples / "astronaut.jpg"))
    persons = sorted((d for d in found if d.label == "person"), key=lambda d: d.box[0])
    assert len(persons) == 2
    assert persons[0].box[2] < 0.55 and persons[1].box[0] > 0.45  # one in each half


def test_a_photo_with_nothing_coco_knows_has_no_detection(detector: NanoDetDetector, samples: Path) -> None:
    assert detector.detect(Image.open(samples / "rocket.jpg").convert("RGB")) == []


def test_nanodet_can_be_chosen_as_the_detector_and_its_labels_reach_the_description(samples: Path) -> None:
    tagger = Tagger.from_settings(ModelSettings(classifier="none", detector="nanodet-g", faces="none"))
    assert [m.name for m in tagger.models] == ["nanodet-g"]
    assert tagger.working_side == SIZE
    cat = tagger.tag_file(samples / "chelsea.jpg").description
    assert cat.evidence["animal"] > 0.5  # a COCO "cat" box proves an animal; the kind is the classifier's
    assert "cat" not in cat.evidence
    motorcycle = tagger.tag_file(samples / "motorcycle.jpg").to_dict()
    assert "motorcycle" in [tag["concept"] for tag in motorcycle["tags"]]
