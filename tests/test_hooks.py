"""Hooks with real programs and real tag events: matching, cooldown, publish, run, failures, overflow."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from edgetag.config import HookConfig, HookPublishConfig
from edgetag.events import TagEvent
from edgetag.hooks import Hooks, HookStats, last_line, matches
from edgetag.imaging import Photo
from edgetag.models import Detection, ModelInfo
from edgetag.tagger import TagResult
from edgetag.vocabulary import Description, Tag

PERSON = Tag("person", 0.9, "people", 2)
DOG = Tag("dog", 0.6, "animal", parents=("animal",))
ROSE = Tag("rose", 0.8, "plant", parents=("flower", "plant"), said=False)
TEDDY = Tag("teddy bear", 0.7, "object", 1)
OUTDOOR = Tag("outdoor", 0.4, "scene")


def tag_event(*tags: Tag, source: str = "front-door", event_id: str = "0123456789abcdef0123") -> TagEvent:
    """A tag event built from the real result objects, as the tagger would make it."""
    people = sum(t.count or 1 for t in tags if t.group == "people")
    persons = tuple(Detection("person", 0.9, (0.1, 0.1, 0.4, 0.9)) for _ in range(people))
    result = TagResult(
        photo=Photo("door-0001.jpg", 1920, 1080, "JPEG", Image.new("RGB", (32, 18))),
        description=Description(tags, people, (), persons),
        classes=(("Labrador Retriever", 0.61),),
        models=(ModelInfo("ssdlite-person", "detector", "a" * 64, Path("ssdlite-person.tflite")),),
        timing_ms={"decode": 1.5, "detector": 4.0, "total": 9.25},
    )
    return TagEvent(event_id, "pi", source, "2026-05-01T08:00:00.000Z", result)


def rule(name: str = "door", concept: str = "person", **settings: Any) -> HookConfig:
    return HookConfig(name=name, concept=concept, **settings)


def publish_rule(name: str = "door", concept: str = "person", **settings: Any) -> HookConfig:
    return rule(
        name, concept, publish=HookPublishConfig(topic=f"home/{name}"), cooldown_seconds=0, **settings
    )


class Recorder:
    """A publish callable that records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, int, bool]] = []

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.calls.append((topic, payload, qos, retain))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(done: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Wait for the worker thread (a generous deadline that only catches a hang, not a slow machine)."""
    deadline = time.monotonic() + limit
    while not done():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def started() -> Iterator[list[Hooks]]:
    """Hooks a test starts are stopped afterwards, even when it fails."""
    running: list[Hooks] = []
    yield running
    for hooks in running:
        hooks.stop(timeout=1.0)


def start(running: list[Hooks], hooks: Hooks) -> Hooks:
    hooks.start()
    running.append(hooks)
    return hooks


# --- matching ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hook", "expected"),
    [
        (rule(), True),
        (rule(min_score=0.9), True),
        (rule(min_score=0.95), False),
        (rule(min_count=2), True),
        (rule(min_count=3), False),
        (rule(concept="dog"), True),
        (rule(concept="dog", min_count=1), True),  # a tag without a count counts as one
        (rule(concept="dog", min_count=2), False),
        (rule(concept="dog", min_score=0.61), False),
        (rule(concept="cat"), False),
        (rule(concept="teddy_bear"), True),  # as in topics
        (rule(concept="Teddy Bear"), True),
        (rule(source="front-door"), True),
        (rule(source="garden"), False),
        (rule(concept="outdoor", min_score=0.4), True),
        (rule(concept="animal"), True),  # a broader concept matches its kinds
        (rule(concept="animal", min_score=0.61), False),
        (rule(concept="rose"), False),  # not said: never matches
        (rule(concept="plant"), False),
    ],
)
def test_matches(hook: HookConfig, expected: bool) -> None:
    assert matches(hook, tag_event(PERSON, DOG, TEDDY, OUTDOOR, ROSE)) is expected


def test_an_event_without_tags_matches_nothing() -> None:
    assert not matches(rule(), tag_event())
    assert tag_event().result.sentence == "No automatic alt text available."


# --- cooldown ----------------------------------------------------------------------------------------


def test_cooldown_per_rule_with_a_fake_clock(started: list[Hooks]) -> None:
    clock, recorder = FakeClock(), Recorder()
    slow = rule("slow", publish=HookPublishConfig(topic="home/slow"), cooldown_seconds=60)
    eager = rule("eager", publish=HookPublishConfig(topic="home/eager"), cooldown_seconds=0)
    hooks = Hooks([slow, eager], recorder, clock=clock)
    hooks.offer(tag_event(PERSON))  # both fire
    clock.now += 30
    hooks.offer(tag_event(PERSON))  # eager only
    clock.now += 29.9
    hooks.offer(tag_event(PERSON))  # eager only: 59.9 s since slow fired
    clock.now += 0.1
    hooks.offer(tag_event(PERSON))  # both again
    hooks.offer(tag_event(DOG))  # no match: neither fires nor counts as skipped
    assert hooks.stats().skipped_cooldown == 2
    start(started, hooks)
    wait_until(lambda: hooks.stats().fired == 6, "six actions")
    topics = [topic for topic, *_ in recorder.calls]
    assert topics.count("home/slow") == 2
    assert topics.count("home/eager") == 4
    assert hooks.stats() == HookStats(fired=6, failed=0, dropped=0, skipped_cooldown=2)


# --- publish -----------------------------------------------------------------------------------------


def test_publish_action_sends_the_event_json_or_the_given_payload(started: list[Hooks]) -> None:
    recorder = Recorder()
    whole = rule("whole", publish=HookPublishConfig(topic="home/door/person"), cooldown_seconds=0)
    ding = rule(
        "ding",
        publish=HookPublishConfig(topic="home/bell", payload="ding", qos=0, retain=True),
        cooldown_seconds=0,
    )
    hooks = start(started, Hooks([whole, ding], recorder))
    event = tag_event(PERSON, DOG)
    hooks.offer(event)
    wait_until(lambda: len(recorder.calls) == 2, "two publishes")
    assert recorder.calls == [
        ("home/door/person", event.to_json(), 1, False),
        ("home/bell", b"ding", 0, True),
    ]
    sent = json.loads(recorder.calls[0][1])
    assert sent["id"] == event.id
    assert sent["sentence"] == "Image may contain: 2 people and dog"


def test_a_publish_that_raises_is_counted_and_the_worker_goes_on(
    started: list[Hooks], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()

    def broken(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if topic == "home/broken":
            raise ConnectionError("not connected")
        recorder(topic, payload, qos, retain)

    caplog.set_level(logging.INFO, logger="edgetag.hooks")
    hooks = start(started, Hooks([publish_rule("broken"), publish_rule("fine")], broken))
    hooks.offer(tag_event(PERSON))
    wait_until(lambda: hooks.stats().fired == 2, "both actions")
    assert hooks.stats().failed == 1
    assert [topic for topic, *_ in recorder.calls] == ["home/fine"]
    assert "hook broken: publish to home/broken failed: not connected" in caplog.text


# --- run ---------------------------------------------------------------------------------------------

WRITE_INPUT = """
import json, os, sys
with open(sys.argv[1], "w", encoding="utf-8") as out:
    json.dump({
        "stdin": sys.stdin.read(),
        "argv": sys.argv[2:],
        "env": {k: v for k, v in os.environ.items() if k.startswith("EDGETAG_")},
    }, out)
"""


def test_run_action_gets_the_event_on_stdin_and_in_its_environment(
    started: list[Hooks], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGETAG_TEST_INHERITED", "yes")
    out = tmp_path / "received.json"
    hostile = "$(touch pwned); echo `id` > pwned && *"
    notify = rule("notify", run=[sys.executable, "-c", WRITE_INPUT, str(out), hostile], cooldown_seconds=0)
    hooks = start(started, Hooks([notify], Recorder()))
    event = tag_event(PERSON, TEDDY)
    hooks.offer(event)
    wait_until(lambda: hooks.stats().fired == 1, "the program")
    assert hooks.stats().failed == 0
    received = json.loads(out.read_text(encoding="utf-8"))
    assert received["stdin"].encode() == event.to_json()
    assert received["argv"] == [hostile]  # one argument, as written: no shell
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert received["env"] == {
        "EDGETAG_TEST_INHERITED": "yes",
        "EDGETAG_EVENT_ID": event.id,
        "EDGETAG_SOURCE": "front-door",
        "EDGETAG_SENTENCE": "Image may contain: 2 people and teddy bear",
        "EDGETAG_CONCEPT": "person",
    }


def test_failing_programs_are_counted_logged_and_the_worker_goes_on(
    started: list[Hooks], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "after.json"
    python = sys.executable
    exits = [
        python,
        "-c",
        "import sys; print('first line', file=sys.stderr); sys.exit('bad token: ' + 'x' * 500)",
    ]
    rules = [
        rule("exits", run=exits, cooldown_seconds=0),
        rule(
            "sleeps",
            run=[python, "-c", "import time; time.sleep(5)"],
            timeout_seconds=0.5,
            cooldown_seconds=0,
        ),
        rule("missing", run=[str(tmp_path / "no-such-program")], cooldown_seconds=0),
        rule("after", run=[python, "-c", WRITE_INPUT, str(out)], cooldown_seconds=0),
    ]
    caplog.set_level(logging.INFO, logger="edgetag.hooks")
    hooks = start(started, Hooks(rules, Recorder()))
    event = tag_event(PERSON)
    hooks.offer(event)
    wait_until(lambda: hooks.stats().fired == 4, "four programs")
    assert hooks.stats() == HookStats(fired=4, failed=3, dropped=0, skipped_cooldown=0)
    assert json.loads(out.read_text(encoding="utf-8"))["env"]["EDGETAG_EVENT_ID"] == event.id
    failures = {
        r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    }
    assert set(failures) == {"hook exits", "hook sleeps", "hook missing"}
    assert "exit status 1: bad token: xxx" in failures["hook exits"]
    assert "first line" not in failures["hook exits"]
    assert len(failures["hook exits"]) < 400  # stderr's last line, truncated
    assert "timed out after 0.5 s" in failures["hook sleeps"]
    assert "no-such-program" in failures["hook missing"]
    assert "cannot start" in failures["hook missing"]
    assert '"tags"' not in caplog.text  # never the event JSON


# --- queue, stop, never raise ------------------------------------------------------------------------


class Blocker:
    """A publish callable whose first call blocks until released: a worker stuck on a slow action."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.calls.append(json.loads(payload)["id"])
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(30), "never released"


def test_a_full_queue_drops_and_counts(started: list[Hooks], caplog: pytest.LogCaptureFixture) -> None:
    blocker = Blocker()
    hooks = start(started, Hooks([publish_rule()], blocker, max_queue=2))
    hooks.offer(tag_event(PERSON, event_id="first"))
    assert blocker.entered.wait(30), "the worker never took the first action"
    for number in range(5):
        hooks.offer(tag_event(PERSON, event_id=f"queued-{number}"))  # returns at once: the worker is stuck
    assert hooks.stats().dropped == 3
    assert "queue full" in caplog.text
    blocker.release.set()
    wait_until(lambda: hooks.stats().fired == 3, "the queued actions")
    assert blocker.calls == ["first", "queued-0", "queued-1"]
    assert hooks.stats() == HookStats(fired=3, failed=0, dropped=3, skipped_cooldown=0)


def test_stop_returns_while_an_action_runs_and_drops_the_queue() -> None:
    blocker = Blocker()
    hooks = Hooks([publish_rule()], blocker)
    hooks.start()
    hooks.offer(tag_event(PERSON, event_id="first"))
    assert blocker.entered.wait(30)
    hooks.offer(tag_event(PERSON, event_id="queued-0"))
    hooks.offer(tag_event(PERSON, event_id="queued-1"))
    hooks.stop(timeout=0.1)  # returns although the first action is still running
    hooks.offer(tag_event(PERSON, event_id="too-late"))
    blocker.release.set()
    wait_until(lambda: hooks.stats().dropped == 3, "the queued actions to be dropped")
    assert blocker.calls == ["first"]
    assert hooks.stats().fired == 1


def test_stop_an_idle_worker() -> None:
    recorder = Recorder()
    before = set(threading.enumerate())
    hooks = Hooks([publish_rule()], recorder)
    hooks.start()
    hooks.stop()
    hooks.offer(tag_event(PERSON))
    assert recorder.calls == []
    assert hooks.stats().dropped == 1
    assert [t for t in threading.enumerate() if t not in before and t.name == "edgetag-hooks"] == []


def test_offer_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken_clock() -> float:
        raise RuntimeError("clock broke")

    hooks = Hooks([publish_rule()], Recorder(), clock=broken_clock)
    hooks.offer(tag_event(PERSON))
    assert "could not handle event" in caplog.text


def test_last_line() -> None:
    assert last_line(b"warming up\nTraceback...\nValueError: bad token\n\n") == "ValueError: bad token"
    assert last_line(b"") == ""
    assert last_line(b"\xff\xfe broken bytes") == "\ufffd\ufffd broken bytes"
    assert last_line(b"x" * 1000, limit=50) == "x" * 47 + "..."


# --- output: streamed, never gathered ----------------------------------------------------------------

FLOOD = """
import sys
line = b"x" * 1023 + b"\\n"
block = line * 1024  # 1 MiB
for _ in range({megabytes}):
    sys.stdout.buffer.write(block)
    sys.stderr.buffer.write(block)
sys.stderr.buffer.write(b"ValueError: the last words\\n")
sys.exit(3)
"""

RUN_FLOOD = """
import logging, resource, sys
from edgetag.hooks import Hooks
from tests.test_hooks import FLOOD, Recorder, rule, tag_event, PERSON, wait_until

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
hook = rule("flood", run=[sys.executable, "-c", FLOOD.format(megabytes=int(sys.argv[1]))], cooldown_seconds=0)
hooks = Hooks([hook], Recorder())
hooks.offer(tag_event(PERSON))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hooks.start()
wait_until(lambda: hooks.stats().fired == 1, "the flood", limit=120)
hooks.stop()
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(f"failed={hooks.stats().failed} grown_kib={grown}")
"""


def test_a_program_that_prints_hundreds_of_megabytes_costs_no_memory() -> None:
    """200 MiB on stdout and 200 MiB on stderr: the peak memory of the process running the hook
    hardly moves, and the failure is still reported with stderr's last line."""
    run = subprocess.run(
        [sys.executable, "-c", RUN_FLOOD, "200"],
        capture_output=True, text=True, timeout=180, check=False, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    *logged, figures = lines
    counts = dict(item.split("=") for item in figures.split())
    assert counts["failed"] == "1"
    assert int(counts["grown_kib"]) < 32 * 1024, f"the hook runner grew by {counts['grown_kib']} KiB"
    (failure,) = [line for line in logged if line.startswith("hook flood:")]
    assert "exit status 3: ValueError: the last words" in failure
    assert "(200.0 MiB on stderr, only the last 64 KiB kept)" in failure


# --- processes: none outlives its hook ---------------------------------------------------------------

LEAVES_A_CHILD = 'echo $$ > "$1"; sleep 60 & echo $! >> "$1"; sleep {seconds}'
"""A program that starts a background child: it writes its own pid (its group's id) and the child's."""


def living(pids: list[int]) -> list[int]:
    """The pids that are still processes (a zombie waiting for its parent is not one)."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive


def group_members(group: int) -> list[int]:
    """Every living process whose process group is `group`."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat_file.parent.name))
    return members


def read_pids(file: Path) -> list[int]:
    wait_until(lambda: file.exists() and len(file.read_text().split()) == 2, "the program's pids")
    return [int(pid) for pid in file.read_text().split()]


@pytest.mark.parametrize(("seconds", "timeout"), [(60, 1.0), (0, 30.0)])
def test_a_program_leaves_no_process_behind(
    started: list[Hooks], tmp_path: Path, caplog: pytest.LogCaptureFixture, seconds: int, timeout: float
) -> None:
    """Timed out (sh and its background child are killed), or exited at once leaving a child."""
    pids = tmp_path / "pids"
    script = LEAVES_A_CHILD.format(seconds=seconds)
    hook = rule(
        "child", run=["sh", "-c", script, "sh", str(pids)], timeout_seconds=timeout, cooldown_seconds=0
    )
    caplog.set_level(logging.INFO, logger="edgetag.hooks")
    hooks = start(started, Hooks([hook], Recorder()))
    hooks.offer(tag_event(PERSON))
    group, child = read_pids(pids)
    assert living([group, child]) in ([group, child], [child])
    wait_until(lambda: hooks.stats().fired == 1, "the hook to end", limit=15)
    wait_until(lambda: group_members(group) == [], "the group to be gone", limit=5)  # SIGKILL is not instant
    assert living([group, child]) == []
    if seconds:
        assert hooks.stats().failed == 1
        assert "timed out after 1 s (killed)" in caplog.text
    else:
        assert hooks.stats().failed == 0
        assert "exited leaving processes running; killed them" in caplog.text


def test_stop_kills_a_running_program_and_its_children(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pids = tmp_path / "pids"
    script = LEAVES_A_CHILD.format(seconds=60)
    hook = rule("child", run=["sh", "-c", script, "sh", str(pids)], timeout_seconds=120, cooldown_seconds=0)
    caplog.set_level(logging.INFO, logger="edgetag.hooks")
    hooks = Hooks([hook], Recorder())
    hooks.start()
    hooks.offer(tag_event(PERSON))
    group, child = read_pids(pids)
    hooks.stop(timeout=0.2)
    assert hooks.stats().fired == 1 and hooks.stats().failed == 1
    wait_until(lambda: group_members(group) == [], "the group to be gone", limit=5)
    assert living([group, child]) == []
    assert "edgetag is stopping (killed)" in caplog.text
    assert "leaving it behind" not in caplog.text
