"""The sources' own logic, in-process: folder watching and state, and the camera adapter via a fake Picamera2.

These tests stop at the PhotoJob a source submits (the pipeline and the broker are covered by
test_daemon.py). The camera has no hardware here, so it is driven through the thin PicameraLike seam
by an object that behaves like Picamera2; the folder source watches real folders.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgetag.config import CameraSourceConfig, FolderSourceConfig
from edgetag.imaging import ImageLimits
from edgetag.sources.base import Outcome, PhotoJob
from edgetag.sources.camera import FRAME_FORMAT, CameraSource
from edgetag.sources.folder import FolderSource, FolderState, is_candidate_name
from tests.conftest import ROOT, SAMPLES


class Collector:
    """Stands in for the pipeline: records submitted jobs and reported errors."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[PhotoJob] = queue.Queue()
        self.errors: list[tuple[str, str, str]] = []

    def submit(self, job: PhotoJob) -> None:
        self.jobs.put(job)

    def report(self, source: str, reason: str, message: str) -> None:
        self.errors.append((source, reason, message))

    def take(self, count: int, timeout: float = 10.0) -> list[PhotoJob]:
        return [self.jobs.get(timeout=timeout) for _ in range(count)]

    def nothing_more(self, wait: float = 0.6) -> bool:
        try:
            self.jobs.get(timeout=wait)
        except queue.Empty:
            return True
        return False


@pytest.fixture(params=["inotify", "poll"])
def watch_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def folder_source(
    folder: Path, state: FolderState, watch: str, after: str = "keep", move_to: Path | None = None
) -> FolderSource:
    config = FolderSourceConfig(
        name="inbox", path=folder, watch=watch, after=after, move_to=move_to,  # type: ignore[arg-type]
        poll_seconds=0.1, settle_seconds=0.2, rescan_seconds=60.0,
    )  # fmt: skip
    return FolderSource(config, state, ImageLimits())


@pytest.fixture
def state(tmp_path: Path) -> Iterator[FolderState]:
    folder_state = FolderState(tmp_path / "state" / "folders.db")
    yield folder_state
    folder_state.close()


def copy_in(source: Path, folder: Path, name: str) -> Path:
    """Write a photo the way an upload tool does: under a temporary name, then rename."""
    temporary = folder / f".{name}.part"
    shutil.copy(source, temporary)
    target = folder / name
    temporary.rename(target)
    return target


