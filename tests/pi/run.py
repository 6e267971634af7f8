"""Install edgetag on an emulated Raspberry Pi userland and check that it tags as this machine does.

For arm64 (64-bit Raspberry Pi OS) and armhf (32-bit) in turn: build once, and cache, a Debian
Bookworm rootfs (Raspberry Pi OS Bookworm's Python 3.11 and glibc 2.36) that runs under qemu-user;
copy it; copy this source tree in; run the documented install step, `systemd/install.sh`, as root
inside it (its apt step included: on armhf that is where NumPy and Pillow come from); then check that
the installed `edgetag models` names the runtime pyproject.toml must pick there and verifies every
checksum, and that `edgetag tag --json samples/*.jpg` says what this machine's `.venv/bin/edgetag`
says. Emulation is not a Pi: it shows that the install path, the wheels and the runtime work there,
not how fast a Pi is.

    sudo .venv/bin/python -m tests.pi [--arch arm64|armhf] [--rebuild] [--cache DIR]

Needs root (debootstrap, chroot, mount) and qemu-user-static, debootstrap and binfmt-support (installed
with apt-get when missing). Exit status: 0 passed, 1 failed, 2 could not run. See docs/raspberry-pi.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from edgetag.vocabulary import Vocabulary
from tests.pi.arches import ARCHES, Arch
from tests.pi.chroot import Chroot, Mounts, PiTestError, Rootfs, copy_source_tree
from tests.pi.compare import PhotoComparison, Tagged, compare_runs, parse_events, tags_text, top_text

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = Path(os.environ.get("EDGETAG_PI_CACHE", "/var/tmp/edgetag-pi"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOURCE = "/root/edgetag"  # where the checkout goes in the Pi: a user's clone in their home
VENV = "/opt/edgetag/venv"  # where install.sh puts edgetag
# This machine reaches PyPI through a TLS-inspecting proxy whose CA only the host trusts: pip in the
# chroot is given the host's bundle. Test-specific: a Pi talks to PyPI directly.
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_CHROOT = "/usr/local/share/edgetag-pi-test/host-ca-bundle.crt"
XNNPACK_LINE = "Created TensorFlow Lite XNNPACK delegate"
# Printed as JSON by the Python that runs edgetag (the host's venv or the Pi's): versions and origins.
VERSIONS_SCRIPT = """
import importlib.metadata as metadata, json, platform
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
import numpy, PIL
names = ("edgetag", "ai-edge-litert", "tflite-runtime", "numpy", "pillow", "paho-mqtt")
print(json.dumps({
    "python": platform.python_version(), "machine": platform.machine(), "glibc": platform.libc_ver()[1],
    "packages": {name: version(name) for name in names},
    "numpy_from": numpy.__file__, "pillow_from": PIL.__file__,
}))
"""


@dataclass
class ArchResult:
    """What one architecture's run found, for the summary and the JSON report."""

    arch: Arch
    failure: str | None = None
    rootfs: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    runtime: str = ""
    checksums: str = ""
    xnnpack: bool = False
    comparisons: list[PhotoComparison] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure is None and all(comparison.ok for comparison in self.comparisons)


