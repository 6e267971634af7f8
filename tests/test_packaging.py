"""An installed wheel, not only a checkout, carries and finds its model pack."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from edgetag.modelpack import load_cards
from tests.conftest import ROOT, SAMPLES


def test_the_wheel_carries_the_pack_and_an_unpacked_wheel_uses_it(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("edgetag-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for card in load_cards().values():
        assert f"edgetag/_pack/{card.file.name}" in names
        assert f"edgetag/_pack/{card.name}.toml" in names
        assert card.labels is None or f"edgetag/_pack/{card.labels.name}" in names
    assert "edgetag/vocabulary.toml" in names
    assert not any(name.startswith("edgetag/_pack/build/") for name in names), "the build step stays out"

    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("EDGETAG_MODEL_PACK", None)
    run = subprocess.run(
        [sys.executable, "-m", "edgetag", "tag", str(SAMPLES / "chelsea.jpg")],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("Image may contain: cat")
    where = subprocess.run(
        [sys.executable, "-c", "import edgetag.modelpack as m; print(m.pack_dir())"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert where.stdout.strip() == str(installed / "edgetag" / "_pack")
