"""The MQTT topic layout, in one place (docs/mqtt.md describes it for subscribers).

<prefix>/<device>/availability            online | offline (retained; offline is the last will)
<prefix>/<device>/events/<source>         one tag event per photo (QoS 1)
<prefix>/<device>/errors                  one error event per photo that failed (QoS 1)
<prefix>/<device>/<source>/<concept>      how many of a concept the last photo had (retained)
<prefix>/<device>/<source>/last           the last tag event of a source (retained)
<prefix>/<device>/<source>/capture        command: take a photo now (camera sources)
<prefix>/<device>/stats                   periodic statistics (JSON)
<prefix>/<device>/sync                    edgetag's own delivery check (ignore it)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
"""Device and source names: they appear in topics and Home Assistant ids, so no spaces or wildcards."""


MAX_TOPIC_BYTES = 65535


def topic_problem(topic: str) -> str | None:
    """Why `topic` cannot be published to (MQTT's rules, and no `$` broker topics), or None."""
    if not topic:
        return "the topic is empty"
    if "\0" in topic:
        return "the topic contains a NUL character"
    if "+" in topic or "#" in topic:
        return f"the topic {topic!r} contains a wildcard (+ or #)"
    if topic.startswith("$"):
        return f"the topic {topic!r} is a broker topic (starts with $)"
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"the topic is longer than {MAX_TOPIC_BYTES} bytes"
    return None


def filter_problem(topic_filter: str) -> str | None:
    """Why `topic_filter` is not a valid MQTT subscription filter, or None (paho dies on invalid ones)."""
    if not topic_filter:
        return "the filter is empty"
    if "\0" in topic_filter:
        return "the filter contains a NUL character"
    levels = topic_filter.split("/")
    for number, level in enumerate(levels, start=1):
        if "#" in level and (level != "#" or number != len(levels)):
            return f'{topic_filter!r}: "#" is allowed only as the last level, alone (a/b/#)'
        if "+" in level and level != "+":
            return f'{topic_filter!r}: "+" must be a whole level (a/+/b), not part of one'
    return None


def slug(text: str) -> str:
    """A concept as a topic level and an id part: "teddy bear" -> "teddy_bear"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


@dataclass(frozen=True)
class Topics:
    prefix: str
    device: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def errors(self) -> str:
        return f"{self.base}/errors"

    @property
    def stats(self) -> str:
        return f"{self.base}/stats"

    @property
    def sync(self) -> str:
        return f"{self.base}/sync"

    @property
    def all_events(self) -> str:
        return f"{self.base}/events/+"

    def owns(self, topic: str) -> bool:
        """True for this device's own topics: nobody else may make edgetag publish there."""
        return topic == self.base or topic.startswith(f"{self.base}/")

    def events(self, source: str) -> str:
        return f"{self.base}/events/{source}"

    def concept(self, source: str, concept: str) -> str:
        return f"{self.base}/{source}/{slug(concept)}"

    def last(self, source: str) -> str:
        return f"{self.base}/{source}/last"

    def capture(self, source: str) -> str:
        return f"{self.base}/{source}/capture"
