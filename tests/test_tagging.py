"""The real int8 models on real photos: tags, people counts, sentence order and the JSON contract."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from edgetag.modelpack import load_cards
from edgetag.tagger import ModelSettings, Tagger, TagResult
from edgetag.vocabulary import sentence
from tests.conftest import ROOT, SAMPLES

SCHEMA = json.loads((ROOT / "docs" / "schema" / "tag.schema.json").read_text(encoding="utf-8"))

# photo -> (people, concepts that must be among the tags)
EXPECTED = {
    "astronaut.jpg": (1, set()),
    "grace_hopper.jpg": (1, set()),
    "cameraman.jpg": (1, set()),
    "two_people.jpg": (2, set()),
    "chelsea.jpg": (0, {"cat"}),
    "motorcycle.jpg": (0, {"motorcycle"}),
    "china.jpg": (0, {"outdoor"}),
    # rocket.jpg: missile classes 0.56 in all, below the threshold that thinly evidenced concepts
    # share (docs/quality.md): no rocket tag since that calibration; no person either.
    "rocket.jpg": (0, set()),
}


def concepts(tagger: Tagger, path: Path) -> set[str]:
    return {tag["concept"] for tag in tagger.tag_file(path).to_dict()["tags"]}


@pytest.mark.parametrize(("name", "expected"), EXPECTED.items())
def test_sample_photos_get_the_right_people_and_tags(
    tagger: Tagger, name: str, expected: tuple[int, set[str]]
) -> None:
    people, wanted = expected
    result = tagger.tag_file(SAMPLES / name).to_dict()
    assert result["people"] == people
    found = {tag["concept"] for tag in result["tags"]}
    assert wanted <= found
    if people:
        assert result["tags"][0] == {
            "concept": "person",
            "score": result["tags"][0]["score"],
            "count": people,
            "parents": [],
        }
        assert result["sentence"].startswith(
            f"Image may contain: {people} {'person' if people == 1 else 'people'}"
        )
    else:
        assert "person" not in found


def test_coffee_is_coffee_or_a_cup(tagger: Tagger) -> None:
    assert concepts(tagger, SAMPLES / "coffee.jpg") & {"coffee", "cup"}


def test_the_cat_is_not_a_person_nor_a_dog(tagger: Tagger) -> None:
    result = tagger.tag_file(SAMPLES / "chelsea.jpg").to_dict()
    assert result["sentence"] == "Image may contain: cat"
    assert result["faces"] == []
    assert {o["label"] for o in result["objects"]} <= {"cat"}  # the cat's own box, never a person or a dog
    assert result["classes"][0]["label"] in {"tiger cat", "Egyptian Mau", "tabby cat"}


def test_two_people_are_located_left_and_right(tagger: Tagger) -> None:
    result = tagger.tag_file(SAMPLES / "two_people.jpg").to_dict()
    centers = sorted((box[0] + box[2]) / 2 for box in [*(f["box"] for f in result["faces"])])
    assert len(centers) == 2
    assert centers[0] < 0.5 < centers[1]  # one face in each half of the collage


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.jpg")), ids=lambda p: p.name)
def test_every_result_follows_the_schema_and_its_own_sentence(tagger: Tagger, path: Path) -> None:
    result = tagger.tag_file(path)
    data = result.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert data["sentence"] == sentence(result.description.tags)
    groups = [tag.group for tag in result.description.tags]
    ranks = [0 if g == "people" else 2 if g == "scene" else 1 for g in groups]
    assert ranks == sorted(ranks), "people first, then objects, then scenes"
    stock = ModelSettings()  # the pack has a second detector (nanodet-g) that the stock settings leave out
    names = (stock.classifier, stock.detector, stock.faces, stock.expressions)
    cards = [load_cards()[name] for name in names]
    assert {(m["name"], m["sha256"]) for m in data["models"]} == {(c.name, c.sha256) for c in cards}
    steps = {"decode", "prepare", "classifier", "detector", "faces", "total"}
    assert set(data["timing_ms"]) == steps | ({"expressions"} if data["faces"] else set())
    assert data["timing_ms"]["total"] >= data["timing_ms"]["classifier"]


def test_results_say_nothing_about_pixels(tagger: Tagger) -> None:
    """Privacy: a result is words, numbers and boxes; no string in it is long enough to hold image data."""
    text = json.dumps(tagger.tag_file(SAMPLES / "astronaut.jpg").to_dict())
    assert len(text) < 4000

    def strings(value: object) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)] + [k for k in value if isinstance(k, str)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    assert max(len(s) for s in strings(json.loads(text))) < 100


def to_format(path: Path, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp_photos_are_tagged_like_the_jpeg(tagger: Tagger, fmt: str) -> None:
    result = tagger.tag_bytes(to_format(SAMPLES / "chelsea.jpg", fmt), f"chelsea.{fmt.lower()}")
    assert result.sentence == "Image may contain: cat"


def test_a_photo_stored_sideways_is_turned_upright_before_tagging(tagger: Tagger) -> None:
    with Image.open(SAMPLES / "grace_hopper.jpg") as image:
        stored = image.convert("RGB").transpose(
            Image.Transpose.ROTATE_90
        )  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif, quality=90)
    result = tagger.tag_bytes(buffer.getvalue(), "sideways.jpg").to_dict()
    with Image.open(SAMPLES / "grace_hopper.jpg") as image:
        assert (result["photo"]["width"], result["photo"]["height"]) == image.size
    assert result["people"] == 1
    assert len(result["faces"]) == 1


def test_a_12_megapixel_camera_photo(tagger: Tagger) -> None:
    with Image.open(SAMPLES / "coffee.jpg") as image:
        big = image.convert("RGB").resize((4056, 3040), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    result = tagger.tag_bytes(buffer.getvalue(), "camera.jpg").to_dict()
    assert (result["photo"]["width"], result["photo"]["height"]) == (4056, 3040)
    assert {t["concept"] for t in result["tags"]} & {"coffee", "cup"}


def test_tagging_many_files_keeps_their_order_and_reports_failures_in_place(
    tagger: Tagger, bad_files: dict[str, Path]
) -> None:
    paths = [SAMPLES / "chelsea.jpg", bad_files["corrupt"], SAMPLES / "astronaut.jpg", bad_files["empty"]] * 2
    results = list(tagger.tag_files(paths, lookahead=2))
    assert [path for path, _ in results] == paths
    outcomes = [r.sentence if isinstance(r, TagResult) else r.reason for _, r in results]
    assert (
        outcomes
        == ["Image may contain: cat", "corrupt", "Image may contain: 1 person, smiling and nature", "empty"]
        * 2
    )