@dataclass(frozen=True)
class Reference:
    """This machine's answers, which the emulated Pi must reproduce."""

    events: dict[str, Tagged]
    versions: dict[str, Any]
    runtime: str
    thresholds: dict[str, float]  # each concept's, from the checkout's vocabulary (tags at it may differ)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("pi-test: run it as root (it uses debootstrap, chroot and mount): sudo make pi-test")
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)  # so that the `finally`s unmount before the process goes
    arches = list(ARCHES.values()) if args.arch == "all" else [ARCHES[args.arch]]
    photos = [f"samples/{path.name}" for path in sorted((ROOT / "samples").glob("*.jpg"))]
    try:
        ensure_host_tools(arches)
        reference = host_reference(args.host_edgetag, photos)
    except PiTestError as error:
        print(f"pi-test: cannot run: {error}")
        return 2
    results = [
        check_arch(arch, args.cache / arch.name, args.mirror, args.rebuild, reference, photos)
        for arch in arches
    ]
    print_summary(reference, results)
    write_report(args.cache / f"report-{args.arch}.json", reference, results)
    return 0 if all(result.passed for result in results) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.pi", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch", choices=[*ARCHES, "all"], default="all", help="one architecture (default: all)"
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"rootfs cache (default {DEFAULT_CACHE})"
    )
    parser.add_argument("--mirror", default=DEFAULT_MIRROR, help=f"Debian mirror (default {DEFAULT_MIRROR})")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached rootfs")
    parser.add_argument(
        "--host-edgetag",
        type=Path,
        default=ROOT / ".venv/bin/edgetag",
        help="the edgetag whose answers are the reference (default: .venv/bin/edgetag)",
    )
    return parser.parse_args(argv)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"pi-test: stopped by signal {signum}")


def ensure_host_tools(arches: list[Arch]) -> None:
    """qemu-user-static, debootstrap and binfmt-support, and binfmt_misc routing ARM binaries to qemu."""
    wanted = {"debootstrap": "debootstrap", "update-binfmts": "binfmt-support"}
    wanted |= {arch.qemu: "qemu-user-static" for arch in arches}
    if missing := sorted({package for tool, package in wanted.items() if shutil.which(tool) is None}):
        print(f"pi-test: installing {' '.join(missing)} with apt-get")
        apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=apt_env, capture_output=True, check=False)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=apt_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise PiTestError(f"apt-get install {' '.join(missing)} failed:\n{done.stderr[-2000:]}")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        # a host-wide mount, left in place afterwards as systemd would have made it at boot
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=False)
        subprocess.run(["update-binfmts", "--enable"], check=False, capture_output=True)
    for arch in arches:
        entry = binfmt / arch.qemu.removesuffix("-static")
        if not entry.exists() or "enabled" not in entry.read_text(encoding="ascii"):
            subprocess.run(["update-binfmts", "--enable", entry.name], check=False, capture_output=True)
        if not entry.exists() or "enabled" not in entry.read_text(encoding="ascii"):
            raise PiTestError(
                f"binfmt_misc does not run {arch.name} binaries with qemu ({entry} missing or disabled): "
                "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable"
            )


def host_reference(edgetag: Path, photos: list[str]) -> Reference:
    """This machine's `edgetag tag --json` on the sample photos, its runtime and package versions."""
    if not edgetag.exists():
        raise PiTestError(f"{edgetag} not found: `make` the venv first (make pi-test does)")

    def run(*argv: str) -> str:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PiTestError(
                f"{' '.join(argv)} on this machine exited with {done.returncode}:\n{done.stderr}"
            )
        return done.stdout

    events = parse_events(run(str(edgetag), "tag", "--json", *photos))
    versions = json.loads(run(str(edgetag.parent / "python"), "-c", VERSIONS_SCRIPT))
    runtime = json.loads(run(str(edgetag), "models", "--json"))["runtime"]
    thresholds = {concept.name: concept.threshold for concept in Vocabulary.load().concepts}
    return Reference(events, versions, runtime, thresholds)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One run per cached rootfs at a time: two would delete each other's working copy."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "lock").open("w", encoding="ascii") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise PiTestError(f"another pi-test is using {folder}") from error
        yield


