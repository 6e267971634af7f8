"""`edgetag run`: builds the pipeline from the config and runs it until SIGTERM.

    sources -> [incoming] -> decode -> [prepared] -> infer -> [described] -> store -> MQTT
                                                                              \\-> state, hooks, stats

Queues are bounded, so a burst of a thousand photos waits in the folder (or at the broker) instead
of in memory; decoding the next photo overlaps inference of this one. A photo counts as done only
once its event is in the durable outbox: then the source may delete the file or acknowledge the
message. On SIGTERM the sources stop, what is in the queues is finished, the outbox is given a few
seconds to reach the broker, and whatever could not finish is offered again on the next start.
"""

from __future__ import annotations

import fcntl
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from edgetag import __version__
from edgetag.config import (
    CameraSourceConfig,
    Config,
    FolderSourceConfig,
    MqttSourceConfig,
    image_limits,
    max_incoming_bytes,
    model_settings,
    mqtt_client_id,
    mqtt_password,
    mqtt_port,
    state_dir,
)
from edgetag.errors import ConfigError, EdgetagError, PhotoError
from edgetag.events import ErrorEvent, TagEvent, event_id, now_iso
from edgetag.homeassistant import discovery_messages, status_is_online, status_topic
from edgetag.hooks import Hooks
from edgetag.mqtt import Ack, Incoming, LinkSettings, MqttLink
from edgetag.notify import Notifier
from edgetag.outbox import Outbox, OutboxMessage, Priority
from edgetag.sources.base import Outcome, PhotoJob, Source
from edgetag.sources.camera import CameraFactory, CameraSource, open_picamera2
from edgetag.sources.folder import FolderSource, FolderState
from edgetag.sources.mqtt import MqttSource
from edgetag.stats import Stats
from edgetag.supervise import start_supervised
from edgetag.system import cpu_temperature_c, throttling
from edgetag.tagger import PreparedPhoto, Tagger
from edgetag.topics import Topics
from edgetag.vocabulary import SMILING
from edgetag.watchdog import Heartbeats, Watchdog

log = logging.getLogger(__name__)

INCOMING_QUEUE = 8
PREPARED_QUEUE = 2
DESCRIBED_QUEUE = 4
DRAIN_SECONDS = 20.0
FLUSH_SECONDS = 5.0
STATUS_SECONDS = 15.0
DISCOVERY_MIN_SECONDS = 30.0
"""Home Assistant's `online` re-sends discovery at most this often: anyone may publish `online`."""


@dataclass
class _Decoded:
    job: PhotoJob
    prepared: PreparedPhoto | None
    error: PhotoError | None


@dataclass
class _Described:
    """A photo's event (or error event), ready to be stored; what the store step needs to report it."""

    job: PhotoJob
    messages: list[OutboxMessage]
    outcome: Outcome
    event: TagEvent | None
    summary: str


