"""A durable queue between tagging and the MQTT broker, so no tag event is lost or published twice.

An event is committed to an SQLite file before its photo counts as done, and deleted only once the
broker has it, so after a broker outage or a crash the rest is published again, in order. Ids of
delivered events are remembered for a while: a photo offered again after a crash is recognised and
refused. The queue is bounded by count and age, so a Pi that stays offline for weeks drops its
oldest events (and counts them) instead of filling its SD card. When it is full, notices (a folder
that cannot be read, a broken camera) go first, then error events of photos, and tag events last:
a flood of errors can never push out what a photo said.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Self

from edgetag.errors import EdgetagError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_BUSY_TIMEOUT_SECONDS = 10.0

# AUTOINCREMENT: a seq is never reused, even after the newest message is deleted.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    properties TEXT NOT NULL,
    created REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 2
);
CREATE INDEX IF NOT EXISTS pending_created ON pending (created);
CREATE TABLE IF NOT EXISTS delivered (id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""
# set_aside: messages the broker can never take (a bad topic, over its packet size). Kept for a
# person to look at, out of the queue, so one of them cannot stop every later event.
_MIGRATIONS = {
    # version 1 -> 2: messages gained a priority (what a full outbox drops first); old rows are events.
    1: "ALTER TABLE pending ADD COLUMN priority INTEGER NOT NULL DEFAULT 2",
}
_INDEXES = "CREATE INDEX IF NOT EXISTS pending_priority ON pending (priority, seq);"


class Priority(IntEnum):
    """What a full outbox keeps longest: the lowest priority is dropped first, oldest first."""

    NOTICE = 0  # about a source or the daemon, not one photo (an unreadable folder, a hook's publish)
    PHOTO_ERROR = 1  # a photo that could not be tagged: its only event
    EVENT = 2  # a tag event or its reply


@dataclass(frozen=True)
class OutboxMessage:
    """One MQTT message to publish. `id` is stable (the event id) and unique in the outbox."""

    id: str
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    priority: Priority = Priority.EVENT


@dataclass(frozen=True)
class StoredMessage:
    """A pending message with its place in the queue (`seq`, never reused) and when it was added."""

    seq: int
    message: OutboxMessage
    created: float


@dataclass(frozen=True)
class OutboxStats:
    """For the daemon's status: dropped_total counts every message dropped unsent, across restarts."""

    pending: int
    dropped_total: int
    oldest_age_seconds: float | None
    set_aside: int = 0


class OutboxError(EdgetagError):
    """The outbox file cannot be created or used; the message names the file and the reason."""


class _CorruptError(sqlite3.DatabaseError):
    """The file opened, but SQLite's integrity check found damage."""


