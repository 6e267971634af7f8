"""New files in a folder: inotify where available, polling otherwise; every photo tagged exactly once.

A file is offered once it is complete: inotify says its writer closed it (or it was moved in), or,
when polling, its size and time have stood still for `settle_seconds`. Hidden and temporary names
(".x", "~x", "x.part", "x.tmp"...) are left alone: upload tools write those first and rename them.

What has been tagged is remembered in SQLite (name, size, modification time), so after a restart
the files that arrived while edgetag was down are tagged and the others are not tagged again. A file
is deleted or moved only after its event is safely in the outbox. A file that is not a photo stays
where it is and is not retried until it changes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgetag.config import FolderSourceConfig
from edgetag.events import event_id
from edgetag.imaging import ImageLimits, read_photo_file
from edgetag.sources.base import Outcome, PhotoJob, ReportError, Submit

log = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".filepart", ".download")


def is_candidate_name(name: str) -> bool:
    """Hidden and temporary files are not photos yet."""
    return not name.startswith((".", "~")) and not name.lower().endswith(TEMPORARY_SUFFIXES)


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file: rewrite it and it is a new photo."""

    size: int
    mtime_ns: int


class FolderState:
    """The files each folder source has finished, in SQLite next to the outbox."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL, not FULL: a mark lost to a power cut only makes the file offered again, and its
            # event id (name, size, time) is already in the durable outbox, which refuses it.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (source TEXT, name TEXT, size INTEGER, mtime_ns INTEGER,"
                " outcome TEXT, event_id TEXT, at REAL, PRIMARY KEY (source, name))"
            )

    def finished(self, source: str, name: str, stamp: FileStamp) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns FROM files WHERE source = ? AND name = ?", (source, name)
            ).fetchone()
        return row is not None and FileStamp(row[0], row[1]) == stamp

    def mark(self, source: str, name: str, stamp: FileStamp, outcome: Outcome, photo_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                (source, name, stamp.size, stamp.mtime_ns, outcome.value, photo_id, time.time()),
            )

    def forget_missing(self, source: str, present: set[str]) -> None:
        """Drop what no longer exists (deleted or moved away), so the table stays small."""
        with self._lock:
            names = [row[0] for row in self._db.execute("SELECT name FROM files WHERE source = ?", (source,))]
            gone = [(source, name) for name in names if name not in present]
            self._db.executemany("DELETE FROM files WHERE source = ? AND name = ?", gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class FolderSource:
    def __init__(self, config: FolderSourceConfig, state: FolderState, limits: ImageLimits) -> None:
        self.config = config
        self.name = config.name
        self.folder = config.path
        self._state = state
        self._limits = limits
        self._in_flight: set[str] = set()
        self._last_seen: dict[str, FileStamp] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._submit: Submit | None = None
        self._report: ReportError | None = None
        self.watching = "none"

    def start(self, submit: Submit, report_error: ReportError) -> None:
        self._submit, self._report = submit, report_error
        self._thread = threading.Thread(target=self._run, name=f"folder-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout=10)

    # --- the watching loop ----------------------------------------------------------------------

    def _run(self) -> None:
        missing_reported = False
        while not self._stopping.is_set():
            if not self.folder.is_dir():
                if not missing_reported:
                    self._error("folder-missing", f"folder {self.folder} does not exist; waiting for it")
                    missing_reported = True
                self._stopping.wait(self.config.poll_seconds)
                continue
            missing_reported = False
            watcher = self._open_inotify() if self.config.watch in ("auto", "inotify") else None
            if watcher is None and self.config.watch == "inotify":
                return
            try:
                self._watch(watcher)
            finally:
                if watcher is not None:
                    watcher.close()

    def _watch(self, watcher: _Inotify | None) -> None:
        """Scan, then wait for changes; returns when the folder disappears or the source stops."""
        self.watching = "inotify" if watcher else "polling"
        log.info("watching %s for photos (%s)", self.folder, self.watching)
        next_scan = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= next_scan:
                unsettled = self._scan()
                if unsettled is None:
                    return
                # A file that is still settling (say it arrived just before the watch began) is
                # looked at again soon; otherwise inotify covers changes until the next rescan.
                calm = watcher is not None and unsettled == 0
                next_scan = now + (self.config.rescan_seconds if calm else self.config.poll_seconds)
            if watcher is None:
                self._stopping.wait(max(0.05, next_scan - time.monotonic()))
                continue
            names, rescan, gone = watcher.read(timeout=min(1.0, max(0.05, next_scan - time.monotonic())))
            if gone:
                return
            if rescan:
                next_scan = 0.0
            for name in names:
                self._consider(name, settled_only=False)

    def _scan(self) -> int | None:
        """Look at every file; returns how many are still settling, or None if the folder is unreadable."""
        try:
            names = {entry.name for entry in os.scandir(self.folder) if entry.is_file(follow_symlinks=False)}
        except OSError as error:
            self._error("folder-unreadable", f"cannot list {self.folder}: {error.strerror or error}")
            return None
        unsettled = sum(not self._consider(name, settled_only=True) for name in sorted(names))
        self._state.forget_missing(self.name, names)
        with self._lock:
            self._last_seen = {n: s for n, s in self._last_seen.items() if n in names}
        return unsettled

    def _consider(self, name: str, settled_only: bool) -> bool:
        """Offer a complete photo not tagged in this version. False if the file is still settling."""
        if self._stopping.is_set() or not is_candidate_name(name):
            return True
        path = self.folder / name
        try:
            info = path.stat()
        except OSError:
            return True
        stamp = FileStamp(info.st_size, info.st_mtime_ns)
        with self._lock:
            previous = self._last_seen.get(name)
            self._last_seen[name] = stamp
            if name in self._in_flight:
                return True
        if settled_only and not self._settled(stamp, previous):
            return False
        if self._state.finished(self.name, name, stamp):
            return True
        with self._lock:
            self._in_flight.add(name)
        job = PhotoJob(
            source=self.name,
            name=name,
            id=event_id(self.name, name, stamp.size, stamp.mtime_ns),
            read=functools.partial(read_photo_file, path, self._limits),
            on_finish=functools.partial(self._finished, name, stamp),
        )
        assert self._submit is not None
        self._submit(job)
        return True

    def _settled(self, stamp: FileStamp, previous: FileStamp | None) -> bool:
        """Complete when polled: unchanged since last seen, and untouched for settle_seconds."""
        age = time.time() - stamp.mtime_ns / 1e9
        return age >= self.config.settle_seconds and (previous is None or previous == stamp)

    # --- after the pipeline is done with a file ---------------------------------------------------

    def _finished(self, name: str, stamp: FileStamp, outcome: Outcome) -> None:
        with self._lock:
            self._in_flight.discard(name)
        if outcome is Outcome.ABANDONED:
            return  # offered again on the next start
        job_id = event_id(self.name, name, stamp.size, stamp.mtime_ns)
        self._state.mark(self.name, name, stamp, outcome, job_id)
        if outcome is Outcome.FAILED or self.config.after == "keep":
            return
        path = self.folder / name
        try:
            if self.config.after == "delete":
                path.unlink(missing_ok=True)
            elif self.config.move_to is not None:
                self._move(path)
        except OSError as error:
            self._error("after-failed", f"could not {self.config.after} {path}: {error.strerror or error}")

    def _move(self, path: Path) -> None:
        assert self.config.move_to is not None
        self.config.move_to.mkdir(parents=True, exist_ok=True)
        target = self.config.move_to / path.name
        counter = 1
        while target.exists():
            target = self.config.move_to / f"{path.stem}-{counter}{path.suffix}"
            counter += 1
        shutil.move(str(path), str(target))

    def _error(self, reason: str, message: str) -> None:
        log.warning("%s: %s", self.name, message)
        if self._report is not None:
            self._report(self.name, reason, message)

    def _open_inotify(self) -> _Inotify | None:
        try:
            return _Inotify(self.folder)
        except (ImportError, OSError) as error:
            level = logging.ERROR if self.config.watch == "inotify" else logging.INFO
            log.log(level, "%s: inotify unavailable (%s); %s", self.name, error,
                    "cannot watch" if self.config.watch == "inotify" else "polling instead")  # fmt: skip
            if self.config.watch == "inotify":
                self._error("inotify-unavailable", f"inotify is unavailable for {self.folder}: {error}")
            return None


class _Inotify:
    """The few inotify events that matter: a file was closed after writing, or moved in."""

    def __init__(self, folder: Path) -> None:
        from inotify_simple import INotify, flags  # noqa: PLC0415  (Linux only; polling elsewhere)

        self._flags = flags
        self._inotify = INotify()
        watch = flags.CLOSE_WRITE | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF
        self._inotify.add_watch(str(folder), watch)

    def read(self, timeout: float) -> tuple[list[str], bool, bool]:
        """Names of completed files, whether to rescan (events were lost), whether the folder went away."""
        names: list[str] = []
        rescan = gone = False
        for event in self._inotify.read(timeout=int(timeout * 1000)):
            if event.mask & self._flags.Q_OVERFLOW:
                rescan = True
            elif event.mask & (self._flags.DELETE_SELF | self._flags.MOVE_SELF | self._flags.IGNORED):
                gone = True
            elif event.name:
                names.append(event.name)
        return names, rescan, gone

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._inotify.close()