class Pipeline:
    """Bounded queues and three workers between the sources and the outbox.

    decode (read, decode, fit each model's input) -> infer (models, vocabulary, the event) -> store
    (the durable outbox, then the source hears the photo is done). Each step overlaps the others:
    the next photo is decoded during inference, and an event's disk sync overlaps the next inference.
    """

    def __init__(
        self,
        tagger: Tagger,
        outbox: Outbox,
        topics: Topics,
        device: str,
        *,
        stats: Stats,
        heartbeats: Heartbeats,
    ) -> None:
        self.tagger, self.outbox, self.topics, self.device, self.stats = tagger, outbox, topics, device, stats
        self.heartbeats = heartbeats
        self._incoming: queue.Queue[PhotoJob | None] = queue.Queue(INCOMING_QUEUE)
        self._prepared: queue.Queue[_Decoded | None] = queue.Queue(PREPARED_QUEUE)
        self._described: queue.Queue[_Described | None] = queue.Queue(DESCRIBED_QUEUE)
        self._accepting = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.listeners: list[Callable[[TagEvent], None]] = []  # run after a tag event is stored
        self.stored: list[Callable[[], None]] = []  # run after anything is added to the outbox

    def start(self) -> None:
        self._accepting.set()
        workers = (
            (self._incoming, self._prepared, self._decode, "decode"),
            (self._prepared, self._described, self._describe, "infer"),
            (self._described, None, self._store_described, "store"),
        )
        for inbox, outbox, step, name in workers:
            thread = threading.Thread(
                target=self._work, args=(name, inbox, outbox, step), name=name, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, job: PhotoJob) -> None:
        """Queue a photo; waits while the pipeline is full. After stop, the job is abandoned."""
        while self._accepting.is_set():
            try:
                self._incoming.put(job, timeout=0.5)
                return
            except queue.Full:
                continue
        job.finish(Outcome.ABANDONED)

    def depth(self) -> int:
        return self._incoming.qsize() + self._prepared.qsize() + self._described.qsize() + self._busy

    def report_error(self, source: str, reason: str, message: str, photo: str = "") -> None:
        """An error event that is not about one photo's content (a missing folder, a broken camera)."""
        error = ErrorEvent(
            event_id(source, reason, time.time_ns()), self.device, source, now_iso(), photo, reason, message
        )
        self._store([OutboxMessage(error.id, self.topics.errors, error.to_json(), priority=Priority.NOTICE)])
        self.stats.failed()

    def stop(self, timeout: float) -> bool:
        """Stop accepting, finish what is queued (up to `timeout`), then stop the workers."""
        self._accepting.clear()
        deadline = time.monotonic() + timeout
        while self.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = self.depth() == 0
        self._incoming.put(None)
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        for leftover in (*_drain(self._incoming), *_drain(self._prepared), *_drain(self._described)):
            if leftover is not None:
                (leftover if isinstance(leftover, PhotoJob) else leftover.job).finish(Outcome.ABANDONED)
        return drained

    # --- workers ---------------------------------------------------------------------------------

    def _work(
        self, name: str, inbox: queue.Queue[Any], outbox: queue.Queue[Any] | None, step: Callable[[Any], Any]
    ) -> None:
        """Take items until None, apply one step, pass results on; None is passed on to stop the next.

        Every turn of the loop, busy or idle (at least once a second), is a heartbeat for the watchdog.
        """
        while True:
            self.heartbeats.beat(name)
            try:
                item = inbox.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                break
            with self._busy_lock:
                self._busy += 1
            try:
                result = step(item)
                if result is not None and outbox is not None:
                    outbox.put(result)
            except Exception:  # one photo must never stop the daemon
                job = item if isinstance(item, PhotoJob) else item.job
                log.exception("unexpected error with %s/%s", job.source, job.name)
                try:
                    job.finish(Outcome.ABANDONED)
                except Exception:  # nor its source failing to take it back
                    log.exception("%s could not take back %s", job.source, job.name)
            finally:
                with self._busy_lock:
                    self._busy -= 1
        self.heartbeats.forget(name)
        if outbox is not None:
            outbox.put(None)

    def _decode(self, job: PhotoJob) -> _Decoded | None:
        if self.outbox.is_known(job.id):
            self.stats.duplicate()
            job.finish(Outcome.DUPLICATE)
            return None
        try:
            if job.image is not None:
                return _Decoded(job, self.tagger.prepare_image(job.image, job.name), None)
            assert job.read is not None
            prepared = self.tagger.prepare_bytes(job.read(), job.name)
        except PhotoError as error:
            job.decoded()
            return _Decoded(job, None, error)
        job.decoded()
        return _Decoded(job, prepared, None)

    def _describe(self, decoded: _Decoded) -> _Described:
        job = decoded.job
        if decoded.error is not None or decoded.prepared is None:
            error = decoded.error or PhotoError("corrupt", "could not decode")
            failure = ErrorEvent(
                job.id, self.device, job.source, now_iso(), job.name, error.reason, str(error)
            )
            message = OutboxMessage(
                failure.id, self.topics.errors, failure.to_json(), priority=Priority.PHOTO_ERROR
            )
            return _Described(job, [message], Outcome.FAILED, None, str(error))
        result = self.tagger.infer(decoded.prepared)
        event = TagEvent(job.id, self.device, job.source, now_iso(), result)
        payload = event.to_json()
        messages = [OutboxMessage(event.id, self.topics.events(job.source), payload)]
        if job.reply_to is not None:
            correlation = job.reply_to.correlation_data
            properties = {"correlation_data_hex": correlation.hex()} if correlation else {}
            messages.append(
                OutboxMessage(f"{event.id}:reply", job.reply_to.topic, payload, properties=properties)
            )
        summary = f"{result.sentence} ({result.timing_ms.get('total', 0.0):.0f} ms, id {event.id})"
        return _Described(job, messages, Outcome.TAGGED, event, summary)

    def _store_described(self, described: _Described) -> None:
        job = described.job
        if described.event is not None and job.on_tagged is not None:
            try:  # before the event is stored: once the photo counts as done, it is not offered again
                job.on_tagged(described.event.result.description)
            except EdgetagError as error:  # the photo is still tagged and published; the problem is said
                log.warning("%s/%s: %s", job.source, job.name, error)
                self.report_error(job.source, "sidecar-failed", str(error), photo=job.name)
        self._store(described.messages)
        if described.event is None:
            log.warning("could not tag %s/%s: %s", job.source, job.name, described.summary)
            self.stats.failed()
        else:
            log.info("tagged %s/%s: %s", job.source, job.name, described.summary)
            self.stats.tagged(time.monotonic() - job.appeared)
        job.finish(described.outcome)
        if described.event is not None:
            for listener in self.listeners:
                listener(described.event)

    def _store(self, messages: list[OutboxMessage]) -> None:
        self.outbox.add_many(messages)
        for callback in self.stored:
            callback()


