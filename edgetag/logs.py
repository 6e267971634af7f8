"""Logging for a daemon: one line per event, and syslog priorities when journald reads our stderr.

systemd sets $JOURNAL_STREAM when stderr goes to the journal; then each line starts with `<N>`
(the syslog priority) and carries no timestamp (journald adds its own), so `journalctl -p warning`
works. In a terminal, lines get a timestamp and the level name instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6)
        lines = super().format(record).splitlines() or [""]
        return "\n".join(f"<{priority}>{line}" for line in lines)


def setup_logging(level: str = "info", env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    if env.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("paho").setLevel(logging.WARNING)
    logging.captureWarnings(True)
