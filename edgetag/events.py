"""The messages the daemon publishes about photos: one tag event per photo, or one error event.

Event ids are stable: the same photo from the same source always gets the same id (a file's path,
size and modification time; a payload's bytes), so a photo seen again after a crash is recognised
and subscribers can de-duplicate. Events carry words, numbers and boxes only, never image data.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgetag.tagger import TagResult

EVENT_VERSION = 1


def event_id(*parts: str | bytes | int) -> str:
    """A stable 20-hex-digit id from the parts that identify a photo (no secret, no image data kept)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode("utf-8")
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:20]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope(event: TagEvent | ErrorEvent) -> dict[str, Any]:
    """What every event starts with: which event, from which device and source, when."""
    return {
        "version": EVENT_VERSION,
        "id": event.id,
        "device": event.device,
        "source": event.source,
        "time": event.time,
    }


@dataclass(frozen=True)
class TagEvent:
    """What edgetag says about one photo from one source: the tag result plus who, where and when.

    Its dict and JSON are made once: the outbox, the retained state and the hooks all read them.
    """

    id: str
    device: str
    source: str
    time: str
    result: TagResult

    @functools.cached_property
    def _dict(self) -> dict[str, Any]:
        return {**_envelope(self), **self.result.to_dict()}

    @functools.cached_property
    def _json(self) -> bytes:
        return json.dumps(self._dict, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        return dict(self._dict)

    def to_json(self) -> bytes:
        return self._json

    @property
    def tags(self) -> list[dict[str, Any]]:
        tags: list[dict[str, Any]] = self._dict["tags"]
        return tags


@dataclass(frozen=True)
class ErrorEvent:
    """A photo (or a source) that could not be tagged: the reason code and a sentence for people."""

    id: str
    device: str
    source: str
    time: str
    photo: str
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {**_envelope(self), "photo": self.photo, "reason": self.reason, "message": self.message}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
