"""The outbox: order, dedupe, bounds, crash safety, threads, and corrupt or unusable files."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from edgetag.errors import EdgetagError
from edgetag.outbox import Outbox, OutboxError, OutboxMessage, Priority, StoredMessage

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


class FakeClock:
    """A clock the test moves by hand, so windows and ages are tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def message(message_id: str, payload: bytes = b"{}") -> OutboxMessage:
    return OutboxMessage(id=message_id, topic=f"edgetag/pi/events/{message_id}", payload=payload)


def ids(stored: list[StoredMessage]) -> list[str]:
    return [item.message.id for item in stored]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "outbox.db"


def test_pending_keeps_its_order_and_seqs_across_a_reopen(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        for name in ["a", "b", "c", "d"]:
            assert box.add(message(name))
        assert box.delivered("b")
        before = box.pending()
    assert path.is_file()
    with Outbox(path, clock=clock) as box:
        after = box.pending()
    assert ids(after) == ["a", "c", "d"]
    assert after == before
    assert [item.seq for item in after] == sorted(item.seq for item in after)


def test_seqs_are_never_reused_even_after_the_newest_is_delivered(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        box.add_many([message("a"), message("b")])
        last_seq = box.pending()[-1].seq
        box.delivered("b")
    with Outbox(path, clock=clock) as box:
        box.add(message("c"))
        assert [item.seq for item in box.pending()] == [1, last_seq + 1]


def test_pending_pages_by_seq(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        box.add_many([message(f"m{i}") for i in range(10)])
        first = box.pending(limit=4)
        rest = box.pending(after_seq=first[-1].seq, limit=100)
        assert ids(first) == ["m0", "m1", "m2", "m3"]
        assert ids(rest) == [f"m{i}" for i in range(4, 10)]
        assert box.pending(after_seq=rest[-1].seq) == []


def test_properties_binary_payloads_and_flags_round_trip(path: Path, clock: FakeClock) -> None:
    payload = bytes(range(256)) * 3
    properties = {"correlation_data_hex": "00ff10", "content_type": "application/json", "note": "ünïcode"}
    original = OutboxMessage("x1", "edgetag/pi/tags", payload, qos=0, retain=True, properties=properties)
    with Outbox(path, clock=clock) as box:
        box.add(original)
        box.add(message("plain"))
    with Outbox(path, clock=clock) as box:
        stored, plain = box.pending()
    assert stored.message == original
    assert isinstance(stored.message.payload, bytes)
    assert stored.created == clock.now
    assert plain.message == OutboxMessage("plain", "edgetag/pi/events/plain", b"{}", 1, False, {})


def test_a_pending_id_is_refused(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        assert box.add(message("a", b"first"))
        assert not box.add(message("a", b"second"))
        assert [item.message.payload for item in box.pending()] == [b"first"]
        assert box.is_known("a")
        assert not box.is_known("b")


def test_a_delivered_id_is_refused_until_the_remember_window_passes(path: Path, clock: FakeClock) -> None:
    with Outbox(path, remember_seconds=DAY, clock=clock) as box:
        box.add(message("a"))
        assert box.delivered("a")
        clock.now += DAY - 1
    with Outbox(path, remember_seconds=DAY, clock=clock) as box:  # remembered across a restart too
        assert box.is_known("a")
        assert not box.add(message("a"))
        assert box.pending() == []
        clock.now += 2
        assert not box.is_known("a")  # the window, not prune, decides
        assert box.prune() == 0
        assert box.add(message("a"))
        assert ids(box.pending()) == ["a"]


def test_prune_forgets_old_delivered_ids_so_the_file_does_not_grow(path: Path, clock: FakeClock) -> None:
    with Outbox(path, remember_seconds=DAY, clock=clock) as box:
        box.add_many([message("old"), message("new")])
        box.delivered("old")
        clock.now += DAY / 2
        box.delivered("new")
        clock.now += DAY / 2 + 1
        box.prune()
        assert box.is_known("new")
    with sqlite3.connect(path) as db:
        remembered = db.execute("SELECT id FROM delivered").fetchall()
    db.close()
    assert remembered == [("new",)]


def test_delivered_is_idempotent_and_false_for_unknown_ids(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        box.add_many([message("a"), message("b")])
        assert box.delivered("a")
        assert not box.delivered("a")
        assert not box.delivered("never-added")  # e.g. another device's event echoed back
        assert not box.is_known("never-added")
        assert ids(box.pending()) == ["b"]
        assert box.stats().pending == 1
        assert box.is_known("a")


def test_max_messages_drops_the_oldest_counts_them_and_warns(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="edgetag.outbox"),
        Outbox(path, max_messages=3, clock=clock) as box,
    ):
        results = [box.add(message(f"m{i}")) for i in range(5)]
        assert results == [True] * 5
        assert ids(box.pending()) == ["m2", "m3", "m4"]
        assert box.stats().dropped_total == 2
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "outbox full" in warnings[0].getMessage()
    with Outbox(path, max_messages=3, clock=clock) as box:
        assert box.stats().dropped_total == 2
        assert not box.is_known("m0")  # dropped, not delivered: not remembered


def test_a_batch_larger_than_max_messages_keeps_its_newest(path: Path, clock: FakeClock) -> None:
    with Outbox(path, max_messages=3, clock=clock) as box:
        box.add(message("old"))
        assert box.add_many([message(f"m{i}") for i in range(4)]) == [True] * 4
        assert ids(box.pending()) == ["m1", "m2", "m3"]
        assert box.stats().dropped_total == 2


def test_prune_drops_messages_older_than_max_age_and_counts_them(path: Path, clock: FakeClock) -> None:
    with Outbox(path, max_age_seconds=100, clock=clock) as box:
        box.add(message("old"))
        clock.now += 60
        box.add(message("young"))
        clock.now += 50
        stats = box.stats()
        assert (stats.pending, stats.dropped_total, stats.oldest_age_seconds) == (2, 0, 110)
        assert box.prune() == 1
        assert ids(box.pending()) == ["young"]
        assert box.stats().oldest_age_seconds == 50
        assert not box.is_known("old")
    with Outbox(path, max_age_seconds=100, clock=clock) as box:
        assert box.stats().dropped_total == 1
        assert box.prune() == 0


def test_stats_of_an_empty_outbox(path: Path) -> None:
    with Outbox(path) as box:
        stats = box.stats()
    assert (stats.pending, stats.dropped_total, stats.oldest_age_seconds) == (0, 0, None)


def test_add_many_reports_each_message_and_dedupes_within_the_batch(path: Path, clock: FakeClock) -> None:
    with Outbox(path, clock=clock) as box:
        box.add(message("a"))
        assert box.add_many([message("b"), message("b"), message("a"), message("c")]) == [
            True,
            False,
            False,
            True,
        ]
        assert ids(box.pending()) == ["a", "b", "c"]


def test_add_many_is_one_transaction(path: Path, clock: FakeClock) -> None:
    bad = OutboxMessage("bad", "t", b"", qos=7)
    with Outbox(path, clock=clock) as box:
        box.add(message("before"))
        with pytest.raises(ValueError, match="qos must be 0, 1 or 2"):
            box.add_many([message("a"), message("b"), bad, message("c")])
        assert ids(box.pending()) == ["before"]  # a and b were rolled back with the rest
        assert box.add_many([message("a"), message("b")]) == [True, True]  # still usable


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edgetag.outbox import Outbox, OutboxMessage

    box = Outbox(Path(sys.argv[1]))
    for i in range(100_000):
        box.add(OutboxMessage(id=f"m{i}", topic="t", payload=str(i).encode() * 500))
        print(i, flush=True)
    """
)


def test_every_add_that_returned_survives_a_kill(path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    assert child.stdout is not None
    printed = [int(child.stdout.readline()) for _ in range(50)]
    child.send_signal(signal.SIGKILL)
    printed += [int(line) for line in child.stdout.read().split()]
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    last = printed[-1]
    assert printed == list(range(last + 1))
    with Outbox(path) as box:
        stored = box.pending(limit=1_000_000)
    # Every returned add is there; at most one more (committed, killed before it printed).
    assert len(stored) in (last + 1, last + 2)
    assert ids(stored) == [f"m{i}" for i in range(len(stored))]
    assert all(item.message.payload == str(i).encode() * 500 for i, item in enumerate(stored))


def test_threads_can_add_deliver_and_read_at_once(path: Path) -> None:
    adders, per_adder = 4, 150
    everything = {f"t{t}-{i}" for t in range(adders) for i in range(per_adder)}
    errors: list[BaseException] = []
    delivered: list[str] = []
    seen_seqs: list[int] = []
    adding_done = threading.Event()

    def add(thread: int) -> None:
        try:
            for i in range(per_adder):
                assert box.add(message(f"t{thread}-{i}"))
        except BaseException as error:
            errors.append(error)

    def deliver() -> None:
        try:
            while True:
                finished = adding_done.is_set()
                batch = box.pending(limit=20)
                if not batch and finished:
                    return
                for item in batch:
                    seen_seqs.append(item.seq)
                    assert box.delivered(item.message.id)
                    delivered.append(item.message.id)
        except BaseException as error:
            errors.append(error)

    def read() -> None:
        try:
            while not adding_done.is_set():
                stats = box.stats()
                assert 0 <= stats.pending <= len(everything)
        except BaseException as error:
            errors.append(error)

    with Outbox(path) as box:
        threads = [threading.Thread(target=add, args=(t,)) for t in range(adders)]
        helpers = [threading.Thread(target=deliver), threading.Thread(target=read)]
        for thread in threads + helpers:
            thread.start()
        for thread in threads:
            thread.join()
        adding_done.set()
        for thread in helpers:
            thread.join()
        assert errors == []
        assert sorted(delivered) == sorted(everything)
        assert seen_seqs == sorted(seen_seqs)
        assert box.stats().pending == 0
        assert box.stats().dropped_total == 0
        assert not any(box.add(message(name)) for name in sorted(everything))


def test_a_garbage_file_is_moved_aside_and_a_fresh_outbox_works(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not an SQLite database\x00\xff" * 200
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    with caplog.at_level(logging.ERROR, logger="edgetag.outbox"), Outbox(path, clock=clock) as box:
        assert box.pending() == []
        assert box.add(message("a"))
    aside = path.with_name(f"outbox.db.corrupt-{int(clock.now)}")
    assert aside.read_bytes() == garbage
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "corrupt" in errors[0]
    assert str(aside) in errors[0]
    assert "lost" in errors[0]
    with Outbox(path, clock=clock) as box:
        assert ids(box.pending()) == ["a"]


def test_a_database_with_damaged_pages_is_moved_aside(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox(path, clock=clock) as box:
        box.add_many([message(f"m{i}", b"x" * 2000) for i in range(100)])
    assert not Path(f"{path}-wal").exists()  # checkpointed into the main file on close
    data = bytearray(path.read_bytes())
    data[8192:40960] = b"\xa5" * (40960 - 8192)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="edgetag.outbox"), Outbox(path, clock=clock) as box:
        assert box.stats().pending == 0
        assert box.add(message("m0"))
    assert path.with_name(f"outbox.db.corrupt-{int(clock.now)}").read_bytes() == bytes(data)
    assert any("corrupt" in record.getMessage() for record in caplog.records)


def test_a_database_that_fails_the_integrity_check_is_moved_aside(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Outbox(path, clock=clock) as box:
        box.add(message("a"))
    with sqlite3.connect(path) as db:  # damage that opens fine: a NOT NULL column every row lacks
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'created REAL NOT NULL',"
            " 'created REAL NOT NULL, extra TEXT NOT NULL') WHERE name = 'pending'"
        )
    db.close()
    with caplog.at_level(logging.ERROR, logger="edgetag.outbox"), Outbox(path, clock=clock) as box:
        assert box.pending() == []
    assert path.with_name(f"outbox.db.corrupt-{int(clock.now)}").is_file()
    assert any("value in pending.extra" in record.getMessage() for record in caplog.records)


def test_an_uncreatable_location_raises_outbox_error_naming_the_path(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "afile"
    not_a_folder.write_text("I am a file\n", encoding="utf-8")
    target = not_a_folder / "outbox.db"
    with pytest.raises(OutboxError) as raised:
        Outbox(target)
    assert str(target) in str(raised.value)
    assert isinstance(raised.value, EdgetagError)
    assert not_a_folder.read_text(encoding="utf-8") == "I am a file\n"


def test_a_path_that_is_a_folder_raises_and_is_not_moved_aside(tmp_path: Path) -> None:
    folder = tmp_path / "outbox.db"
    (folder / "keep").mkdir(parents=True)
    with pytest.raises(OutboxError, match="cannot open the outbox") as raised:
        Outbox(folder)
    assert str(folder) in str(raised.value)
    assert (folder / "keep").is_dir()
    assert list(tmp_path.iterdir()) == [folder]


def test_a_newer_schema_is_refused_not_overwritten(path: Path) -> None:
    Outbox(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(OutboxError, match="schema version 99"):
        Outbox(path)
    assert list(path.parent.glob("*.corrupt-*")) == []


def test_using_a_closed_outbox_raises_outbox_error(path: Path) -> None:
    box = Outbox(path)
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.add(message("a"))


def test_a_full_outbox_drops_notices_then_photo_errors_and_never_an_event_for_them(path: Path) -> None:
    with Outbox(path, max_messages=4) as outbox:
        outbox.add(OutboxMessage("event-1", "t", b"1"))
        outbox.add(OutboxMessage("event-2", "t", b"2"))
        outbox.add(OutboxMessage("photo-error", "e", b"p", priority=Priority.PHOTO_ERROR))
        for number in range(50):  # a folder that cannot be read, reported again and again
            outbox.add(OutboxMessage(f"notice-{number}", "e", b"n", priority=Priority.NOTICE))
        outbox.add(OutboxMessage("photo-error-2", "e", b"p", priority=Priority.PHOTO_ERROR))
        ids = [stored.message.id for stored in outbox.pending()]
        assert ids == ["event-1", "event-2", "photo-error", "photo-error-2"]
        outbox.add(OutboxMessage("event-3", "t", b"3"))
        outbox.add(OutboxMessage("event-4", "t", b"4"))
        assert [stored.message.id for stored in outbox.pending()] == [f"event-{n}" for n in range(1, 5)]
        assert [stored.message.priority for stored in outbox.pending()] == [Priority.EVENT] * 4
        outbox.add(OutboxMessage("event-5", "t", b"5"))  # only events left: the oldest event goes
        assert [stored.message.id for stored in outbox.pending()] == [f"event-{n}" for n in range(2, 6)]
        assert outbox.stats().dropped_total == 50 + 2 + 1


def test_an_outbox_of_schema_1_is_migrated_and_keeps_its_events(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:  # the file edgetag 0.x (schema 1) wrote
        db.executescript(
            "CREATE TABLE pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
            " properties TEXT NOT NULL, created REAL NOT NULL);"
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', 1), ('dropped_total', 3);"
            "INSERT INTO pending (id, topic, payload, qos, retain, properties, created)"
            " VALUES ('old-event', 't', x'7b7d', 1, 0, '{}', 1.0);"
        )
    db.close()
    with Outbox(path) as outbox:
        [stored] = outbox.pending()
        assert (stored.message.id, stored.message.priority) == ("old-event", Priority.EVENT)
        assert outbox.stats().dropped_total == 3
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (2,)
    db.close()
