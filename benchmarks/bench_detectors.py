"""The pack's detectors side by side: nanodet-g (COCO-80, the default), ssdlite-person and ssd-oidv4.

Prints medians of, for each detector:
- invoke: interpreter.invoke() alone, input already loaded;
- run: invoke + reading and decoding the outputs (what the tagger's "detector" step costs);
- end to end per photo: `Tagger.tag_file` (read, decode, fit, classifier + detector + faces, describe)
  over the sample photos, the full stock pipeline with one detector or another, in wall time and in
  CPU time (all threads of this process);
- with `--commands N`: N runs of `edgetag tag --detector NAME samples/*.jpg` per detector, alternating,
  CPU time (user + system) per photo including start-up, and peak RSS.

Measured alternately (one of each per round, same photos) so the ratios hold on a shared machine.
With `--json PATH` the figures are also written for models/build/write_cards.py (the card's sanity).

Run: `.venv/bin/python benchmarks/bench_detectors.py [--rounds N] [--commands N] [--json PATH]`; the
nanodet-g card reads models/build/work/nanodet-benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.measure import run_measured
from edgetag.models import DetectorModel, ModelInput
from edgetag.runtime import runtime_name
from edgetag.tagger import ModelSettings, Tagger

ROOT = Path(__file__).resolve().parent.parent
DETECTORS = ("ssdlite-person", "nanodet-g", "ssd-oidv4")


def timed_ms(action: object) -> float:
    assert callable(action)
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000


def cpu_ms(action: object) -> float:
    """CPU time of one call, summed over every thread of this process (the runtime's workers too)."""
    assert callable(action)
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1000


def command_cpu_ms(command: list[str]) -> float:
    """CPU time (user + system) of one run of `command` as a child process (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--commands", type=int, default=0, help="runs of `edgetag tag` per detector")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    photos = sorted((ROOT / "samples").glob("*.jpg"))
    taggers = {name: Tagger.from_settings(ModelSettings(detector=name)) for name in DETECTORS}
    detectors: dict[str, DetectorModel] = {}
    inputs: dict[str, list[ModelInput]] = {}
    for name, tagger in taggers.items():
        assert tagger.detector is not None
        detectors[name] = tagger.detector
        inputs[name] = [tagger.detector.prepare(tagger.load(path).image) for path in photos]
        tagger.tag_file(photos[0])  # warm-up

    invoke: dict[str, list[float]] = {name: [] for name in DETECTORS}
    run: dict[str, list[float]] = {name: [] for name in DETECTORS}
    total: dict[str, list[float]] = {name: [] for name in DETECTORS}
    cpu: dict[str, list[float]] = {name: [] for name in DETECTORS}
    for _round in range(args.rounds):
        for index, path in enumerate(photos):
            for name in DETECTORS:
                detector, prepared = detectors[name], inputs[name][index]
                detector.model.set_stored_input(prepared.tensor)
                invoke[name].append(timed_ms(detector.model.invoke))
                run[name].append(timed_ms(lambda d=detector, p=prepared: d.run(p)))
                total[name].append(timed_ms(lambda t=taggers[name], p=path: t.tag_file(p)))
                cpu[name].append(cpu_ms(lambda t=taggers[name], p=path: t.tag_file(p)))
    commands: dict[str, list[float]] = {name: [] for name in DETECTORS}
    tag = [sys.executable, "-m", "edgetag", "tag"]
    for _run in range(args.commands):
        for name in DETECTORS:
            commands[name].append(command_cpu_ms([*tag, "--detector", name, *map(str, photos)]) / len(photos))
    rss = {
        name: run_measured([*tag, "--detector", name, *map(str, photos)]).peak_rss_mb
        for name in (DETECTORS if args.commands else ())
    }

    figures = {
        name: {
            "median_invoke_ms": round(statistics.median(invoke[name]), 2),
            "median_detector_run_ms": round(statistics.median(run[name]), 2),
            "median_tag_file_ms": round(statistics.median(total[name]), 2),
            "median_tag_file_cpu_ms": round(statistics.median(cpu[name]), 2),
        }
        | (
            {
                "median_command_cpu_ms_per_photo": round(statistics.median(commands[name]), 1),
                "command_peak_rss_mb": round(rss[name]),
            }
            if args.commands
            else {}
        )
        for name in DETECTORS
    }
    threads = taggers[DETECTORS[0]].detector.model.threads  # type: ignore[union-attr]
    load = os.getloadavg()[0]  # a shared machine slows both alike; the figure says how busy it was
    where = (
        f"{runtime_name()}, {threads} threads, {platform.machine()}, {os.cpu_count()} cores,"
        f" load average {load:.1f}"
    )
    summary = (
        f"{args.rounds} alternating rounds over the {len(photos)} samples ({where}): "
        + "; ".join(
            f"{name} invoke {f['median_invoke_ms']} ms, detector step {f['median_detector_run_ms']} ms,"
            f" whole photo (classifier + detector + faces) {f['median_tag_file_ms']} ms,"
            f" {f['median_tag_file_cpu_ms']} ms CPU"
            + (
                f", `edgetag tag` on the samples {f['median_command_cpu_ms_per_photo']} ms CPU per photo"
                f" with start-up, peak RSS {f['command_peak_rss_mb']} MB"
                if args.commands
                else ""
            )
            for name, f in figures.items()
        )
        + " (medians; benchmarks/bench_detectors.py)"
    )
    print(summary)
    for name, values in figures.items():
        print(f"  {name:15s} " + "  ".join(f"{key} {value}" for key, value in values.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"figures": figures, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