def inbox_with_old_photo(tmp_path: Path, sample: str, name: str) -> Path:
    """An inbox holding one photo written a minute ago: settled, so it is offered at once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(SAMPLES / sample, inbox / name)
    past = time.time() - 60
    os.utime(inbox / name, (past, past))
    return inbox


def crash_while_tagging(
    inbox: Path, state: FolderState, collector: Collector, runs: int, *, decoded: bool
) -> None:
    """Runs that each read the photo (and decode it, or not) and die before finishing it."""
    for _crash in range(runs):
        source = folder_source(inbox, state, "inotify")
        source.start(collector.submit, collector.report)
        (job,) = collector.take(1)
        assert job.read is not None and job.read()
        if decoded:
            job.decoded()
        source._stopping.set()  # a crash: no finish(), the source is simply gone
        source.stop()


def test_names_that_are_not_photos_yet() -> None:
    assert is_candidate_name("cat.jpg")
    for name in (".hidden.jpg", "~lock.jpg", "cat.jpg.part", "x.tmp", "y.crdownload"):
        assert not is_candidate_name(name)


def test_new_files_are_offered_once_with_a_stable_id(
    tmp_path: Path, state: FolderState, watch_mode: str
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    collector = Collector()
    source = folder_source(inbox, state, watch_mode)
    source.start(collector.submit, collector.report)
    try:
        copy_in(SAMPLES / "chelsea.jpg", inbox, "cat.jpg")
        (job,) = collector.take(1)
        assert (job.source, job.name) == ("inbox", "cat.jpg")
        assert job.read is not None and job.read() == (SAMPLES / "chelsea.jpg").read_bytes()
        assert source.watching == ("inotify" if watch_mode == "inotify" else "polling")
        assert collector.nothing_more(), "a file in flight is not offered twice"
        job.finish(Outcome.TAGGED)
        (inbox / "notes.txt.part").write_text("half", encoding="utf-8")
        assert collector.nothing_more(), "temporary files are ignored"
    finally:
        source.stop()


def test_a_file_still_being_written_is_not_read_while_polling(tmp_path: Path, state: FolderState) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    collector = Collector()
    source = folder_source(inbox, state, "poll")
    source.start(collector.submit, collector.report)
    data = (SAMPLES / "coffee.jpg").read_bytes()
    try:
        with (inbox / "slow.jpg").open("wb") as handle:
            for start in range(0, len(data), 4096):  # a slow writer: a chunk every 50 ms
                handle.write(data[start : start + 4096])
                handle.flush()
                os.utime(handle.fileno())
                time.sleep(0.05)
                assert collector.jobs.empty(), "offered before the writer finished"
        (job,) = collector.take(1)
        assert job.read is not None and job.read() == data
    finally:
        source.stop()


def test_what_was_tagged_is_remembered_across_restarts(
    tmp_path: Path, state: FolderState, watch_mode: str
) -> None:
    inbox = inbox_with_old_photo(tmp_path, "chelsea.jpg", "old.jpg")
    past = time.time() - 60
    collector = Collector()
    first = folder_source(inbox, state, watch_mode)
    first.start(collector.submit, collector.report)
    (job,) = collector.take(1)
    job.finish(Outcome.TAGGED)
    first.stop()

    shutil.copy(SAMPLES / "coffee.jpg", inbox / "while-down.jpg")  # arrives while edgetag is down
    os.utime(inbox / "while-down.jpg", (past, past))
    second = folder_source(inbox, state, watch_mode)
    second.start(collector.submit, collector.report)
    try:
        (job,) = collector.take(1)
        assert job.name == "while-down.jpg"
        assert collector.nothing_more(), "the photo tagged before the restart is not offered again"
    finally:
        second.stop()
    job.finish(Outcome.ABANDONED)  # the daemon stopped (sources first) before the event was stored
    third = folder_source(inbox, state, watch_mode)
    third.start(collector.submit, collector.report)
    try:
        (job,) = collector.take(1)
        assert job.name == "while-down.jpg", "an abandoned photo is offered again"
        assert collector.nothing_more()
    finally:
        third.stop()


def test_a_rewritten_file_is_a_new_photo(tmp_path: Path, state: FolderState) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    collector = Collector()
    source = folder_source(inbox, state, "inotify")
    source.start(collector.submit, collector.report)
    try:
        copy_in(SAMPLES / "chelsea.jpg", inbox, "cam.jpg")
        (first,) = collector.take(1)
        first.finish(Outcome.TAGGED)
        copy_in(SAMPLES / "coffee.jpg", inbox, "cam.jpg")
        (second,) = collector.take(1)
        assert second.name == "cam.jpg" and second.id != first.id
    finally:
        source.stop()


@pytest.mark.parametrize("after", ["delete", "move"])
def test_after_tagging_delete_or_move_but_never_a_failed_file(
    tmp_path: Path, state: FolderState, after: str
) -> None:
    inbox, done = tmp_path / "inbox", tmp_path / "done"
    inbox.mkdir()
    collector = Collector()
    source = folder_source(inbox, state, "inotify", after=after, move_to=done if after == "move" else None)
    source.start(collector.submit, collector.report)
    try:
        copy_in(SAMPLES / "chelsea.jpg", inbox, "good.jpg")
        copy_in(SAMPLES / "README.md", inbox, "bad.jpg")
        jobs = {job.name: job for job in collector.take(2)}
        jobs["good.jpg"].finish(Outcome.TAGGED)
        jobs["bad.jpg"].finish(Outcome.FAILED)
        assert not (inbox / "good.jpg").exists()
        assert (inbox / "bad.jpg").exists(), "a file that could not be tagged stays where it is"
        assert (done / "good.jpg").exists() == (after == "move")
        assert collector.nothing_more(), "the failed file is not retried until it changes"
    finally:
        source.stop()


def test_a_missing_folder_is_reported_and_watched_for(tmp_path: Path, state: FolderState) -> None:
    inbox = tmp_path / "later"
    collector = Collector()
    source = folder_source(inbox, state, "auto")
    source.start(collector.submit, collector.report)
    try:
        time.sleep(0.3)
        assert collector.errors and collector.errors[0][:2] == ("inbox", "folder-missing")
        inbox.mkdir()
        copy_in(SAMPLES / "chelsea.jpg", inbox, "cat.jpg")
        (job,) = collector.take(1)
        assert job.name == "cat.jpg"
    finally:
        source.stop()


# --- camera --------------------------------------------------------------------------------------


class FakePicamera2:
    """Behaves like picamera2.Picamera2 for the calls edgetag makes; frames come from a real photo."""

    def __init__(self, frame: np.ndarray[Any, Any], fail_captures: int = 0) -> None:
        self.frame = frame
        self.fail_captures = fail_captures
        self.calls: list[str] = []
        self.config: dict[str, Any] | None = None

    def create_still_configuration(self, main: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create_still_configuration")
        return {"main": dict(main)}

    def configure(self, config: dict[str, Any]) -> None:
        self.calls.append("configure")
        self.config = config

    def start(self) -> None:
        self.calls.append("start")

    def capture_array(self, name: str = "main") -> np.ndarray[Any, Any]:
        self.calls.append(f"capture_array:{name}")
        if self.fail_captures:
            self.fail_captures -= 1
            raise RuntimeError("Camera frontend has timed out!")
        return self.frame.copy()

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


def camera_frame() -> np.ndarray[Any, Any]:
    """A frame as picamera2 delivers it for "BGR888": R, G, B byte order."""
    with Image.open(SAMPLES / "chelsea.jpg") as photo:
        return np.asarray(photo.convert("RGB").resize((640, 480)))


def test_the_camera_is_configured_for_stills_and_frames_keep_their_colours() -> None:
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 0] = 255
    fake = FakePicamera2(red)
    opened: list[int] = []

    def open_camera(index: int) -> FakePicamera2:
        opened.append(index)
        return fake

    config = CameraSourceConfig(name="porch", interval_seconds=0.05, width=64, height=48, camera=1)
    camera = CameraSource(config, open_camera)
    collector = Collector()
    camera.start(collector.submit, collector.report)
    try:
        first, second = collector.take(2)
    finally:
        camera.stop()
    assert opened == [1]
    assert fake.config == {"main": {"size": (64, 48), "format": FRAME_FORMAT}}
    assert fake.calls[:3] == ["create_still_configuration", "configure", "start"]
    assert fake.calls[-2:] == ["stop", "close"]
    assert first.image is not None and first.image.mode == "RGB"
    assert first.image.getpixel((10, 10)) == (255, 0, 0), "red stays red: no channel swap"
    assert first.id != second.id and first.name.startswith("porch-")


def test_on_demand_only_camera_waits_for_the_command() -> None:
    camera = CameraSource(
        CameraSourceConfig(name="door", interval_seconds=0), lambda _i: FakePicamera2(camera_frame())
    )
    collector = Collector()
    camera.start(collector.submit, collector.report)
    try:
        assert collector.nothing_more(0.4)
        camera.capture_now()
        (job,) = collector.take(1)
        assert job.image is not None and job.image.size == (640, 480)
    finally:
        camera.stop()


def test_a_failing_camera_is_reported_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edgetag.sources.camera.RETRY_SECONDS", 0.05)
    fake = FakePicamera2(camera_frame(), fail_captures=1)
    attempts = []

    def open_camera(index: int) -> FakePicamera2:
        attempts.append(index)
        if len(attempts) == 1:
            raise IndexError("list index out of range")  # what Picamera2() raises with no camera attached
        return fake

    camera = CameraSource(CameraSourceConfig(name="yard", interval_seconds=0.05), open_camera)
    collector = Collector()
    camera.start(collector.submit, collector.report)
    try:
        (job,) = collector.take(1)
    finally:
        camera.stop()
    reasons = [(source, reason) for source, reason, _ in collector.errors]
    assert reasons[:2] == [("yard", "camera-failed"), ("yard", "camera-failed")]
    assert "IndexError" in collector.errors[0][2] and "timed out" in collector.errors[1][2]
    assert job.image is not None
    assert fake.calls.count("close") >= 1, "a camera that failed is closed before it is opened again"


def test_camera_frames_are_tagged_like_the_photo(tagger: Any) -> None:
    frame = camera_frame()
    result = tagger.infer(tagger.prepare_image(Image.fromarray(frame), "frame"))
    assert result.sentence == "Image may contain: cat"
    assert threading.active_count() >= 1


# --- hostile folders (issue 11) --------------------------------------------------------------------


def started_source(
    tmp_path: Path, state: FolderState, watch: str = "inotify", **options: Any
) -> tuple[Path, Collector, FolderSource]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    config = FolderSourceConfig(
        name="inbox", path=inbox, watch=watch,  # type: ignore[arg-type]
        poll_seconds=0.1, settle_seconds=0.2, rescan_seconds=60.0, **options,
    )  # fmt: skip
    collector = Collector()
    source = FolderSource(config, state, ImageLimits())
    source.start(collector.submit, collector.report)
    return inbox, collector, source


def test_a_name_that_is_not_utf8_is_tagged_remembered_and_the_source_goes_on(
    tmp_path: Path, state: FolderState, watch_mode: str
) -> None:
    inbox, collector, source = started_source(tmp_path, state, watch_mode)
    try:
        shutil.copy(os.fsencode(SAMPLES / "chelsea.jpg"), os.fsencode(inbox) + b"/bad-\xff.jpg")
        (job,) = collector.take(1)
        assert job.name == "bad-\\xff.jpg", "events and logs get valid text"
        assert job.read is not None and job.read() == (SAMPLES / "chelsea.jpg").read_bytes()
        job.finish(Outcome.TAGGED)
        copy_in(SAMPLES / "coffee.jpg", inbox, "next.jpg")
        (after,) = collector.take(1)
        assert after.name == "next.jpg", "the source thread survived the name"
        after.finish(Outcome.TAGGED)
    finally:
        source.stop()
    again = folder_source(inbox, state, watch_mode)
    again.start(collector.submit, collector.report)
    try:
        assert collector.nothing_more(1.0), "the odd name was remembered as tagged"
    finally:
        again.stop()


def test_fifos_and_links_moved_in_are_skipped_without_blocking(tmp_path: Path, state: FolderState) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    shutil.copy(SAMPLES / "chelsea.jpg", outside / "private.jpg")
    inbox, collector, source = started_source(tmp_path, state)
    deadline = time.monotonic() + 10
    while source.watching != "inotify" and time.monotonic() < deadline:  # else the moves go unseen
        time.sleep(0.01)
    time.sleep(0.2)  # the first scan is done and the watch is in place
    try:
        os.mkfifo(inbox / ".fifo.part")
        (inbox / ".fifo.part").rename(inbox / "fifo.jpg")
        (inbox / "to-fifo.jpg").symlink_to(outside / "pipe")
        (inbox / "to-outside.jpg").symlink_to(outside / "private.jpg")
        (inbox / "to-passwd.jpg").symlink_to("/etc/passwd")
        for link in ("to-fifo.jpg", "to-outside.jpg", "to-passwd.jpg"):  # moved in, as a mv would
            (inbox / link).rename(inbox / f"moved-{link}")
        copy_in(SAMPLES / "coffee.jpg", inbox, "real.jpg")
        (job,) = collector.take(1)
        assert job.name == "real.jpg", "neither FIFOs nor symbolic links are offered"
        assert collector.nothing_more()
    finally:
        source.stop()


def test_fifos_and_links_already_there_at_start_are_skipped_and_nothing_blocks(
    tmp_path: Path, state: FolderState
) -> None:
    """The start-up scan skips them too (it always did; this keeps it so), and the photo is read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    shutil.copy(SAMPLES / "chelsea.jpg", outside / "private.jpg")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.mkfifo(inbox / "fifo.jpg")
    (inbox / "to-fifo.jpg").symlink_to(outside / "pipe")
    (inbox / "to-outside.jpg").symlink_to(outside / "private.jpg")
    (inbox / "to-passwd.jpg").symlink_to("/etc/passwd")
    shutil.copy(SAMPLES / "coffee.jpg", inbox / "real.jpg")
    old = time.time() - 120  # settled long ago, as files that waited for edgetag to start are
    os.utime(inbox / "real.jpg", (old, old))
    _, collector, source = started_source(tmp_path, state)
    try:
        (job,) = collector.take(1)
        assert job.name == "real.jpg", "neither FIFOs nor symbolic links are offered"
        assert job.read is not None and job.read()[:2] == b"\xff\xd8"
        assert collector.nothing_more()
    finally:
        source.stop()


