"""Counters for the periodic stats message: throughput, latency, errors, queues, the outbox."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

WINDOW_SECONDS = 60.0
LATENCIES_KEPT = 500


class Stats:
    """Thread-safe counters; `snapshot()` makes the JSON-ready dict published on <prefix>/<device>/stats."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._recent: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=LATENCIES_KEPT)
        self.photos_total = 0
        self.errors_total = 0
        self.duplicates_total = 0

    def tagged(self, latency_seconds: float) -> None:
        with self._lock:
            self.photos_total += 1
            self._recent.append(self._clock())
            self._latencies.append(latency_seconds * 1000)

    def failed(self) -> None:
        with self._lock:
            self.errors_total += 1

    def duplicate(self) -> None:
        with self._lock:
            self.duplicates_total += 1

    def photos_per_minute(self) -> int:
        """Photos tagged in the last minute."""
        with self._lock:
            horizon = self._clock() - WINDOW_SECONDS
            while self._recent and self._recent[0] < horizon:
                self._recent.popleft()
            return len(self._recent)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        per_minute = self.photos_per_minute()
        with self._lock:
            latencies = sorted(self._latencies)
            data: dict[str, Any] = {
                "uptime_seconds": round(self._clock() - self._started),
                "photos_total": self.photos_total,
                "photos_per_minute": per_minute,
                "errors_total": self.errors_total,
                "duplicates_total": self.duplicates_total,
                "latency_ms": {
                    "median": round(statistics.median(latencies), 1) if latencies else None,
                    "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
                },
            }
        data.update(extra)
        return data
