"""What every source hands the pipeline: a PhotoJob, and a way to hear back once it is safe.

A source never decides that a photo is done: the pipeline calls `job.finish(outcome)` only after the
photo's event (or error event) is durably stored in the outbox. Then a folder source may delete or
move the file, and an MQTT source acknowledges the message, so a crash in between loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Protocol

from PIL import Image

if TYPE_CHECKING:
    from edgetag.vocabulary import Description


class Outcome(Enum):
    TAGGED = "tagged"  # its tag event is stored
    FAILED = "failed"  # its error event is stored
    DUPLICATE = "duplicate"  # already stored or delivered before (same id): nothing new to say
    ABANDONED = "abandoned"  # the daemon stopped first; the source will offer it again


@dataclass(frozen=True)
class ReplyTo:
    """MQTT v5 request/reply: where to send the tag event, and the requester's correlation data."""

    topic: str
    correlation_data: bytes | None


@dataclass
class PhotoJob:
    """One photo on its way through the pipeline. Exactly one of `read` and `image` is set."""

    source: str
    name: str
    id: str
    read: Callable[[], bytes] | None = None
    image: Image.Image | None = None
    reply_to: ReplyTo | None = None
    on_finish: Callable[[Outcome], None] | None = None
    on_tagged: Callable[[Description], None] | None = None
    """Runs once the photo is described, before its event is stored (a folder's XMP sidecar). May raise
    EdgetagError: the problem becomes an error event and the photo is still done."""
    on_decoded: Callable[[], None] | None = None
    """Runs once the photo's bytes are decoded (or refused): a folder source stops counting it as a
    decode the daemon may not survive. Inference and delivery are no such risk."""
    appeared: float = field(default_factory=time.monotonic)

    def decoded(self) -> None:
        if self.on_decoded is not None:
            self.on_decoded()

    def finish(self, outcome: Outcome) -> None:
        if self.on_finish is not None:
            self.on_finish(outcome)


Submit = Callable[[PhotoJob], None]
"""Hand a photo to the pipeline. Blocks while the pipeline is full (that is the backpressure)."""

ReportError = Callable[[str, str, str], None]
"""Report a problem that is not about one photo (a missing folder, a broken camera).

Called as report_error(source, reason, message).
"""


class Source(Protocol):
    name: str

    def start(self, submit: Submit, report_error: ReportError) -> None: ...

    def stop(self) -> None: ...
