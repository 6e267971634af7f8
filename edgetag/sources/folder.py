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
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edgetag.config import FolderSourceConfig
from edgetag.errors import PhotoError
from edgetag.events import event_id
from edgetag.imaging import ImageLimits, read_photo_file
from edgetag.sources.base import Outcome, PhotoJob, ReportError, Submit
from edgetag.vocabulary import Description
from edgetag.xmp import is_sidecar_name, write_sidecar

log = logging.getLogger(__name__)

UNREADABLE_BACKOFF_MAX_SECONDS = 60.0
WATCHED_SETTLE_SECONDS = 30.0
"""With inotify, a file that only a rescan finds must be untouched this long (issue 11, item 16)."""

TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".filepart", ".download")


def is_candidate_name(name: str) -> bool:
    """Hidden and temporary files are not photos yet; XMP sidecars (edgetag's own too) never are."""
    return (
        not name.startswith((".", "~"))
        and not name.lower().endswith(TEMPORARY_SUFFIXES)
        and not is_sidecar_name(name)
    )


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file: rewrite it and it is a new photo."""

    size: int
    mtime_ns: int


NameKey = str | bytes
"""A file name as stored: the name itself, or its raw bytes when it is not valid UTF-8."""


def name_key(name: str) -> NameKey:
    """Linux names are bytes; os.scandir gives invalid UTF-8 as surrogates, which SQLite refuses."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(name)
    return name


