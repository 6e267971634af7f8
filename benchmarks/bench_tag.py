"""How fast and how small `edgetag tag` is, next to a naive baseline over the same models, in one run.

Prints medians of:
- the invoke floor of each model (interpreter.invoke() alone, input already loaded);
- end to end per photo (read, decode, fit, infer, decode outputs, describe) for a small photo and a
  12 MP JPEG: one photo on its own, and per photo in a stream as `edgetag tag` runs many (the next
  photo is decoded while this one is inferred);
- the same photos through a naive pipeline that opens, converts and resizes the full photo once per
  model (what most examples do);
- peak RSS of the `edgetag tag` command tagging the samples and the 12 MP photo;
- the CPU time a small photo needs (preparing it on one thread, inferring on all the inference threads),
  and from it the fastest a stream could go at those costs on the cores this process may use;
- the previous pack (person-only SSD, no expression model) against the current one (NanoDet-g
  COCO-80 detector and the expression model), in the same rounds: per-photo time and CPU, and the
  peak RSS of `edgetag tag` with each.

Every figure is measured round-robin (one of each per round), so a ratio compares numbers taken under
the same machine conditions; timings on a shared or virtual machine drift by tens of percent.

Run: `make bench` (or `.venv/bin/python benchmarks/bench_tag.py [--rounds N]`).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from benchmarks.measure import run_measured
from edgetag.imaging import Photo
from edgetag.models import Classifier, DetectorModel, ImageModel
from edgetag.runtime import runtime_name
from edgetag.tagger import ModelSettings, Tagger, TagResult

OLD_PACK = ModelSettings(detector="ssdlite-person", expressions="none")
OLD_PACK_FLAGS = ["--detector", "ssdlite-person", "--expressions", "none"]

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "samples" / "astronaut.jpg"
CAMERA_SIZE = (4056, 3040)  # Raspberry Pi HQ camera, 12.3 MP
STREAM = 6  # photos per stream measurement; the first two fill the pipeline


def make_camera_photo(folder: Path) -> Path:
    """A camera-size JPEG made from a real photo (upscaled, quality 90): realistic decode cost."""
    path = folder / "camera-12mp.jpg"
    with Image.open(ROOT / "samples" / "coffee.jpg") as photo:
        photo.convert("RGB").resize(CAMERA_SIZE, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def naive_tag(tagger: Tagger, path: Path) -> TagResult:
    """The baseline: every model opens and converts the full-size photo and resizes it itself."""
    probabilities, detections, faces = None, [], []
    models: list[ImageModel] = [m for m in (tagger.classifier, tagger.detector, tagger.faces) if m]
    width = height = 0
    for model in models:
        with Image.open(path) as opened:
            full = opened.convert("RGB")
        width, height = full.size
        resized = full.resize((model.input.width, model.input.height))
        if isinstance(model, Classifier):
            probabilities = model.classify(resized)
        elif model is tagger.faces and isinstance(model, DetectorModel):
            faces = model.detect(resized)
        elif isinstance(model, DetectorModel):
            detections = model.detect(resized)
    description = tagger.vocabulary.describe(probabilities, detections, faces)
    photo = Photo(path.name, width, height, "JPEG", Image.new("RGB", (1, 1)))
    return TagResult(photo, description, (), tagger.models)


def stream_gap_ms(tagger: Tagger, path: Path) -> float:
    """Per-photo time in a stream: the median gap between results once the pipeline is full."""
    gaps, last = [], time.perf_counter()
    for index, _ in enumerate(tagger.tag_files([path] * STREAM)):
        now = time.perf_counter()
        if index >= 2:
            gaps.append((now - last) * 1000)
        last = now
    return statistics.median(gaps)


def cpu_ms(action: Callable[[], object]) -> float:
    """CPU time of one call, summed over every thread of this process (the runtime's workers too)."""
    started = time.process_time()
    action()
    return (time.process_time() - started) * 1000


def round_robin(
    timed: dict[str, Callable[[], object]], measured: dict[str, Callable[[], float]], rounds: int
) -> dict[str, float]:
    """Median milliseconds of each action, taking one sample of every action per round."""
    samples: dict[str, list[float]] = {name: [] for name in [*timed, *measured]}
    for action in [*timed.values(), *measured.values()]:
        action()  # warm-up
    for _ in range(rounds):
        for name, action in timed.items():
            started = time.perf_counter()
            action()
            samples[name].append((time.perf_counter() - started) * 1000)
        for name, measure in measured.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_rss_mb(command: list[str]) -> float:
    """Peak resident memory of `command` alone (it must succeed)."""
    measured = run_measured(command)
    if measured.returncode != 0:
        raise subprocess.CalledProcessError(measured.returncode, command, measured.stdout, measured.stderr)
    return measured.peak_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="samples per figure (median)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        camera = make_camera_photo(Path(scratch))
        photos = [str(p) for p in sorted((ROOT / "samples").glob("*.jpg"))]
        command = [sys.executable, "-m", "edgetag", "tag", *photos, str(camera)]
        rss = peak_rss_mb(command)
        old_rss = peak_rss_mb([*command, *OLD_PACK_FLAGS])

        tagger = Tagger.from_settings(ModelSettings())
        old = Tagger.from_settings(OLD_PACK)
        models: list[ImageModel] = [m for m in (tagger.classifier, tagger.detector, tagger.faces) if m]
        old_detector = old.detector
        assert old_detector is not None
        image = tagger.load(SMALL).image
        for model in models:
            model.invoke(model.prepare(image))  # a real input stays loaded for the floor
        old_detector.invoke(old_detector.prepare(image))
        timed: dict[str, Callable[[], object]] = {f"floor {m.info.name}": m.model.invoke for m in models}
        timed[f"floor {old_detector.info.name}"] = old_detector.model.invoke
        measured: dict[str, Callable[[], float]] = {}
        for label, path in (("small", SMALL), ("12mp", camera)):
            timed[f"one {label}"] = functools.partial(tagger.tag_file, path)
            timed[f"naive {label}"] = functools.partial(naive_tag, tagger, path)
            timed[f"old {label}"] = functools.partial(old.tag_file, path)
            measured[f"stream {label}"] = functools.partial(stream_gap_ms, tagger, path)
        prepared = tagger.prepare_file(SMALL)
        measured["cpu prepare"] = functools.partial(cpu_ms, functools.partial(tagger.prepare_file, SMALL))
        measured["cpu infer"] = functools.partial(cpu_ms, functools.partial(tagger.infer, prepared))
        old_prepared = old.prepare_file(SMALL)
        measured["cpu old prepare"] = functools.partial(cpu_ms, functools.partial(old.prepare_file, SMALL))
        measured["cpu old infer"] = functools.partial(cpu_ms, functools.partial(old.infer, old_prepared))
        median = round_robin(timed, measured, args.rounds)
        same = {p: tagger.tag_file(p).sentence == naive_tag(tagger, p).sentence for p in (SMALL, camera)}

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"edgetag benchmark: {machine}, {runtime_name()}, {models[0].model.threads} inference threads")
    print(f"medians of {args.rounds} round-robin rounds\n")
    print("invoke floor (interpreter.invoke() only)")
    floor_sum = 0.0
    for model in models:
        floor = median[f"floor {model.info.name}"]
        floor_sum += floor
        print(f"  {model.info.name:<22} {floor:8.2f} ms")
    print(f"  {'sum':<22} {floor_sum:8.2f} ms\n")
    print("end to end per photo (read, decode, fit, infer, describe)")
    print(f"  {'':<20} {'one photo':>10} {'in a stream':>12} {'naive':>10} {'naive / one':>12}")
    for label, name, path in (("small", "small 512x512", SMALL), ("12mp", "12 MP 4056x3040", camera)):
        one, stream, naive = (median[f"{kind} {label}"] for kind in ("one", "stream", "naive"))
        print(
            f"  {name:<20} {one:7.2f} ms {stream:9.2f} ms {naive:7.2f} ms {naive / one:11.1f}x"
            f"   same sentence as naive: {same[path]}"
        )
    speedup = median["naive 12mp"] / median["one 12mp"]
    print("\ntargets")
    print(f"  12 MP, one photo, vs naive:           {speedup:5.1f}x faster (>= 4x)")
    stream, one = median["stream small"] / floor_sum, median["one small"] / floor_sum
    print(f"  small, in a stream, vs invoke floors: {stream:5.2f}x their sum (<= 1.3x)")
    print(f"  small, one photo, vs invoke floors:   {one:5.2f}x their sum")
    print(f"  peak RSS of `edgetag tag`:            {rss:5.0f} MB (< 170 MB)")
    cores = len(os.sched_getaffinity(0))
    prepare_cpu, infer_cpu = median["cpu prepare"], median["cpu infer"]
    best = (prepare_cpu + infer_cpu) / cores
    print(f"\nCPU time of the small photo (all threads), and what it allows on {cores} cores")
    print(f"  read, decode and fit the inputs:      {prepare_cpu:5.2f} ms")
    print(f"  infer and describe:                   {infer_cpu:5.2f} ms")
    print(f"  a stream at best, their sum / cores:  {best:5.2f} ms = {best / floor_sum:.2f}x the floors")
    old_cpu = median["cpu old prepare"] + median["cpu old infer"]
    new_cpu = prepare_cpu + infer_cpu
    print("\nthe current pack against the previous one (person-only SSD, no expressions), same rounds")
    print(f"  invoke floor, {old_detector.info.name:<22} {median[f'floor {old_detector.info.name}']:8.2f} ms")
    for label, name in (("small", "small 512x512"), ("12mp", "12 MP 4056x3040")):
        new, before = median[f"one {label}"], median[f"old {label}"]
        print(f"  {name:<20} one photo: {before:7.2f} ms -> {new:7.2f} ms = {new / before:4.2f}x")
    print(
        f"  small, CPU time:     {old_cpu:7.2f} ms -> {new_cpu:7.2f} ms = {new_cpu / old_cpu:4.2f}x (<= 1.6x)"
    )
    print(f"  peak RSS of `edgetag tag`: {old_rss:5.0f} MB -> {rss:5.0f} MB (< 170 MB)")


if __name__ == "__main__":
    main()
