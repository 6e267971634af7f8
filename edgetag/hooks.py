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
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgetag.config import HookConfig
from edgetag.events import TagEvent
from edgetag.topics import slug

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int, bool], None]
"""topic, payload, qos, retain (edgetag's MQTT link)."""

MAX_REASON = 200
"""Characters of a failing program's last stderr line that reach the log."""

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
        self._thread: threading.Thread | None = None
        self._fired = self._failed = self._dropped = self._skipped = 0

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError("hooks already started")
        self._thread = threading.Thread(target=self._work, name="edgetag-hooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Let the running action finish (up to `timeout`), drop the queued ones, end the worker."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # if full, the worker sees `_stopping` after its action
            self._queue.put_nowait(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
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
            reason = run_program(rule, event)
            if reason is not None:
                log.warning("hook %s: %s failed: %s", rule.name, rule.run[0], reason)
                ok = False
        return ok


def run_program(rule: HookConfig, event: TagEvent) -> str | None:
    """Run a rule's program with the event JSON on stdin; None if it succeeded, else why it failed."""
    assert rule.run is not None
    env = {
        **os.environ,
        "EDGETAG_EVENT_ID": event.id,
        "EDGETAG_SOURCE": event.source,
        "EDGETAG_SENTENCE": event.result.sentence,
        "EDGETAG_CONCEPT": rule.concept,
    }
    try:
        done = subprocess.run(
            rule.run,
            input=event.to_json(),
            timeout=rule.timeout_seconds,
            capture_output=True,
            check=False,
            shell=False,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {rule.timeout_seconds:g} s (killed)"
    except OSError as error:
        return f"cannot start it: {error.strerror or error}"
    if done.returncode != 0:
        status = f"exit status {done.returncode}" if done.returncode > 0 else f"signal {-done.returncode}"
        last = last_line(done.stderr)
        return f"{status}: {last}" if last else status
    return None


def last_line(output: bytes, limit: int = MAX_REASON) -> str:
    """The last non-empty line of a program's output, shortened for a log line."""
    lines = output.decode("utf-8", errors="replace").strip().splitlines()
    line = lines[-1].strip() if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
