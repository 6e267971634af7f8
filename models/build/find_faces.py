"""Find the faces in the sample photos with the pack's BlazeFace (runtime venv).

build_emotion.py (tf venv) calibrates and checks the expression model on face crops; the crops
must come from the face detector edgetag runs, so this step runs BlazeFace full range in
ai-edge-litert with sanity.py's decoder and writes the boxes to work/faces.json as
(x_min, y_min, x_max, y_max) fractions of the photo, the runtime's box order.
"""

from __future__ import annotations

from common import MODELS, WORK, write_json
from sanity import FULL_RANGE, check_blazeface


def main() -> None:
    found = check_blazeface(MODELS / "blazeface-full-range.tflite", FULL_RANGE)
    faces: dict[str, list[list[float]]] = {}
    for name, result in found["photos"].items():
        # sanity.py reports (top, left, bottom, right).
        faces[name] = [[d["box"][1], d["box"][0], d["box"][3], d["box"][2]] for d in result["detections"]]
        if faces[name]:
            print(f"  {name}: {len(faces[name])} face(s)")
    write_json(WORK / "faces.json", faces)


if __name__ == "__main__":
    main()
