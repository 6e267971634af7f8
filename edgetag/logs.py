"""Logging for a daemon: one line per event, and syslog priorities when journald reads our stderr.

systemd sets $JOURNAL_STREAM when stderr goes to the journal; then each line starts with `<N>`
(the syslog priority) and carries no timestamp (journald adds its own), so `journalctl -p warning`
works. In a terminal, lines get a timestamp and the level name instead.

Much of what is logged comes from outside: file names, topics, payload text, a hook's stderr. So the
formatters, not each call, make sure that a record is one line that cannot pass for another: control
characters in a message (newlines, carriage returns, escape sequences, Unicode line separators and
bidi overrides) are written as escapes (`\\n`, `\\x1b`, `\\u2028`), and a traceback's lines are
indented under its record.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

_UNSAFE = [
    *range(0x20),  # C0 controls: \n, \r, \t, ESC...
    *range(0x7F, 0xA0),  # DEL and the C1 controls (NEL among them)
    0x2028,  # line separator
    0x2029,  # paragraph separator
    *range(0x202A, 0x202F),  # bidi embeddings and overrides: text that reads in another order
    *range(0x2066, 0x206A),  # bidi isolates
]
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(code: int) -> str:
    char = chr(code)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


_ESCAPES = {code: _escape(code) for code in _UNSAFE}
_ESCAPES_BUT_NEWLINE = {code: text for code, text in _ESCAPES.items() if code != ord("\n")}
TRACEBACK_INDENT = "  "


def escape_controls(text: str) -> str:
    """`text` on one line, its control characters written as escapes."""
    return text.translate(_ESCAPES)


class SafeFormatter(logging.Formatter):
    """A formatter whose records cannot forge other records (see the module's docstring)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        message = record.message
        record.message = escape_controls(message)
        try:
            return super().formatMessage(record)
        finally:
            record.message = message

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        """A traceback keeps its lines, each indented: an exception's text comes from outside too."""
        lines = text.translate(_ESCAPES_BUT_NEWLINE).split("\n")
        return "\n".join(TRACEBACK_INDENT + line for line in lines)


class JournalFormatter(SafeFormatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelno, 6)
        lines = super().format(record).split("\n")
        return "\n".join(f"<{priority}>{line}" for line in lines)


def setup_logging(level: str = "info", env: Mapping[str, str] | None = None) -> None:
    env = os.environ if env is None else env
    handler = logging.StreamHandler(sys.stderr)
    if env.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("paho").setLevel(logging.WARNING)
    logging.captureWarnings(True)
