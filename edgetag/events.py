"""The messages the daemon publishes about photos: one tag event per photo, or one error event.

Event ids are stable: the same photo from the same source always gets the same id (a file's path,
size and modification time; a payload's bytes), so a photo seen again after a crash is recognised
and subscribers can de-duplicate. Events carry words, numbers and boxes only, never image data.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class TagEvent:
    """What edgetag says about one photo from one source: the tag result plus who, where and when."""

    id: str
    device: str
    source: str
    time: str
    result: TagResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": EVENT_VERSION,
            "id": self.id,
            "device": self.device,
            "source": self.source,
            "time": self.time,
            **self.result.to_dict(),
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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
        return {
            "version": EVENT_VERSION,
            "id": self.id,
            "device": self.device,
            "source": self.source,
            "time": self.time,
            "photo": self.photo,
            "reason": self.reason,
            "message": self.message,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