def check_arch(
    arch: Arch, cache: Path, mirror: str, rebuild: bool, reference: Reference, photos: list[str]
) -> ArchResult:
    """The whole check for one architecture; a failure is recorded, not raised, so the next one runs."""
    result = ArchResult(arch)
    started = time.monotonic()
    print(f"\n== {arch.name}: {arch.pi_os} under qemu-user (QEMU_CPU={arch.qemu_cpu}) ==", flush=True)
    try:
        with locked(cache):
            rootfs = Rootfs(cache, arch, mirror)
            prepare_rootfs(rootfs, rebuild, result)
            chroot = Chroot(rootfs.work, arch, extra_env=(("PIP_CERT", CA_IN_CHROOT),))
            with Mounts(rootfs.work) as mounts:
                mounts.pi_like(arch, os.cpu_count() or 1, cache / "cpuinfo")
                install_and_tag(chroot, cache, photos, result)
        pi_events = parse_events((cache / "tags.jsonl").read_text())
        result.comparisons = compare_runs(reference.events, pi_events, reference.thresholds)
    except (PiTestError, ValueError, OSError, subprocess.CalledProcessError) as error:
        # OSError and CalledProcessError: a host step (mount, cp) failed; still report the other arch
        result.failure = str(error)
        print(f"[{arch.name}] FAILED: {error}", flush=True)
    result.timings["total"] = time.monotonic() - started
    return result


def prepare_rootfs(rootfs: Rootfs, rebuild: bool, result: ArchResult) -> None:
    """The cached base (built if missing, stale or asked for), copied, with the source tree inside."""
    name = rootfs.arch.name
    stamp = None if rebuild else rootfs.cached()
    if stamp is None:
        print(f"[{name}] building the Debian {rootfs.recipe()['suite']} rootfs (a few minutes)", flush=True)
        seconds = rootfs.build_base()
        result.timings["rootfs build"] = seconds
        result.rootfs = f"built in {seconds:.0f} s"
    else:
        result.rootfs = f"cached (built {stamp['built'][:10]} in {stamp['seconds']} s)"
    print(f"[{name}] rootfs {rootfs.base}: {result.rootfs}", flush=True)
    started = time.monotonic()
    rootfs.fresh_work_copy()
    files = copy_source_tree(ROOT, rootfs.work / SOURCE.lstrip("/"))
    ca = rootfs.work / CA_IN_CHROOT.lstrip("/")
    ca.parent.mkdir(parents=True)
    shutil.copy2(CA_BUNDLE, ca)
    result.timings["copy"] = time.monotonic() - started
    print(f"[{name}] fresh copy with {files} files of this checkout in {SOURCE}", flush=True)


def install_and_tag(chroot: Chroot, cache: Path, photos: list[str], result: ArchResult) -> None:
    """install.sh as documented, then what the installed edgetag says about itself and the photos."""
    arch = chroot.arch
    machine = chroot.run("uname", "-m").stdout.strip()
    if machine != arch.machine:
        raise PiTestError(f"[{arch.name}] uname -m says {machine}, expected {arch.machine}")

    print(f"[{arch.name}] sudo {SOURCE}/systemd/install.sh (apt, venv, pip: several minutes)", flush=True)
    started = time.monotonic()
    done = chroot.run(f"{SOURCE}/systemd/install.sh", cwd=SOURCE, check=False, merge_stderr=True)
    result.timings["install.sh"] = time.monotonic() - started
    log = cache / "install.log"
    log.write_text(f"$ {SOURCE}/systemd/install.sh\n{done.stdout}", encoding="utf-8")
    print("".join(f"  | {line}\n" for line in done.stdout.splitlines()), end="", flush=True)
    if done.returncode != 0:
        raise PiTestError(f"install.sh exited with {done.returncode} (output above and in {log})")
    for installed in (
        "etc/systemd/system/edgetag.service",
        "etc/edgetag/edgetag.toml",
        f"{VENV[1:]}/bin/edgetag",
    ):
        if not (chroot.root / installed).exists():
            raise PiTestError(f"install.sh exited 0 but /{installed} is missing")

    result.versions = json.loads(chroot.run(f"{VENV}/bin/python", "-c", VERSIONS_SCRIPT).stdout)
    check_versions(arch, result.versions)

    models = chroot.run(f"{VENV}/bin/edgetag", "models", "--json", check=False)
    check_models(arch, models, result)

    print(f"[{arch.name}] edgetag tag --json on {len(photos)} photos", flush=True)
    started = time.monotonic()
    tagged = chroot.run(f"{VENV}/bin/edgetag", "tag", "--json", *photos, cwd=SOURCE, timeout=1800)
    result.timings["tag"] = time.monotonic() - started
    result.xnnpack = XNNPACK_LINE in tagged.stderr
    (cache / "tags.jsonl").write_text(tagged.stdout, encoding="utf-8")


