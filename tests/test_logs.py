"""The log formatters: whatever a message carries from outside, one record stays one honest line."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from edgetag.logs import escape_controls, setup_logging

HOSTILE = "a\nFAKE 1\r\nFAKE 2\x1b[2J\x00\x7f\x85\u2028FAKE 3\u2029\u202eevil\u2066\ttab"
ESCAPED = "a\\nFAKE 1\\r\\nFAKE 2\\x1b[2J\\x00\\x7f\\x85\\u2028FAKE 3\\u2029\\u202eevil\\u2066\\ttab"


def test_escape_controls() -> None:
    assert escape_controls(HOSTILE) == ESCAPED
    assert escape_controls("tagged inbox/Café 🐈‍⬛ — ok.jpg") == "tagged inbox/Café 🐈‍⬛ — ok.jpg"


@pytest.mark.parametrize("env", [{}, {"JOURNAL_STREAM": "8:12345"}])
def test_a_record_cannot_forge_another(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Under journald and in a terminal: the message on one line, a traceback's lines indented."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("info", env=env)
    logger = logging.getLogger("edgetag.test")
    logger.warning("could not tag %s: %s", f"inbox/{HOSTILE}.jpg", "not an image")
    try:
        raise ValueError(f"bad name {HOSTILE}")
    except ValueError:
        logger.exception("failed on %s", "x\nFAKE 4")
    lines = stream.getvalue().split("\n")
    prefix = "<4>" if env else ""
    assert lines[0].startswith(prefix) and lines[0].endswith(
        f"could not tag inbox/{ESCAPED}.jpg: not an image"
    )
    assert lines[1].endswith("failed on x\\nFAKE 4")
    traceback = [line.removeprefix("<3>") for line in lines[2:] if line]
    assert traceback[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") for line in traceback)
    assert any("FAKE 1" in line for line in traceback)  # an exception's own newlines stay, indented
    assert not any(line.lstrip().startswith("FAKE") and not line.startswith("  ") for line in traceback)
    assert not {"\r", "\x1b", "\x00", "\x85", "\u2028", "\u2029", "\u202e"} & set(stream.getvalue())
    setup_logging("warning", env={})  # leave the root logger as other tests expect it