def test_reading_through_a_link_swapped_in_later_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "photo.jpg"
    link.symlink_to(SAMPLES / "chelsea.jpg")
    from edgetag.errors import PhotoError  # noqa: PLC0415
    from edgetag.imaging import read_photo_file  # noqa: PLC0415

    with pytest.raises(PhotoError, match="symbolic link"):
        read_photo_file(link, ImageLimits(), follow_symlinks=False)


def test_a_corrupt_state_file_is_moved_aside_and_the_source_works(tmp_path: Path) -> None:
    path = tmp_path / "state" / "folders.db"
    path.parent.mkdir()
    path.write_bytes(b"this is not an SQLite database, it is garbage " * 100)
    state = FolderState(path)
    try:
        inbox, collector, source = started_source(tmp_path, state)
        try:
            copy_in(SAMPLES / "chelsea.jpg", inbox, "cat.jpg")
            (job,) = collector.take(1)
            job.finish(Outcome.TAGGED)
        finally:
            source.stop()
    finally:
        state.close()
    (aside,) = path.parent.glob("folders.db.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not an SQLite")


def test_a_daemon_killed_after_the_decode_does_not_count_against_the_photo(
    tmp_path: Path, state: FolderState
) -> None:
    """Regression: killed twice while the models ran, a photo was skipped as if its decode had crashed."""
    inbox = inbox_with_old_photo(tmp_path, "chelsea.jpg", "fine.jpg")
    collector = Collector()
    crash_while_tagging(inbox, state, collector, 3, decoded=True)
    source = folder_source(inbox, state, "inotify")
    source.start(collector.submit, collector.report)
    try:
        (job,) = collector.take(1)
        assert job.read is not None and job.read() == (SAMPLES / "chelsea.jpg").read_bytes()
        job.finish(Outcome.TAGGED)
    finally:
        source.stop()