def check_versions(arch: Arch, versions: dict[str, Any]) -> None:
    """The right runtime and only it; NumPy 1.x where tflite-runtime needs it."""
    packages = versions["packages"]
    other = "tflite-runtime" if arch.runtime == "ai-edge-litert" else "ai-edge-litert"
    if packages.get(arch.runtime) is None:
        raise PiTestError(f"[{arch.name}] {arch.runtime} is not installed in {VENV}: {packages}")
    if packages.get(other) is not None:
        raise PiTestError(
            f"[{arch.name}] {other} {packages[other]} is installed too: the environment markers are off"
        )
    if arch.runtime == "tflite-runtime" and int(packages["numpy"].split(".")[0]) >= 2:
        raise PiTestError(f"[{arch.name}] numpy {packages['numpy']}: tflite-runtime 2.14 needs NumPy 1.x")


def check_models(arch: Arch, models: subprocess.CompletedProcess[str], result: ArchResult) -> None:
    """`edgetag models`: the installed pack (not the checkout's), the expected runtime, every checksum ok."""
    try:
        listing = json.loads(models.stdout)
    except ValueError as error:
        raise PiTestError(f"[{arch.name}] edgetag models --json printed no JSON:\n{models.stderr}") from error
    result.runtime = listing["runtime"]
    rows = listing["models"]
    good = [row["name"] for row in rows if row["checksum"] == "ok"]
    result.checksums = f"{len(good)}/{len(rows)} ok"
    print(f"[{arch.name}] edgetag models: runtime {result.runtime}, checksums {result.checksums}", flush=True)
    if not listing["pack"].startswith(f"{VENV}/"):
        raise PiTestError(
            f"[{arch.name}] the model pack is {listing['pack']}, not the installed one in {VENV}"
        )
    if result.runtime != arch.runtime:
        raise PiTestError(
            f"[{arch.name}] edgetag models says runtime {result.runtime}, expected {arch.runtime}"
        )
    if models.returncode != 0 or len(good) != len(rows) or not rows:
        bad = {row["name"]: row["checksum"] for row in rows if row["checksum"] != "ok"}
        raise PiTestError(f"[{arch.name}] edgetag models exited {models.returncode}; checksums: {bad}")


def print_summary(reference: Reference, results: list[ArchResult]) -> None:
    """Per architecture: verdict, timings, versions; then one row per photo, x86-64 and each Pi."""
    print("\n== edgetag on an emulated Raspberry Pi: summary ==")
    host = reference.versions
    print(
        f"reference: this machine ({host['machine']}), Python {host['python']}, {reference.runtime} "
        f"{host['packages'].get(reference.runtime)}, numpy {host['packages']['numpy']}"
    )
    for result in results:
        arch = result.arch
        verdict = "PASSED" if result.passed else "FAILED"
        print(f"\n{arch.name} ({arch.pi_os}, QEMU_CPU={arch.qemu_cpu}): {verdict}")
        print(f"  rootfs: {result.rootfs or '-'}")
        print(
            "  timings: " + ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in result.timings.items())
        )
        if versions := result.versions:
            packages = versions["packages"]
            print(
                f"  Python {versions['python']} ({versions['machine']}, glibc {versions['glibc']}); "
                f"{arch.runtime} {packages.get(arch.runtime)}, numpy {packages['numpy']} "
                f"(from {Path(versions['numpy_from']).parents[1]}), pillow {packages['pillow']}"
            )
        if result.runtime:
            print(f"  edgetag models: runtime {result.runtime}, checksums {result.checksums}")
        if result.comparisons:
            per_photo = sum(c.pi.total_ms for c in result.comparisons) / len(result.comparisons)
            print(
                f"  tagging: {per_photo / 1000:.1f} s per photo under emulation "
                f"(edgetag's own timing); XNNPACK delegate: {'yes' if result.xnnpack else 'no'}"
            )
            for comparison in result.comparisons:
                for problem in comparison.problems:
                    print(f"  MISMATCH {comparison.pi.photo}: {problem}")
                for concept in sorted(comparison.at_threshold):
                    side = "x86-64" if concept in comparison.reference.concepts else arch.name
                    score = (comparison.reference.tag_scores | comparison.pi.tag_scores)[concept]
                    print(
                        f"  at the threshold, not failed: {comparison.pi.photo}: {concept} only on {side}"
                        f" ({score:.3f}, threshold {reference.thresholds[concept]})"
                    )
        if result.failure:
            print(f"  failure: {result.failure}")
    compared = [result for result in results if result.comparisons]
    if compared:
        print("\ntags (sentence, people and concepts must be equal; scores may differ):")
        print_table(tag_rows(reference, compared))
        print("\nclassifier top class (must be equal, or tied at the top on one side; max score diff):")
        print_table(class_rows(reference, compared))


