"""JPEG payloads on an MQTT topic: ESP32-CAMs, Home Assistant automations, scripts.

A message is acknowledged to the broker only once its photo's event is stored in the outbox; if
edgetag stops first, the broker (which keeps edgetag's session) delivers it again. A photo abandoned
while edgetag keeps running (its event could not be stored: a full disk) is offered to the pipeline
again after a pause: an unacknowledged message is never left behind, where it would use up the
broker's receive maximum and stall the source. MQTT v5 requests
with a response topic are answered with the tag event and the request's correlation data. With
`share_group`, several edgetag devices split one stream of images and each image is tagged once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading

from edgetag.config import MqttSourceConfig
from edgetag.errors import PhotoError
from edgetag.events import event_id
from edgetag.mqtt import Ack, Incoming, MqttLink
from edgetag.sources.base import Outcome, PhotoJob, ReplyTo, ReportError, Submit
from edgetag.topics import topic_problem

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0


class MqttSource:
    def __init__(self, config: MqttSourceConfig, link: MqttLink) -> None:
        self.config = config
        self.name = config.name
        self._link = link
        self._submit: Submit | None = None
        self._report_error: ReportError | None = None
        self._stopping = threading.Event()

    def start(self, submit: Submit, report_error: ReportError) -> None:
        self._submit = submit
        self._report_error = report_error
        self._link.subscribe(self.config.topic, self.config.qos, self._handle, self.config.share_group)

    def stop(self) -> None:
        self._stopping.set()

    def _handle(self, message: Incoming, ack: Ack) -> bool:
        if self._stopping.is_set() or self._submit is None:
            return True  # not acknowledged: the broker delivers it again after the restart
        self._submit(self._job(message, ack))  # may wait while the pipeline is full; the broker has the rest
        return True

    def _job(self, message: Incoming, ack: Ack, attempt: int = 1) -> PhotoJob:
        digest = hashlib.sha256(message.payload).hexdigest()
        correlation = message.correlation_data or b""
        reply_to = self._reply_to(message)
        return PhotoJob(
            source=self.name,
            name=message.topic,
            id=event_id(self.name, message.topic, digest, correlation),
            read=functools.partial(self._payload, message.payload),
            reply_to=reply_to,
            on_finish=functools.partial(self._finished, message, ack, attempt),
        )

    def _finished(self, message: Incoming, ack: Ack, attempt: int, outcome: Outcome) -> None:
        if outcome is not Outcome.ABANDONED:
            ack()
        elif not self._stopping.is_set():
            delay = min(RETRY_SECONDS * 2 ** (attempt - 1), RETRY_MAX_SECONDS)
            (log.warning if attempt == 1 else log.debug)(
                "%s: %s could not be finished; trying again in %.0f s", self.name, message.topic, delay
            )
            timer = threading.Timer(delay, self._retry, args=(message, ack, attempt + 1))
            timer.daemon = True
            timer.start()

    def _retry(self, message: Incoming, ack: Ack, attempt: int) -> None:
        if not self._stopping.is_set() and self._submit is not None:
            self._submit(self._job(message, ack, attempt))

    def _reply_to(self, message: Incoming) -> ReplyTo | None:
        """Where to answer, if the requester may choose it; else the photo is tagged without a reply.

        A requester must not make edgetag publish to a wildcard, a broker ($) topic or its own topics.
        """
        topic = message.response_topic
        if topic is None:
            return None
        problem = topic_problem(topic)
        if problem is None and self._link.topics.owns(topic):
            problem = f"the topic {topic!r} is one of edgetag's own"
        if problem is None:
            return ReplyTo(topic, message.correlation_data)
        text = f"request on {message.topic}: response topic refused ({problem}); tagged without a reply"
        log.warning("%s", text)
        if self._report_error is not None:
            self._report_error(self.name, "bad-response-topic", text)
        return None

    def _payload(self, payload: bytes) -> bytes:
        if len(payload) > self.config.max_bytes:
            raise PhotoError(
                "too-large",
                f"payload is {len(payload):,} bytes, over this source's max_bytes {self.config.max_bytes:,}",
            )
        return payload