class _Throttle:
    """Calls `action` at once, then at most once per `seconds`: a burst of requests costs two calls
    (the first, and one at the end of the quiet time so the last request is still answered)."""

    def __init__(self, action: Callable[[], None], seconds: float) -> None:
        self.action, self.seconds = action, seconds
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._timer: threading.Timer | None = None

    def request(self) -> None:
        with self._lock:
            wait = self._last + self.seconds - time.monotonic()
            if wait <= 0:
                self._last = time.monotonic()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._trailing)
                self._timer.daemon = True
                self._timer.start()
                return
            else:
                return  # the trailing call is already planned
        self.action()

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self.action()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def _drain(source: queue.Queue[Any]) -> list[Any]:
    items = []
    while True:
        try:
            items.append(source.get_nowait())
        except queue.Empty:
            return items


class Daemon:
    """Everything `edgetag run` starts, in one place."""

    def __init__(
        self, config: Config, env: Mapping[str, str], open_camera: CameraFactory = open_picamera2
    ) -> None:
        self.config = config
        self.env = env
        self.device = config.device.name
        self.topics = Topics(config.mqtt.topic_prefix, self.device)
        self.stats = Stats()
        self.notifier = Notifier(env)
        self.heartbeats = Heartbeats()
        self._watchdog: Watchdog | None = None
        self._open_camera = open_camera
        self._stopping = threading.Event()
        self._reloading = False  # set once RELOADING=1 is sent: this stop is part of a reload
        self._stop_requested = threading.Event()
        self._reload_requested = threading.Event()
        self._signalled = threading.Event()
        self._sources: list[Source] = []
        self._concepts_seen: dict[str, dict[str, int]] = {}
        self._ha_concepts = list(config.homeassistant.concepts)
        self._discovery = _Throttle(self._rediscover, DISCOVERY_MIN_SECONDS)

    # --- start ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load everything, start every thread; READY=1 once models and outbox are ready (not the broker)."""
        config = self.config
        folder = state_dir(config, self.env)
        self.notifier.status("loading the models")
        self._lock_state_dir(folder)
        self.tagger = Tagger.from_settings(
            model_settings(config), config.models.threshold, image_limits(config)
        )
        self._check_concepts()
        self.outbox = Outbox(
            folder / "outbox.db",
            max_messages=config.outbox.max_events,
            max_age_seconds=config.outbox.max_age_hours * 3600,
        )
        self.link = MqttLink(self._link_settings(), self.topics, self.outbox)
        self.pipeline = Pipeline(
            self.tagger, self.outbox, self.topics, self.device, stats=self.stats, heartbeats=self.heartbeats
        )
        self.link.heartbeats = self.heartbeats
        self.link.on_problem = lambda reason, message: self.pipeline.report_error("mqtt", reason, message)
        self.link.on_set_aside = lambda message_id, why: self.pipeline.report_error(
            "mqtt", "unpublishable", f"message {message_id} set aside, the broker cannot take it: {why}"
        )
        self.pipeline.stored.append(self.link.outbox_changed)
        self.pipeline.listeners.append(self._publish_state)
        self.hooks = Hooks(config.hooks, self._publish_for_hook)
        self.pipeline.listeners.append(self.hooks.offer)
        self.folder_state = FolderState(folder / "folders.db")
        self._build_sources()
        if config.homeassistant.enabled:
            # Retained on the link now (so clashing entity ids are a start-up error), sent on every connect.
            self._publish_discovery()
            self.link.subscribe(status_topic(config.homeassistant), 1, self._homeassistant_status)
        self.pipeline.start()
        self.hooks.start()
        for source in self._sources:  # before connecting: `online` must mean "subscribed to every source"
            source.start(self.pipeline.submit, self.pipeline.report_error)
        self.link.start()
        start_supervised("stats", self._stats_turn, self._stopping)
        start_supervised("prune", self._prune_turn, self._stopping)
        broker = f"{self.link.settings.host}:{self.link.settings.port}"
        log.info(
            "edgetag %s running as %s: %d source(s), state in %s, broker %s",
            __version__, self.device, len(self._sources), folder, broker,
        )  # fmt: skip
        if self.notifier.watchdog_seconds:
            self._watchdog = Watchdog(self.notifier, self.heartbeats, self.notifier.watchdog_seconds)
            self._watchdog.start()
        self.notifier.ready(f"tagging: {len(self._sources)} source(s), connecting to the broker at {broker}")
        if self.notifier.enabled:
            start_supervised("status", self._status_turn, self._stopping)

    def _lock_state_dir(self, folder: Path) -> None:
        """One daemon per state folder: two would publish every event of one outbox twice."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock_file = (folder / "lock").open("w")
        except OSError as error:
            raise ConfigError(f"state folder {folder}: cannot use it ({error.strerror or error})") from error
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"state folder {folder} is in use by another edgetag (give each its own)"
            ) from None

    def _link_settings(self) -> LinkSettings:
        mqtt = self.config.mqtt
        return LinkSettings(
            host=mqtt.host,
            port=mqtt_port(self.config),
            client_id=mqtt_client_id(self.config),
            protocol=mqtt.protocol,
            username=mqtt.username,
            password=mqtt_password(self.config, self.env),
            keepalive=mqtt.keepalive,
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            cert_file=mqtt.cert_file,
            key_file=mqtt.key_file,
            reconnect_min_seconds=mqtt.reconnect_min_seconds,
            reconnect_max_seconds=mqtt.reconnect_max_seconds,
            max_incoming_bytes=max_incoming_bytes(self.config),
        )

    def _check_concepts(self) -> None:
        """Hooks and Home Assistant sensors must name concepts the vocabulary can say."""
        known = {c.name for c in self.tagger.vocabulary.concepts} | {"person", SMILING}
        wanted = [(f"hook {h.name}", h.concept) for h in self.config.hooks]
        wanted += [("homeassistant.concepts", c) for c in self.config.homeassistant.concepts]
        problems = [
            f"{where}: unknown concept {concept!r}" for where, concept in wanted if concept not in known
        ]
        if problems:
            raise ConfigError("\n".join(problems) + f"\n(known concepts: {', '.join(sorted(known))})")

    def _build_sources(self) -> None:
        limits = image_limits(self.config)
        for source in self.config.sources:
            if isinstance(source, FolderSourceConfig):
                self._sources.append(FolderSource(source, self.folder_state, limits))
            elif isinstance(source, MqttSourceConfig):
                self._sources.append(MqttSource(source, self.link))
            elif isinstance(source, CameraSourceConfig):
                camera = CameraSource(source, self._open_camera)
                self.link.subscribe(self.topics.capture(source.name), 1, _capture_handler(camera))
                self._sources.append(camera)

    # --- what happens around each event ------------------------------------------------------------

    def _publish_state(self, event: TagEvent) -> None:
        """Retained per-source state for automations: each concept's count, and the last event.

        A broader concept counts its kinds: "animal" is 3 for 2 dogs and a cat.
        """
        counts: dict[str, int] = {}
        for tag in event.tags:
            if tag.get("said", True):
                for concept in {tag["concept"], *tag.get("parents", ())}:
                    counts[concept] = counts.get(concept, 0) + int(tag.get("count", 1))
        seen = self._concepts_seen.setdefault(event.source, {})
        for concept in {*seen, *counts, *self._ha_concepts}:
            value = counts.get(concept, 0)
            if seen.get(concept) != value:
                self.link.publish_retained(self.topics.concept(event.source, concept), str(value).encode())
                seen[concept] = value
        self.link.publish_retained(self.topics.last(event.source), event.to_json())

    def _publish_for_hook(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        message_id = event_id("hook", topic, time.time_ns())
        self.outbox.add(
            OutboxMessage(message_id, topic, payload, qos=qos, retain=retain, priority=Priority.NOTICE)
        )
        self.link.outbox_changed()

    def _publish_discovery(self) -> None:
        for message in discovery_messages(
            device=self.device,
            sources=[s.name for s in self._sources],
            concepts=self._ha_concepts,
            topics=self.topics,
            discovery_prefix=self.config.homeassistant.discovery_prefix,
            sw_version=__version__,
        ):
            self.link.publish_retained(message.topic, message.payload.encode())

    def _rediscover(self) -> None:
        log.info("Home Assistant is online: sending discovery again")
        self._publish_discovery()

    def _homeassistant_status(self, message: Incoming, _ack: Ack) -> bool:
        if status_is_online(message.payload):
            self._discovery.request()
        return False

    def status_line(self) -> str:
        """What `systemctl status` shows: progress, queues, the broker."""
        outbox = self.outbox.stats().pending
        broker = (
            "connected" if self.link.status.connected else f"not connected ({self.link.status.last_error})"
        )
        return (
            f"{self.stats.photos_total} photo(s) tagged, {self.stats.errors_total} error(s), "
            f"{self.pipeline.depth()} in progress, {outbox} waiting for the broker; MQTT {broker}"
        )

    def _status_turn(self) -> None:
        if not self._stopping.wait(STATUS_SECONDS):
            self.notifier.status(self.status_line())

    def _stats_turn(self) -> None:
        if not self._stopping.wait(self.config.stats.interval_seconds):
            self.link.publish_now(self.topics.stats, json.dumps(self.stats_snapshot()).encode())

    def stats_snapshot(self) -> dict[str, Any]:
        outbox = self.outbox.stats()
        hooks = self.hooks.stats()
        return self.stats.snapshot(
            queue_depth=self.pipeline.depth(),
            outbox_pending=outbox.pending,
            outbox_dropped_total=outbox.dropped_total,
            hooks={"fired": hooks.fired, "failed": hooks.failed, "dropped": hooks.dropped},
            mqtt={"connected": self.link.status.connected, "last_error": self.link.status.last_error},
            cpu_temperature_c=cpu_temperature_c(),
            throttling=throttling(),
            cameras={s.name: s.present for s in self._sources if isinstance(s, CameraSource)},
        )

    def _prune_turn(self) -> None:
        if not self._stopping.wait(600) and (dropped := self.outbox.prune()):
            log.warning(
                "outbox: dropped %d events older than %.0f hours", dropped, self.config.outbox.max_age_hours
            )

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the sources, finish what is in flight, give the outbox a moment, say offline."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping: finishing the photos in flight")
        in_flight = f"finishing {self.pipeline.depth()} photo(s) in flight"
        # systemd 252 keeps a STOPPING=1 sent during ExecReload and stops the unit once the reload ends.
        if self._reloading:
            self.notifier.status(f"reloading: {in_flight}")
        else:
            self.notifier.stopping(f"stopping: {in_flight}")
        for source in self._sources:
            source.stop()
        if not self.pipeline.stop(DRAIN_SECONDS):
            log.warning("stopping: some photos were not finished; they will be tagged on the next start")
        if not self.link.flush(FLUSH_SECONDS):
            log.info("stopping: %d event(s) wait in the outbox for the broker", self.outbox.stats().pending)
        self.hooks.stop()
        self._discovery.cancel()
        self.link.stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        self.outbox.close()
        self.folder_state.close()
        self._lock_file.close()
        log.info("stopped")

    def run(self, reload: Callable[[], Config] | None = None) -> Config | None:
        """Start, then serve until SIGTERM or SIGINT (None) or a SIGHUP with a valid new config (it).

        On SIGHUP the new config is read first: an invalid one is refused and this one keeps running.
        A valid one stops this daemon gracefully (nothing is lost) and is returned to be started.
        """
        # Handlers first: systemd may signal as soon as READY=1, which start() sends. A SIGTERM while
        # starting then stops cleanly once started, and an early SIGHUP is a reload, not Python's death.
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            self.start()
            try:
                return self._serve(reload)
            finally:
                self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _serve(self, reload: Callable[[], Config] | None) -> Config | None:
        while True:
            self._signalled.wait(1.0)
            self._signalled.clear()
            if self._stop_requested.is_set():
                return None
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                if reload is not None and (config := self._read_new_config(reload)) is not None:
                    return config

    def _read_new_config(self, reload: Callable[[], Config]) -> Config | None:
        try:
            config = reload()
        except ConfigError as error:
            log.error("reload refused, the running config stays: %s", error)
            self.notifier.status(f"reload refused (see the log); {self.status_line()}")
            return None
        log.info("reloading with the new config")
        self._reloading = True
        self.notifier.reloading("reloading the config")
        return config

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        if signum == signal.SIGHUP:
            self._reload_requested.set()
        else:
            self._stop_requested.set()
        self._signalled.set()


def _capture_handler(camera: CameraSource) -> Callable[[Incoming, Ack], bool]:
    def handle(_message: Incoming, _ack: Ack) -> bool:
        camera.capture_now()
        return False

    return handle