def display_name(name: str) -> str:
    """Valid text for events and logs: each byte that is not UTF-8 is shown as a \\xNN escape."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


MAX_ATTEMPTS = 2
ABANDONED_RETRY_SECONDS = 2.0
"""A photo abandoned while running (its event could not be stored: a full disk) is offered again
after this, then after twice as long each time it happens again, up to `rescan_seconds`."""
"""Decodes of one file that may end with the daemon gone (OOM-killed) before it is skipped."""


class FolderState:
    """The files each folder source has finished, in SQLite next to the outbox.

    `attempts` counts photos being decoded: a row is written before a photo is read and removed once
    it is decoded (or done), so a row found at start-up is a photo whose decode the daemon did not
    survive. A daemon killed later, while the models run or the event is stored, is not counted.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as error:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            for suffix in ("-wal", "-shm", ""):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{path}{suffix}").replace(f"{aside}{suffix}")
            log.error(
                "the folder state %s is corrupt (%s): moved it aside to %s and started an empty one;"
                " photos still in the folders are tagged again (those delivered today are recognised)",
                path, error, aside,
            )  # fmt: skip
            self._db = self._connect()
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL, not FULL: a mark lost to a power cut only makes the file offered again, and its
            # event id (name, size, time) is already in the durable outbox, which refuses it.
            db.execute("PRAGMA synchronous=NORMAL")
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (source TEXT, name TEXT, size INTEGER, mtime_ns INTEGER,"
                " outcome TEXT, event_id TEXT, at REAL, PRIMARY KEY (source, name))"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS attempts (source TEXT, name TEXT, size INTEGER,"
                " mtime_ns INTEGER, count INTEGER, PRIMARY KEY (source, name))"
            )
        except BaseException:
            db.close()
            raise
        return db

    def finished(self, source: str, name: NameKey, stamp: FileStamp) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns FROM files WHERE source = ? AND name = ?", (source, name)
            ).fetchone()
        return row is not None and FileStamp(row[0], row[1]) == stamp

    def mark(self, source: str, name: NameKey, stamp: FileStamp, outcome: Outcome, photo_id: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                (source, name, stamp.size, stamp.mtime_ns, outcome.value, photo_id, time.time()),
            )

    def attempts(self, source: str, name: NameKey, stamp: FileStamp) -> int:
        """How many decodes of this version of the file began and never finished."""
        with self._lock:
            row = self._db.execute(
                "SELECT count FROM attempts WHERE source = ? AND name = ? AND size = ? AND mtime_ns = ?",
                (source, name, stamp.size, stamp.mtime_ns),
            ).fetchone()
        return int(row[0]) if row else 0

    def begin(self, source: str, name: NameKey, stamp: FileStamp) -> None:
        """A decode begins: count it (durably) before it can take the process down."""
        count = self.attempts(source, name, stamp) + 1
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?)",
                (source, name, stamp.size, stamp.mtime_ns, count),
            )

    def done(self, source: str, name: NameKey) -> None:
        with self._lock:
            self._db.execute("DELETE FROM attempts WHERE source = ? AND name = ?", (source, name))

    def forget_missing(self, source: str, present: set[NameKey]) -> None:
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
        self._skipped: set[str] = set()  # names not offered (links, FIFOs): warned about once
        self._unreadable = False
        self._abandoned: dict[str, FileStamp] = {}  # to offer again at _retry_at, if unchanged
        self._retry_at: float | None = None
        self._retry_delay = ABANDONED_RETRY_SECONDS
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
        backoff = self.config.poll_seconds
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
            if self._unreadable:  # reported once; look again later and later, up to once a minute
                self._stopping.wait(backoff)
                backoff = min(max(backoff * 2, self.config.poll_seconds), UNREADABLE_BACKOFF_MAX_SECONDS)
            else:
                backoff = self.config.poll_seconds

    def _watch(self, watcher: _Inotify | None) -> None:
        """Scan, then wait for changes; returns when the folder disappears or the source stops."""
        self.watching = "inotify" if watcher else "polling"
        log.info("watching %s for photos (%s)", self.folder, self.watching)
        next_scan = 0.0
        settle = self.config.settle_seconds
        while not self._stopping.is_set():
            self._retry_abandoned()
            now = time.monotonic()
            if now >= next_scan:
                unsettled = self._scan(settle)
                if watcher is not None and unsettled == 0:
                    # Once the files from before the watch are settled, every completed file comes
                    # with an event; one that only a rescan finds is more likely a writer that paused
                    # than a missed event: it must stand still longer.
                    settle = max(settle, WATCHED_SETTLE_SECONDS)
                if unsettled is None:
                    return
                # A file that is still settling (say it arrived just before the watch began) is
                # looked at again soon; otherwise inotify covers changes until the next rescan.
                calm = watcher is not None and unsettled == 0
                next_scan = now + (self.config.rescan_seconds if calm else self.config.poll_seconds)
            wake = min(next_scan, self._retry_at or next_scan)
            if watcher is None:
                self._stopping.wait(max(0.05, wake - time.monotonic()))
                continue
            names, rescan, gone = watcher.read(timeout=min(1.0, max(0.05, wake - time.monotonic())))
            if gone:
                return
            if rescan:
                next_scan = 0.0
            for name in names:
                self._consider(name, settle=None)

    def _scan(self, settle: float) -> int | None:
        """Look at every file; returns how many are still settling, or None if the folder is unreadable."""
        try:
            names = {entry.name for entry in os.scandir(self.folder) if entry.is_file(follow_symlinks=False)}
        except OSError as error:
            if not self._unreadable:
                self._error("folder-unreadable", f"cannot list {self.folder}: {error.strerror or error}")
                self._unreadable = True
            return None
        if self._unreadable:
            log.info("%s: %s can be read again", self.name, self.folder)
            self._unreadable = False
        unsettled = sum(not self._consider(name, settle) for name in sorted(names))
        try:
            self._state.forget_missing(self.name, {name_key(name) for name in names})
        except sqlite3.Error as error:  # a full disk: the table is tidied on a later scan
            log.warning("%s: cannot tidy the folder state (%s)", self.name, error)
        with self._lock:
            self._last_seen = {n: s for n, s in self._last_seen.items() if n in names}
            self._skipped &= names
        return unsettled

    def _consider(self, name: str, settle: float | None) -> bool:
        """Offer a complete photo not tagged in this version. False if the file is still settling.

        `settle`: seconds the file must have been untouched (None: an event said it is complete).
        """
        if self._stopping.is_set() or not is_candidate_name(name):
            return True
        path = self.folder / name
        stamp = self._regular_file_stamp(name, path)
        if stamp is None:
            return True
        with self._lock:
            previous = self._last_seen.get(name)
            self._last_seen[name] = stamp
            if name in self._in_flight:
                return True
        if settle is not None and not _settled(stamp, previous, settle):
            return False
        key = name_key(name)
        if self._state.finished(self.name, key, stamp):
            return True
        with self._lock:
            self._in_flight.add(name)
        attempts = self._state.attempts(self.name, key, stamp)
        photo_id = event_id(self.name, os.fsencode(name), stamp.size, stamp.mtime_ns)
        job = PhotoJob(
            source=self.name,
            name=display_name(name),
            id=photo_id,
            read=functools.partial(self._read, key, stamp, path, attempts),
            on_decoded=functools.partial(self._decoded, name),
            on_finish=functools.partial(self._finished, name, stamp),
            on_tagged=functools.partial(self._write_sidecar, path, photo_id) if self.config.xmp else None,
        )
        assert self._submit is not None
        self._submit(job)
        return True

    def _retry_abandoned(self) -> None:
        """Offer again, once it is time, the photos abandoned while running, if they did not change."""
        with self._lock:
            if self._retry_at is None or time.monotonic() < self._retry_at:
                return
            retry, self._abandoned, self._retry_at = self._abandoned, {}, None
        for name, stamp in retry.items():
            if self._regular_file_stamp(name, self.folder / name) == stamp:
                self._consider(name, settle=None)

    def _read(self, key: NameKey, stamp: FileStamp, path: Path, attempts: int) -> bytes:
        """The job's bytes; a photo whose decode the daemon did not survive twice is skipped."""
        if attempts >= MAX_ATTEMPTS:
            raise PhotoError(
                "decode-crashed",
                f"edgetag stopped {attempts} times while decoding this photo (out of memory?);"
                " skipped until the file changes",
            )
        self._state.begin(self.name, key, stamp)
        return read_photo_file(path, self._limits, follow_symlinks=False)

    def _write_sidecar(self, path: Path, photo_id: str, description: Description) -> None:
        """Before the photo counts as done; the id makes a photo offered again after a crash a no-op."""
        sidecar = write_sidecar(
            path,
            description,
            name_style=self.config.xmp_name,
            overwrite_description=self.config.xmp_overwrite_description,
            photo_id=photo_id,
        )
        log.debug("%s: wrote %s", self.name, display_name(str(sidecar)))

    def _regular_file_stamp(self, name: str, path: Path) -> FileStamp | None:
        """A regular file's stamp; None for what is gone or not a regular file (links are not followed)."""
        try:
            info = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            self._skip(name, "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file")
            return None
        return FileStamp(info.st_size, info.st_mtime_ns)

    def _skip(self, name: str, why: str) -> None:
        with self._lock:
            if name in self._skipped:
                return
            self._skipped.add(name)
        log.warning("%s: not offering %s: it is %s", self.name, display_name(name), why)

    # --- after the pipeline is done with a file ---------------------------------------------------

    def _decoded(self, name: str) -> None:
        """The daemon survived this decode: it no longer counts against the photo."""
        try:
            self._state.done(self.name, name_key(name))
        except sqlite3.Error as error:  # a full disk: finishing the photo clears it again
            log.warning("%s: cannot record %s as decoded (%s)", self.name, display_name(name), error)

    def _finished(self, name: str, stamp: FileStamp, outcome: Outcome) -> None:
        key = name_key(name)
        try:
            self._state.done(self.name, key)
            if outcome is not Outcome.ABANDONED:
                job_id = event_id(self.name, os.fsencode(name), stamp.size, stamp.mtime_ns)
                self._state.mark(self.name, key, stamp, outcome, job_id)
        except sqlite3.Error as error:
            # A full disk. If the event is stored, a photo offered again is refused by its id, so
            # nothing is tagged twice; the file is kept until edgetag can record it.
            log.warning("%s: cannot record %s in the folder state (%s)", self.name, display_name(name), error)
            outcome = Outcome.ABANDONED
        with self._lock:
            self._in_flight.discard(name)
            if outcome is Outcome.ABANDONED:
                self._abandoned[name] = stamp
                if self._retry_at is None:
                    self._retry_at = time.monotonic() + self._retry_delay
                    self._retry_delay = min(self._retry_delay * 2, self.config.rescan_seconds)
            else:
                self._retry_delay = ABANDONED_RETRY_SECONDS
        if outcome is Outcome.ABANDONED:
            return
        if outcome is Outcome.FAILED or self.config.after == "keep":
            return
        path = self.folder / name
        try:
            if self.config.after == "delete":
                path.unlink(missing_ok=True)
            elif self.config.move_to is not None:
                self._move(path)
        except OSError as error:
            self._error(
                "after-failed",
                f"could not {self.config.after} {display_name(str(path))}: {error.strerror or error}",
            )

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


def _settled(stamp: FileStamp, previous: FileStamp | None, settle: float) -> bool:
    """Complete when polled: unchanged since last seen, and untouched for `settle` seconds."""
    age = time.time() - stamp.mtime_ns / 1e9
    return age >= settle and (previous is None or previous == stamp)


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