class Outbox:
    """The queue in one SQLite file; safe to call from several threads at once."""

    def __init__(
        self,
        path: Path,
        *,
        max_messages: int = 10_000,
        max_age_seconds: float = 7 * 86400,
        remember_seconds: float = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_age_seconds = max_age_seconds
        self.remember_seconds = remember_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._db = self._open()

    def add(self, message: OutboxMessage) -> bool:
        """Store a message (committed when this returns True); False if its id is pending or delivered."""
        return self.add_many([message])[0]

    def add_many(self, messages: Sequence[OutboxMessage]) -> list[bool]:
        """Store several messages in one transaction: all of them or, on an error, none."""
        with self._transaction() as db:
            now = self._clock()
            added = [self._insert(db, message, now) for message in messages]
            (count,) = db.execute("SELECT COUNT(*) FROM pending").fetchone()
            excess = max(0, count - self.max_messages)
            db.execute(
                "DELETE FROM pending WHERE seq IN (SELECT seq FROM pending ORDER BY priority, seq LIMIT ?)",
                (excess,),
            )
            total = self._count_dropped(db, excess)
        if excess:
            log.warning(
                "outbox full at %d: dropped %d unsent, notices and errors before events (%d in all)",
                self.max_messages,
                excess,
                total,
            )
        return added

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[StoredMessage]:
        """Up to `limit` pending messages with seq > after_seq, oldest first."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT seq, id, topic, payload, qos, retain, properties, created, priority FROM pending"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [
            StoredMessage(
                seq,
                OutboxMessage(id_, topic, payload, qos, bool(retain), json.loads(props), Priority(priority)),
                created,
            )
            for seq, id_, topic, payload, qos, retain, props, created, priority in rows
        ]

    def delivered(self, message_id: str) -> bool:
        """The broker has it: unqueue it and remember its id. False, changing nothing, if not pending."""
        return self.delivered_many([message_id]) == 1

    def delivered_many(self, message_ids: Sequence[str]) -> int:
        """`delivered` for several ids in one transaction (one disk sync); returns how many were pending."""
        now = self._clock()
        removed = 0
        with self._transaction() as db:
            for message_id in message_ids:
                if db.execute("DELETE FROM pending WHERE id = ?", (message_id,)).rowcount:
                    db.execute("INSERT OR REPLACE INTO delivered (id, at) VALUES (?, ?)", (message_id, now))
                    removed += 1
        return removed

    def delivered_echoes(self, echoes: Sequence[tuple[str, bytes]]) -> list[str]:
        """`delivered` for each (id, payload) whose pending payload is exactly that, in one transaction.

        The proof of delivery is the whole message coming back, not its id: any client can publish
        `{"id": X}`. Returns the ids that are pending with another payload (forged echoes).
        """
        now = self._clock()
        forged = []
        with self._transaction() as db:
            for message_id, payload in echoes:
                if db.execute(
                    "DELETE FROM pending WHERE id = ? AND payload = ?", (message_id, payload)
                ).rowcount:
                    db.execute("INSERT OR REPLACE INTO delivered (id, at) VALUES (?, ?)", (message_id, now))
                elif db.execute("SELECT 1 FROM pending WHERE id = ?", (message_id,)).fetchone():
                    forged.append(message_id)
        return forged

    def set_aside(self, message_id: str, reason: str) -> bool:
        """Take a message that can never be published out of the queue, keeping it with the reason.

        Its id stays known (a photo offered again is not tagged again). False if it was not pending.
        """
        with self._transaction() as db:
            row = db.execute("SELECT topic, payload FROM pending WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return False
            db.execute(
                "INSERT OR REPLACE INTO set_aside (id, topic, payload, reason, at) VALUES (?, ?, ?, ?, ?)",
                (message_id, row[0], row[1], reason, self._clock()),
            )
            db.execute("DELETE FROM pending WHERE id = ?", (message_id,))
            db.execute("INSERT OR REPLACE INTO delivered (id, at) VALUES (?, ?)", (message_id, self._clock()))
        return True

    def is_known(self, message_id: str) -> bool:
        """True if the id is pending or was delivered within remember_seconds."""
        with self._transaction(write=False) as db:
            return self._known(db, message_id, self._clock())

    def prune(self) -> int:
        """Drop pending messages older than max_age_seconds and forget old delivered ids.

        Returns how many pending messages were dropped (the caller logs them); call it every few minutes.
        """
        now = self._clock()
        with self._transaction() as db:
            dropped = db.execute(
                "DELETE FROM pending WHERE created < ?", (now - self.max_age_seconds,)
            ).rowcount
            self._count_dropped(db, dropped)
            db.execute("DELETE FROM delivered WHERE at < ?", (now - self.remember_seconds,))
        return dropped

    def stats(self) -> OutboxStats:
        with self._transaction(write=False) as db:
            count, oldest = db.execute("SELECT COUNT(*), MIN(created) FROM pending").fetchone()
            total = self._count_dropped(db, 0)
            (aside,) = db.execute("SELECT COUNT(*) FROM set_aside").fetchone()
        age = None if oldest is None else max(0.0, self._clock() - oldest)
        return OutboxStats(pending=count, dropped_total=total, oldest_age_seconds=age, set_aside=aside)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; SQLite's errors become OutboxError, naming the file."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                finally:
                    if self._db.in_transaction:  # the body or the commit failed
                        self._db.execute("ROLLBACK")
            except sqlite3.Error as error:
                raise OutboxError(f"cannot use the outbox {self.path}: {error}") from error

    def _insert(self, db: sqlite3.Connection, message: OutboxMessage, now: float) -> bool:
        if message.qos not in (0, 1, 2):
            raise ValueError(f"message {message.id!r}: qos must be 0, 1 or 2, not {message.qos}")
        if self._known(db, message.id, now):
            return False
        db.execute(
            "INSERT INTO pending (id, topic, payload, qos, retain, properties, created, priority)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.id,
                message.topic,
                bytes(message.payload),
                message.qos,
                int(message.retain),
                json.dumps(message.properties, sort_keys=True),
                now,
                int(message.priority),
            ),
        )
        return True

    def _known(self, db: sqlite3.Connection, message_id: str, now: float) -> bool:
        row = db.execute(
            "SELECT 1 FROM pending WHERE id = ? UNION ALL SELECT 1 FROM delivered WHERE id = ? AND at >= ?",
            (message_id, message_id, now - self.remember_seconds),
        ).fetchone()
        return row is not None

    def _count_dropped(self, db: sqlite3.Connection, dropped: int) -> int:
        """Add to dropped_total (kept in the file, so it survives restarts) and return the new total."""
        if dropped:
            db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_total'", (dropped,))
        (total,) = db.execute("SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()
        return int(total)

    def _open(self) -> sqlite3.Connection:
        """Open (or create) the file; a corrupt one is moved aside so the daemon can carry on."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutboxError(
                f"cannot create the outbox {self.path}: cannot make the folder {self.path.parent}"
                f" ({error.strerror or error})"
            ) from None
        try:
            return self._connect()
        except sqlite3.Error as error:
            if not _is_corrupt(error):
                raise OutboxError(f"cannot open the outbox {self.path}: {error}") from None
            aside = self._move_aside()
            log.error(
                "the outbox %s is corrupt (%s): moved it aside to %s and started an empty outbox; "
                "the undelivered events and remembered ids it held are lost",
                self.path,
                error,
                aside,
            )
        try:
            return self._connect()
        except sqlite3.Error as error:
            raise OutboxError(f"cannot create a new outbox {self.path}: {error}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")  # a Pi loses power: a returned add() must survive it
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise _CorruptError(check)
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('dropped_total', 0)",
                (SCHEMA_VERSION,),
            )
            (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            while version in _MIGRATIONS:
                db.execute("BEGIN IMMEDIATE")
                db.execute(_MIGRATIONS[version])
                version += 1
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
                db.execute("COMMIT")
            if version == SCHEMA_VERSION:
                db.executescript(_INDEXES)
        except BaseException:
            db.close()
            raise
        if version != SCHEMA_VERSION:
            db.close()
            raise OutboxError(
                f"the outbox {self.path} has schema version {version}, this edgetag knows {SCHEMA_VERSION}:"
                " it was written by another edgetag version; move it away to start a new one"
            )
        return db

    def _move_aside(self) -> Path:
        """Rename the file (WAL and shared-memory files first) to <name>.corrupt-<unix time>."""
        stamp = int(self._clock())
        while (aside := self.path.with_name(f"{self.path.name}.corrupt-{stamp}")).exists():
            stamp += 1
        try:
            for suffix in ("-wal", "-shm", ""):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.replace(f"{aside}{suffix}")
        except OSError as error:
            raise OutboxError(
                f"the outbox {self.path} is corrupt and cannot be moved aside ({error.strerror or error});"
                " move or delete it by hand"
            ) from None
        return aside


def _is_corrupt(error: sqlite3.Error) -> bool:
    """A damaged file, as opposed to a lock or a permission problem (which moving aside would not fix)."""
    if isinstance(error, _CorruptError):
        return True
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
