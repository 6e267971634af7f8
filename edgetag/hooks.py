"""Hooks: when a photo has a concept, publish a message or run a program, without slowing tagging.

A rule (`HookConfig`) matches a tag event by concept, score, count and source; a per-rule cooldown
keeps a person standing at the door from firing it on every photo. Matching happens on the tagging
thread and only queues; one worker thread runs the actions in order, so a slow or broken hook can
delay other hooks but never tagging. The queue is bounded: when it is full, new actions are dropped
and counted. Hooks are best effort and not durable: actions still queued at stop are dropped too.

Programs are started from an argument list, never through a shell, with the event JSON on stdin
(words, numbers and boxes: never image data) and a few EDGETAG_* variables added to the environment.
Logs name the hook and the reason it failed; of the event they show the id and sentence only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from edgetag.config import HookConfig
from edgetag.events import TagEvent
from edgetag.topics import slug

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]
"""topic, payload, qos, retain (edgetag's MQTT link)."""

MAX_REASON = 200
"""Characters of a failing program's last stderr line that reach the log."""
KEEP_STDERR = 64 * 1024
"""Bytes of a program's standard error kept (the last ones); the rest is read and discarded."""
PIPE_CHUNK = 64 * 1024
POLL_SECONDS = 0.05
"""How often a running program is checked for having exited."""
DRAIN_SECONDS = 1.0
"""How long the rest of stderr is read once the program has exited."""

_STOP = None


@dataclass(frozen=True)
class HookStats:
    """Counters since start: `fired` hooks ran (`failed` of them did not work), `dropped` never ran
    (queue full, or still queued at stop), `skipped_cooldown` matched during their cooldown.
    """

    fired: int
    failed: int
    dropped: int
    skipped_cooldown: int


def matches(rule: HookConfig, event: TagEvent) -> bool:
    """Whether a rule applies to an event: its source (if the rule names one), concept, score and count."""
    return _matches(rule, event.source, event.tags)


def _matches(rule: HookConfig, source: str, tags: Sequence[dict[str, Any]]) -> bool:
    """`tags` as in the event JSON. Concepts compare as in topics: "teddy bear" is "teddy_bear".

    A rule for a broader concept matches its kinds ("animal" matches a "dog" tag, through its
    parents). Tags that are not said never match. A tag without a count counts as one.
    """
    if rule.source is not None and rule.source != source:
        return False
    wanted = slug(rule.concept)
    return any(
        wanted in {slug(tag["concept"]), *(slug(p) for p in tag.get("parents", ()))}
        and tag.get("said", True)
        and tag["score"] >= rule.min_score
        and tag.get("count", 1) >= rule.min_count
        for tag in tags
    )


class Hooks:
    """The rules, their cooldowns, the action queue and the worker thread that empties it."""

    def __init__(
        self,
        rules: Sequence[HookConfig],
        publish: Publish,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_queue: int = 100,
    ) -> None:
        self.rules = tuple(rules)
        self.publish = publish
        self.clock = clock
        for rule in self.rules:
            if rule.publish is None and rule.run is None:
                log.warning("hook %s has neither publish nor run: it does nothing", rule.name)
        self._queue: queue.Queue[tuple[HookConfig, TagEvent] | None] = queue.Queue(maxsize=max_queue)
        self._last_fired: dict[int, float] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cancel = threading.Event()
        """Set when stop() gives up waiting: the running program is killed."""
        self._thread: threading.Thread | None = None
        self._fired = self._failed = self._dropped = self._skipped = 0

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError("hooks already started")
        self._thread = threading.Thread(target=self._work, name="edgetag-hooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the running action finish (up to `timeout`), drop the queued ones, end the worker.

        A program still running then is killed with all its processes.
        """
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # if full, the worker sees `_stopping` after its action
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._cancel.set()
                self._thread.join(POLL_SECONDS * 4 + DRAIN_SECONDS)
            if self._thread.is_alive():
                log.warning("a hook is still running after %.1f s; leaving it behind", timeout)

    def offer(self, event: TagEvent) -> None:
        """Queue the actions of the rules this event matches. Never blocks, never raises."""
        try:
            self._offer(event)
        except Exception:
            log.exception("hooks: could not handle event %s", event.id)

    def stats(self) -> HookStats:
        with self._lock:
            return HookStats(self._fired, self._failed, self._dropped, self._skipped)

    def _offer(self, event: TagEvent) -> None:
        tags = event.tags
        for number, rule in enumerate(self.rules):
            has_action = rule.publish is not None or rule.run is not None
            if has_action and _matches(rule, event.source, tags):
                with self._lock:
                    self._queue_action(number, rule, event)

    def _queue_action(self, number: int, rule: HookConfig, event: TagEvent) -> None:
        """Apply the cooldown and queue one action; the caller holds the lock."""
        now = self.clock()
        last = self._last_fired.get(number)
        if last is not None and now - last < rule.cooldown_seconds:
            self._skipped += 1
            return
        if self._stopping.is_set():
            self._dropped += 1
            return
        try:
            self._queue.put_nowait((rule, event))
        except queue.Full:
            self._dropped += 1
            log.warning(
                "hook %s: queue full (%d actions), dropped event %s", rule.name, self._queue.maxsize, event.id
            )
            return
        self._last_fired[number] = now

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP or self._stopping.is_set():
                self._drop_queued(0 if item is _STOP else 1)
                return
            rule, event = item
            try:
                ok = self._run_actions(rule, event)
            except Exception:  # a bug must cost one action, not every hook from now on
                log.exception("hook %s: failed", rule.name)
                ok = False
            with self._lock:
                self._fired += 1
                self._failed += 0 if ok else 1

    def _drop_queued(self, dropped: int) -> None:
        """Count and discard what is still queued at stop (`dropped`: already taken off the queue)."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1 if item is not _STOP else 0
        if dropped:
            log.info("hooks stopped: %d queued actions dropped", dropped)
            with self._lock:
                self._dropped += dropped

    def _run_actions(self, rule: HookConfig, event: TagEvent) -> bool:
        """Run a rule's publish and then its program; whether both (those it has) worked."""
        log.debug("hook %s: event %s (%s)", rule.name, event.id, event.result.sentence)
        ok = True
        if rule.publish is not None:
            target = rule.publish
            payload = target.payload.encode("utf-8") if target.payload is not None else event.to_json()
            try:
                self.publish(target.topic, payload, target.qos, target.retain)
            except Exception as error:  # noqa: BLE001  (whatever the link raises must not end the worker)
                log.warning(
                    "hook %s: publish to %s failed: %s",
                    rule.name,
                    target.topic,
                    str(error) or type(error).__name__,
                )
                ok = False
        if rule.run is not None:
            reason = run_program(rule, event, self._cancel)
            if reason is not None:
                log.warning("hook %s: %s failed: %s", rule.name, rule.run[0], reason)
                ok = False
        return ok


def run_program(rule: HookConfig, event: TagEvent, cancel: threading.Event | None = None) -> str | None:
    """Run a rule's program with the event JSON on stdin; None if it succeeded, else why it failed.

    Its output is streamed, never gathered: standard output goes to /dev/null and only the last
    KEEP_STDERR bytes of standard error are kept, so a program that prints gigabytes costs no memory.
    It starts in a session (and process group) of its own; when it ends, times out, or `cancel` is
    set, the whole group is killed, so nothing it started in the background outlives it.
    """
    assert rule.run is not None
    env = {
        **os.environ,
        "EDGETAG_EVENT_ID": event.id,
        "EDGETAG_SOURCE": event.source,
        "EDGETAG_SENTENCE": event.result.sentence,
        "EDGETAG_CONCEPT": rule.concept,
    }
    try:
        process = subprocess.Popen(
            rule.run,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            shell=False,
            env=env,
            start_new_session=True,
        )
    except OSError as error:
        return f"cannot start it: {error.strerror or error}"
    stderr = Tail(KEEP_STDERR)
    try:
        why = _communicate(process, event.to_json(), rule.timeout_seconds, stderr, cancel)
    finally:
        left_behind = _kill_group(process)
        _drain(process, stderr)
        process.wait()
    if why is not None:
        return why
    if left_behind:
        log.warning("hook %s: %s exited leaving processes running; killed them", rule.name, rule.run[0])
    if process.returncode != 0:
        code = process.returncode
        status = f"exit status {code}" if code > 0 else f"signal {-code}"
        last = last_line(bytes(stderr.data))
        if stderr.dropped:
            last = f"{last} ({_size(stderr.total)} on stderr, only the last {_size(len(stderr.data))} kept)"
        return f"{status}: {last}" if last else status
    return None


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    return f"{count / 1024:.0f} KiB" if count < 1024 * 1024 else f"{count / 1024 / 1024:.1f} MiB"


class Tail:
    """The last `limit` bytes of a stream, and how many came in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    @property
    def dropped(self) -> int:
        return self.total - len(self.data)


def _kill_group(process: subprocess.Popen[bytes]) -> bool:
    """SIGKILL every process of the program's group; whether any was left after the program exited.

    Once the program is reaped its id cannot be reused while its group has members, so the group
    signalled is the program's own.
    """
    exited = process.poll() is not None
    try:
        if exited:
            os.killpg(process.pid, 0)  # only what it left behind: the program itself is reaped
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return exited


def _communicate(
    process: subprocess.Popen[bytes],
    data: bytes,
    timeout: float,
    stderr: Tail,
    cancel: threading.Event | None,
) -> str | None:
    """Feed stdin and read stderr until the program exits (None), `timeout` passes or `cancel` is set
    (why it is to be killed).

    One thread, non-blocking pipes: a program that never reads its stdin, or keeps writing, cannot
    block edgetag past the timeout.
    """
    assert process.stdin is not None and process.stderr is not None
    deadline = time.monotonic() + timeout
    pending = memoryview(data)
    with selectors.DefaultSelector() as selector:
        os.set_blocking(process.stdin.fileno(), False)
        os.set_blocking(process.stderr.fileno(), False)
        selector.register(process.stdin, selectors.EVENT_WRITE)
        selector.register(process.stderr, selectors.EVENT_READ)
        while process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timed out after {timeout:g} s (killed)"
            if cancel is not None and cancel.is_set():
                return "edgetag is stopping (killed)"
            for key, _ in selector.select(min(remaining, POLL_SECONDS)):
                if key.fileobj is process.stdin:
                    pending = _feed(process.stdin, pending)
                    if not pending:
                        selector.unregister(process.stdin)
                        _close(process.stdin)
                elif not _read(process.stderr, stderr):
                    selector.unregister(process.stderr)
    _close(process.stdin)
    return None


def _feed(pipe: IO[bytes], pending: memoryview) -> memoryview:
    """Write what the pipe takes now; what is left (empty once written, or the program gone)."""
    try:
        written = os.write(pipe.fileno(), pending[:PIPE_CHUNK])
    except BlockingIOError:
        return pending
    except OSError:  # BrokenPipeError: the program does not read its input, which is its right
        return pending[:0]
    return pending[written:]


def _read(pipe: IO[bytes], tail: Tail) -> bool:
    """Read what is there into `tail`; False at end of stream."""
    try:
        chunk = os.read(pipe.fileno(), PIPE_CHUNK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    if chunk:
        tail.add(chunk)
    return bool(chunk)


def _drain(process: subprocess.Popen[bytes], stderr: Tail) -> None:
    """After the program ended: what is left in its stderr, for at most DRAIN_SECONDS.

    A process it left behind may hold the pipe open; edgetag does not wait for that one.
    """
    assert process.stderr is not None
    deadline = time.monotonic() + DRAIN_SECONDS
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(remaining) and not _read(process.stderr, stderr):
                break
    _close(process.stderr)


def _close(pipe: IO[bytes] | None) -> None:
    if pipe is not None:
        with contextlib.suppress(OSError):
            pipe.close()


def last_line(output: bytes, limit: int = MAX_REASON) -> str:
    """The last non-empty line of a program's output, shortened for a log line."""
    lines = output.decode("utf-8", errors="replace").strip().splitlines()
    line = lines[-1].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
