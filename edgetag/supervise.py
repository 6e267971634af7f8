"""Long-lived threads that survive their work's exceptions, and stop the watchdog if they die anyway.

Every long-lived thread of the daemon (the MQTT connect and publish loops, statistics, pruning) is a
loop of turns. One turn that raises (a full disk, a broker answering nonsense) must cost that turn,
not the thread: a thread that died silently left the watchdog pinging and nothing reconnecting. Here
an exception is logged (once while it repeats), the thread waits a little and goes on. A thread
that ends for any other reason than `stopping` keeps its last heartbeat, so the watchdog sees it
fall silent and systemd restarts edgetag.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edgetag.watchdog import Heartbeats

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


def start_supervised(
    name: str,
    turn: Callable[[], None],
    stopping: threading.Event,
    heartbeats: Heartbeats | None = None,
    retry_seconds: float = RETRY_SECONDS,
) -> threading.Thread:
    """Run `turn()` again and again in a daemon thread called `name` until `stopping` is set.

    With `heartbeats`, the thread beats before every turn; a turn that can last longer than a second
    must beat by itself (see MqttLink's waits).
    """

    def run() -> None:
        last_error: str | None = None
        while not stopping.is_set():
            if heartbeats is not None:
                heartbeats.beat(name)
            try:
                turn()
            except Exception as error:  # one turn's failure must never end the thread
                text = f"{type(error).__name__}: {error}"
                if text != last_error:
                    log.exception("%s: %s; carrying on", name, text)
                    last_error = text
                else:
                    log.debug("%s: again %s", name, text)
                stopping.wait(retry_seconds)
            else:
                last_error = None
        if heartbeats is not None:
            heartbeats.forget(name)  # only here: a thread that died otherwise stays stale

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