def tag_rows(reference: Reference, compared: list[ArchResult]) -> list[list[str]]:
    """One row per photo: the x86-64 sentence and tags, then each Pi's tags (or what differs)."""
    rows = [["photo", "sentence (x86-64)", "tags x86-64", *(result.arch.name for result in compared)]]
    for name, event in sorted(reference.events.items()):
        row = [name, event.sentence.removeprefix("Image may contain: "), tags_text(event)]
        for result in compared:
            comparison = _comparison(result, name)
            tag_problems = [p for p in comparison.problems if not p.startswith("top class")]
            row.append("MISMATCH " + "; ".join(tag_problems) if tag_problems else tags_text(comparison.pi))
        rows.append(row)
    return rows


def class_rows(reference: Reference, compared: list[ArchResult]) -> list[list[str]]:
    """One row per photo: the x86-64 top class, then each Pi's top class and largest score difference."""
    rows = [["photo", "top class x86-64", *(result.arch.name for result in compared)]]
    for name, event in sorted(reference.events.items()):
        row = [name, top_text(event)]
        for result in compared:
            comparison = _comparison(result, name)
            mark = "MISMATCH " if not comparison.ok else "tie: " if comparison.top_tie else ""
            row.append(f"{mark}{top_text(comparison.pi)} (diff {comparison.max_score_diff:.3f})")
        rows.append(row)
    return rows


def _comparison(result: ArchResult, photo: str) -> PhotoComparison:
    return next(c for c in result.comparisons if c.pi.photo == photo)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def write_report(path: Path, reference: Reference, results: list[ArchResult]) -> None:
    """Everything above as JSON, for docs and for comparing runs."""

    def event(tagged: Tagged) -> dict[str, Any]:
        return {
            "sentence": tagged.sentence,
            "people": tagged.people,
            "top": tagged.top,
            "top_score": tagged.top_score,
        }

    report = {
        "reference": {"versions": reference.versions, "runtime": reference.runtime},
        "arches": [
            {
                "arch": result.arch.name,
                "passed": result.passed,
                "failure": result.failure,
                "rootfs": result.rootfs,
                "timings_s": {phase: round(seconds, 1) for phase, seconds in result.timings.items()},
                "versions": result.versions,
                "runtime": result.runtime,
                "checksums": result.checksums,
                "xnnpack": result.xnnpack,
                "photos": {
                    c.pi.photo: {
                        "x86": event(c.reference),
                        "pi": event(c.pi),
                        "ok": c.ok,
                        "problems": c.problems,
                        "top_tie": c.top_tie,
                        "at_threshold": sorted(c.at_threshold),
                        "max_score_diff": round(c.max_score_diff, 4),
                        "pi_total_ms": c.pi.total_ms,
                    }
                    for c in result.comparisons
                },
            }
            for result in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nreport: {path}", file=sys.stdout)