def test_a_photo_whose_decode_killed_the_daemon_twice_is_skipped_with_an_error(
    tmp_path: Path, state: FolderState
) -> None:
    inbox = inbox_with_old_photo(tmp_path, "chelsea.jpg", "killer.jpg")
    collector = Collector()
    crash_while_tagging(inbox, state, collector, 2, decoded=False)  # each dies while decoding
    source = folder_source(inbox, state, "inotify")
    source.start(collector.submit, collector.report)
    try:
        (job,) = collector.take(1)
        from edgetag.errors import PhotoError  # noqa: PLC0415

        assert job.read is not None
        with pytest.raises(PhotoError, match="stopped 2 times while decoding") as error:
            job.read()
        assert error.value.reason == "decode-crashed"
        job.finish(Outcome.FAILED)
    finally:
        source.stop()
    again = folder_source(inbox, state, "inotify")
    again.start(collector.submit, collector.report)
    try:
        assert collector.nothing_more(1.0), "skipped until it changes"
    finally:
        again.stop()


def test_a_writer_that_pauses_over_a_rescan_is_not_read_half_written(
    tmp_path: Path, state: FolderState
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = FolderSourceConfig(
        name="inbox", path=inbox, watch="inotify", poll_seconds=0.1, settle_seconds=0.2, rescan_seconds=0.3
    )
    collector = Collector()
    source = FolderSource(config, state, ImageLimits())
    source.start(collector.submit, collector.report)
    data = (SAMPLES / "coffee.jpg").read_bytes()
    try:
        time.sleep(0.3)
        with (inbox / "ftp.jpg").open("wb") as handle:  # an FTP server writes the final name directly
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(1.5)  # a stall: several rescans see a half file untouched for over a second
            assert collector.jobs.empty(), "a half-written file was offered"
            handle.write(data[len(data) // 2 :])
        (job,) = collector.take(1)
        assert job.read is not None and job.read() == data
    finally:
        source.stop()


UNREADABLE_RUN = """
import json, sys, time
from pathlib import Path
from edgetag.config import FolderSourceConfig
from edgetag.imaging import ImageLimits
from edgetag.sources.folder import FolderSource, FolderState
import edgetag.sources.folder as folder

scans = []
original = FolderSource._scan
def counting(self, settle):
    scans.append(time.monotonic())
    return original(self, settle)
FolderSource._scan = counting
errors = []
state = FolderState(Path(sys.argv[2]))
config = FolderSourceConfig(name="inbox", path=Path(sys.argv[1]), poll_seconds=0.1)
source = FolderSource(config, state, ImageLimits())
source.start(lambda job: None, lambda *error: errors.append(error))
time.sleep(3)
source.stop()
print(json.dumps({"scans": len(scans), "errors": [e[1] for e in errors]}))
"""


def test_an_unreadable_folder_is_reported_once_and_looked_at_less_and_less(tmp_path: Path) -> None:
    """In a child without the capabilities that let root read any folder."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    inbox.chmod(0o000)
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    try:
        done = subprocess.run(
            [*drop, sys.executable, "-c", UNREADABLE_RUN, str(inbox), str(tmp_path / "folders.db")],
            capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
        )  # fmt: skip
    finally:
        inbox.chmod(0o755)
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["errors"] == ["folder-unreadable"], "reported once, not once per look"
    assert result["scans"] <= 8, f"{result['scans']} looks in 3 s: it should back off"
