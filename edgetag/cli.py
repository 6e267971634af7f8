"""Command line: argument parsing only; the work is done by the modules it calls.

edgetag tag PHOTO|DIR... [--json] [--xmp]  tag photos, no daemon and no network; --xmp writes sidecars
edgetag models                        list the model pack, verify checksums
edgetag run [--config FILE] [flags]   the daemon
edgetag check-config [...]            validate the config and print it (secrets masked)
edgetag demo                          the daemon on the sample photos, against a local broker
edgetag eval LABELS... [--calibrate F]  description quality on labelled photos; choose thresholds
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from edgetag import __version__, evaluation
from edgetag.config import DEFAULT_CONFIG, Config, ConfigFlags, load_config, render_config, threads_problem
from edgetag.errors import EdgetagError, ModelError, PhotoError, SidecarError
from edgetag.logs import setup_logging
from edgetag.modelpack import file_sha256, load_cards, pack_dir
from edgetag.runtime import runtime_name
from edgetag.tagger import ModelSettings, Tagger
from edgetag.vocabulary import Vocabulary
from edgetag.xmp import NAME_STYLES, is_sidecar_name, write_sidecar

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except EdgetagError as error:
        print(f"edgetag: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgetag", description="Tag photos on the device; publish the tags over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"edgetag {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tag = commands.add_parser("tag", help="tag photos and print what they may contain")
    tag.add_argument("paths", nargs="+", metavar="PHOTO|DIR", type=Path, help="photos, or folders of photos")
    tag.add_argument("--json", action="store_true", help="print one JSON object per photo (JSON Lines)")
    tag.add_argument(
        "--threshold", type=_probability, metavar="T",
        help="one confidence threshold (0-1) for every concept, instead of each concept's own",
    )  # fmt: skip
    library = tag.add_argument_group("photo library (XMP sidecars for digiKam, Immich, PhotoPrism)")
    library.add_argument(
        "--xmp", action="store_true",
        help="write the sentence and keywords into an XMP sidecar beside each photo (merged, never replaced)",
    )  # fmt: skip
    library.add_argument(
        "--xmp-name", choices=NAME_STYLES, default="ext",
        help="sidecar name: ext = photo.jpg.xmp (default; digiKam, Immich), stem = photo.xmp",
    )  # fmt: skip
    library.add_argument(
        "--overwrite-description", action="store_true",
        help="replace a description or alt text written by hand (kept by default)",
    )  # fmt: skip
    _add_model_options(tag)
    tag.set_defaults(handler=_tag)

    models = commands.add_parser("models", help="list the model pack with licenses and verify checksums")
    models.add_argument("--json", action="store_true", help="print the list as JSON")
    models.set_defaults(handler=_models)

    run = commands.add_parser("run", help="run the daemon: photos in from sources, tag events out over MQTT")
    _add_config_options(run)
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate the config and print it, secrets masked")
    _add_config_options(check)
    check.set_defaults(handler=_check_config)

    demo = commands.add_parser("demo", help="run the daemon on the sample photos and print the events")
    demo.add_argument(
        "--photos", type=Path, metavar="DIR", help="photos to tag (default: the bundled samples)"
    )
    demo.add_argument("--timeout", type=float, default=120.0, metavar="S", help="give up after S seconds")
    demo.set_defaults(handler=_demo)

    evaluate = commands.add_parser(
        "eval", help="measure what edgetag says on labelled photos: precision and recall per concept"
    )
    evaluate.add_argument(
        "labels", nargs="+", type=Path, metavar="LABELS", help=".jsonl files or folders of them"
    )
    evaluate.add_argument(
        "--split", choices=("test", "calibration", "all"), default="test",
        help="which part to report on (default: test; thresholds are never chosen on it)",
    )  # fmt: skip
    evaluate.add_argument(
        "--calibrate", type=Path, metavar="FILE",
        help="choose thresholds on the calibration part, write them to FILE (edgetag/thresholds.toml)",
    )  # fmt: skip
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument("--failures", action="store_true", help="list the photos not described correctly")
    _add_model_options(evaluate)
    evaluate.set_defaults(handler=_eval)
    return parser


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help=f"TOML config (default: {DEFAULT_CONFIG})"
    )
    group = parser.add_argument_group("settings that override the config file")
    group.add_argument(
        "--watch", type=Path, action="append", default=[], metavar="DIR", help="tag new photos in DIR"
    )
    group.add_argument("--mqtt-host", metavar="HOST")
    group.add_argument("--mqtt-port", type=int, metavar="PORT")
    group.add_argument("--mqtt-username", metavar="NAME")
    group.add_argument("--mqtt-password-file", type=Path, metavar="FILE")
    group.add_argument("--device", metavar="NAME", help="this edgetag's name in topics and Home Assistant")
    group.add_argument("--state-dir", type=Path, metavar="DIR", help="where the outbox and folder state live")
    group.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _load(args: argparse.Namespace) -> Config:
    flags = ConfigFlags(
        watch=list(args.watch),
        mqtt_host=args.mqtt_host,
        mqtt_port=args.mqtt_port,
        mqtt_username=args.mqtt_username,
        mqtt_password_file=args.mqtt_password_file,
        device=args.device,
        state_dir=args.state_dir,
        log_level=args.log_level,
    )
    return load_config(args.config, flags)


def _run(args: argparse.Namespace) -> int:
    from edgetag.daemon import Daemon  # noqa: PLC0415  (keeps `edgetag tag` from loading MQTT code)

    config: Config | None = _load(args)
    # Between two daemons of a reload nobody handles SIGHUP; another reload then must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while config is not None:  # a SIGHUP with a valid config starts the daemon again with it
        setup_logging(config.logging.level)
        config = Daemon(config, os.environ).run(reload=lambda: _load(args))
    return EXIT_OK


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(render_config(config, mask_secrets=True), end="")
    print(
        f"edgetag: the config is valid ({len(config.sources)} source(s), {len(config.hooks)} hook(s))",
        file=sys.stderr,
    )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from edgetag.demo import run_demo  # noqa: PLC0415  (only the demo needs it)

    return run_demo(args.photos, args.timeout)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    defaults = ModelSettings()
    group = parser.add_argument_group("models (a pack name, a .tflite path, or 'none')")
    group.add_argument("--classifier", default=defaults.classifier, metavar="MODEL")
    group.add_argument(
        "--classifier-labels", type=Path, metavar="FILE", help="labels for your own classifier"
    )
    group.add_argument("--detector", default=defaults.detector, metavar="MODEL")
    group.add_argument("--detector-labels", type=Path, metavar="FILE", help="label map for your own detector")
    group.add_argument("--faces", default=defaults.faces, metavar="MODEL")
    group.add_argument(
        "--expressions", default=defaults.expressions, metavar="MODEL", help="expression model (smiling)"
    )
    group.add_argument(
        "--threads", type=_threads, default=0, metavar="N", help="inference threads (0: all cores)"
    )
    group.add_argument("--vocabulary", type=Path, metavar="FILE", help="your own concept table (TOML)")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 (excluded) and 1")
    return value


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    problem = threads_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def _model_settings(args: argparse.Namespace) -> ModelSettings:
    return ModelSettings(
        classifier=args.classifier,
        classifier_labels=args.classifier_labels,
        detector=args.detector,
        detector_labels=args.detector_labels,
        faces=args.faces,
        expressions=args.expressions,
        threads=args.threads,
        vocabulary=args.vocabulary,
    )


def _eval(args: argparse.Namespace) -> int:
    tagger = Tagger.from_settings(_model_settings(args))
    photos = evaluation.read_labels(args.labels)
    seen = evaluation.observe(tagger, photos)
    vocabulary = tagger.vocabulary
    if args.calibrate:
        table = Vocabulary.load(args.vocabulary, calibrated=False)
        tagger.bind(table)
        base = evaluation.outcomes(table, photos, seen)
        choices = evaluation.choose_thresholds(table, base)
        people = evaluation.choose_people(table, photos, seen)
        calibration_photos = sum(p.split == "calibration" for p in photos)
        args.calibrate.write_text(evaluation.thresholds_toml(choices, people, calibration_photos), "utf-8")
        vocabulary = Vocabulary.load(args.vocabulary, args.calibrate)
        tagger.bind(vocabulary)
        print(f"edgetag: thresholds chosen on {calibration_photos} calibration photos: {args.calibrate}")
    result = evaluation.report(vocabulary, evaluation.outcomes(vocabulary, photos, seen), args.split)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(evaluation.format_report(result))
    if args.failures:
        for item in result.failures:
            wrong = f"; wrongly said: {', '.join(sorted(item.wrong))}" if item.wrong else ""
            print(f"  {item.photo.path}: {item.sentence} (labels: {item.photo.people} people, "
                  f"{', '.join(sorted(item.photo.concepts))}){wrong}")  # fmt: skip
    return EXIT_OK


def _tag(args: argparse.Namespace) -> int:
    tagger = Tagger.from_settings(_model_settings(args), threshold=args.threshold)
    photos: list[Path] = []
    failed = 0
    for path, problem in _photo_paths(args.paths):
        if problem:
            failed += 1
            print(f"edgetag: {path}: {problem}", file=sys.stderr)
        else:
            photos.append(path)
    for path, result in tagger.tag_files(photos):
        if isinstance(result, PhotoError):
            failed += 1
            print(f"edgetag: {path}: {result}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
        else:
            print(f"{path}: {result.sentence}", flush=True)
        if args.xmp:
            try:
                write_sidecar(
                    path,
                    result.description,
                    name_style=args.xmp_name,
                    overwrite_description=args.overwrite_description,
                )
            except SidecarError as error:  # the photo is tagged (printed above); only its sidecar failed
                failed += 1
                print(f"edgetag: {path}: {error}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _photo_paths(paths: Sequence[Path]) -> Iterator[tuple[Path, PhotoError | None]]:
    """Each photo to tag; a folder gives its files (not subfolders, hidden files or XMP sidecars), sorted."""
    for path in paths:
        if not path.is_dir():
            yield path, None
            continue
        try:
            files = sorted(
                p
                for p in path.iterdir()
                if not p.name.startswith(".") and not is_sidecar_name(p.name) and not p.is_dir()
            )
        except OSError as error:
            yield path, PhotoError("unreadable", f"cannot list the folder: {error.strerror or error}")
            continue
        if not files:
            yield path, PhotoError("empty-folder", "folder has no files to tag")
        for file in files:
            yield file, None


def _models(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    cards = load_cards()
    rows: list[dict[str, Any]] = []
    broken = 0
    for card in cards.values():
        try:
            actual = file_sha256(card.file)
            status = "ok" if actual == card.sha256 else "CHECKSUM MISMATCH"
        except ModelError as error:
            status = f"MISSING ({error})"
        broken += status != "ok"
        rows.append(
            {
                "name": card.name,
                "role": card.role,
                "file": card.file.name,
                "size_bytes": card.file.stat().st_size if card.file.exists() else None,
                "input": f"{card.input.width}x{card.input.height}",
                "license": card.license,
                "source": f"{card.source.get('package', '?')} {card.source.get('version', '')}".strip(),
                "summary": card.summary,
                "checksum": status,
            }
        )
    if args.json:
        print(
            json.dumps({"pack": str(pack_dir()), "runtime": runtime_name(), "models": rows}, indent=2),
            file=out,
        )
    else:
        print(f"model pack: {pack_dir()}  (runtime: {runtime_name()})", file=out)
        for row in rows:
            size = f"{(row['size_bytes'] or 0) / 1e6:.1f} MB"
            print(
                f"  {row['name']:<20} {row['role']:<10} {row['input']:>7}  {size:>8}  {row['license']:<12} "
                f"{row['checksum']}\n    {row['summary']}; from {row['source']}",
                file=out,
            )
    return EXIT_SOME_FAILED if broken else EXIT_OK
