"""The systemd watchdog, fed by the pipeline's own progress.

Each worker thread (decode, infer, store, the MQTT publisher) calls `beat()` every time round its
loop, busy or idle; none of them blocks longer than a second while idle. The watchdog thread sends
`WATCHDOG=1` only while every beat is recent. A thread stuck in a step (a decoder that never returns,
an interpreter that hangs) stops beating, the pings stop, and systemd restarts edgetag: a timer that
pinged regardless would keep a stuck daemon alive forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edgetag.notify import Notifier

log = logging.getLogger(__name__)


class Heartbeats:
    """When each worker last went round its loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def beat(self, name: str) -> None:
        with self._lock:
            self._last[name] = self._clock()

    def forget(self, name: str) -> None:
        """A worker that ended on purpose is not stuck."""
        with self._lock:
            self._last.pop(name, None)

    def stale(self, max_age: float) -> dict[str, float]:
        """Workers silent for longer than max_age, with how long."""
        now = self._clock()
        with self._lock:
            return {name: now - last for name, last in self._last.items() if now - last > max_age}


class Watchdog:
    """Pings systemd every quarter interval while no worker has been silent for half of it."""

    def __init__(self, notifier: Notifier, heartbeats: Heartbeats, interval: float) -> None:
        self.notifier, self.heartbeats, self.interval = notifier, heartbeats, interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        reported = False
        while not self._stopping.wait(self.interval / 4):
            stuck = self.heartbeats.stale(self.interval / 2)
            if not stuck:
                self.notifier.watchdog()
                reported = False
            elif not reported:
                names = ", ".join(f"{name} ({age:.0f} s)" for name, age in sorted(stuck.items()))
                log.error(
                    "no progress from %s: not telling systemd's watchdog; it will restart edgetag", names
                )
                self.notifier.status(f"stuck: no progress from {names}")
                reported = True
