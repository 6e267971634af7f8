"""The one MQTT connection: connect, subscribe, publish the outbox, and never lose or double an event.

Everything edgetag says goes through here; nothing else talks to the broker.

Delivery. Events wait in the durable outbox until edgetag *sees them come back* from the broker on
its own subscription (its session is persistent, so an echo that arrives while edgetag is down is
queued by the broker and read after a restart). An event is deleted only then. After every
(re)connect, edgetag publishes a sync marker to itself and waits for it: every echo the broker had
queued arrives before the marker, so whatever is still pending afterwards was never received and is
published again, in order. That makes a daemon crash cost neither a lost nor a duplicated event
(a broker that crashes without persistence can still cause a duplicate; ids are stable, so
subscribers can de-duplicate). Messages to topics edgetag does not subscribe to (hook messages,
request/reply answers) are deleted on the broker's acknowledgement instead.

Connections. Each connection uses a fresh paho client and edgetag's own backoff loop, so a dropped
connection leaves nothing queued inside paho to be re-sent behind the outbox's back, and a refused
connection's real reason (wrong password, untrusted certificate) is logged in words.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgetag.outbox import Outbox, OutboxMessage
from edgetag.supervise import start_supervised
from edgetag.topics import Topics, topic_problem
from edgetag.watchdog import Heartbeats

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 10
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
RECEIVE_MAXIMUM = 16
CONNACK_TIMEOUT = 10.0
STABLE_SECONDS = 30.0
"""A connection that lasted less was not a success: the backoff keeps growing (a broker that drops us
right after CONNACK, a second daemon with our client id, must not cause a reconnect storm)."""
FLAPS_BEFORE_HINT = 3


@dataclass(frozen=True)
class LinkSettings:
    host: str
    port: int
    client_id: str
    protocol: str = "5"
    username: str | None = None
    password: str | None = None
    keepalive: int = 60
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    echo_timeout_seconds: float = 30.0
    """An acknowledged event that has not come back by then is taken as delivered (see _settle)."""
    max_incoming_bytes: int | None = None
    """MQTT v5: the broker must not send us larger packets (it drops them), so a huge payload never
    reaches memory. MQTT 3.1.1 has no such promise: there the broker's own limit is the only guard."""


@dataclass(frozen=True)
class Incoming:
    """A message for one of edgetag's subscriptions (sources, commands, Home Assistant's status)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None


Ack = Callable[[], None]
Handler = Callable[[Incoming, Ack], bool]
"""Handles a message; returns True if it took the Ack to call later (after the photo is stored)."""


@dataclass
class LinkStatus:
    connected: bool = False
    synced: bool = False
    connections: int = 0
    last_error: str | None = None
    in_flight: int = 0


@dataclass
class _Subscription:
    topic_filter: str  # what is subscribed (may be $share/<group>/<filter>)
    match: str  # what received topics are matched against
    qos: int
    handler: Handler


@dataclass
class _InFlight:
    """An outbox message published on this connection and not yet confirmed."""

    seq: int
    echoed: bool  # confirmed by seeing it come back; else by the broker's acknowledgement
    payload: bytes = b""  # what must come back
    since: float = field(default_factory=time.monotonic)
    info: paho.MQTTMessageInfo | None = None  # set once publish() returns
    acknowledged: bool = False  # PUBACK seen (paho marks info published only after telling us)


@dataclass
class _Connection:
    """One paho client's lifetime: everything here is forgotten when the connection drops."""

    client: paho.Client
    number: int
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    refusal: str | None = None
    drop_reason: str | None = None  # why the broker or the network ended it
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))
    in_flight: dict[str, _InFlight] = field(default_factory=dict)  # by message id
    sent_seq: int = 0
    audit_ok: bool = True
    unread: bool = True  # the outbox may hold messages this connection has not read yet
    awaiting_ack: dict[int, _InFlight] = field(default_factory=dict)  # by mid: those a PUBACK confirms
    max_packet_bytes: int | None = None  # the broker's Maximum Packet Size (MQTT v5 CONNACK)


class MqttLink:
    def __init__(self, settings: LinkSettings, topics: Topics, outbox: Outbox) -> None:
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self.status = LinkStatus()
        self._subscriptions: list[_Subscription] = []
        self._retained: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connection: _Connection | None = None
        self._threads: list[threading.Thread] = []
        self._audit_filters = (topics.all_events, topics.errors)
        self._confirmed: list[str] = []  # acknowledged ids not yet marked delivered in the outbox
        self._echoes: list[tuple[str, bytes, Ack]] = []  # echoes not yet recorded, nor acknowledged
        self._reported_error: str | None = None
        self._delay = settings.reconnect_min_seconds
        self._short_connections = 0  # in a row: connected, then dropped within STABLE_SECONDS
        self.heartbeats: Heartbeats | None = None
        """The publisher beats here every turn of its loop, for the watchdog."""
        self.on_problem: Callable[[str, str], None] | None = None
        """Told of each new connection problem as (reason, message); the daemon stores an error event."""
        self.on_set_aside: Callable[[str, str], None] | None = None
        """Told of each message the broker can never take, as (message id, why); it is set aside."""

    # --- what the rest of edgetag uses -----------------------------------------------------------

    def subscribe(
        self, topic_filter: str, qos: int, handler: Handler, share_group: str | None = None
    ) -> None:
        """Subscribe now and after every reconnect; `share_group` makes it $share/<group>/<filter>."""
        subscribed = f"$share/{share_group}/{topic_filter}" if share_group else topic_filter
        with self._lock:
            self._subscriptions.append(_Subscription(subscribed, topic_filter, qos, handler))
            connection = self._connection
        if connection and connection.connected.is_set():
            connection.client.subscribe(subscribed, qos=qos)

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """State: kept here and published again after every reconnect. Sent now if connected."""
        with self._lock:
            self._retained[topic] = payload
            connection = self._connection
        if connection and connection.connected.is_set():
            connection.client.publish(topic, payload, qos=1, retain=True)

    def publish_now(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Fire and forget (statistics): dropped while disconnected. True if handed to the broker."""
        connection = self._connection
        if not (connection and connection.connected.is_set()):
            return False
        info = connection.client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def outbox_changed(self) -> None:
        """Wake the publisher: something was added to the outbox."""
        with self._wake:
            if self._connection is not None:
                self._connection.unread = True  # a new connection starts with unread set
            self._wake.notify_all()

    def start(self) -> None:
        for turn, name in ((self._connect_turn, "mqtt-connect"), (self._publish_turn, "mqtt-publish")):
            self._threads.append(start_supervised(name, turn, self._stopping, self.heartbeats))

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything delivered) or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self.outbox.stats().pending and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.2))
        return True

    def stop(self) -> None:
        """Say offline, disconnect, and stop the threads. Pending events stay in the outbox."""
        self._stopping.set()
        connection = self._connection
        if connection and connection.connected.is_set():
            info = connection.client.publish(self.topics.availability, b"offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
            connection.client.disconnect()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self.heartbeats is not None:
            self.heartbeats.forget("mqtt-publish")
            self.heartbeats.forget("mqtt-connect")
        if connection:
            connection.client.loop_stop()
        self._write_confirmed()  # echoes that arrived during the last moments

    # --- connecting ------------------------------------------------------------------------------

    def _connect_turn(self) -> None:
        """Connect, stay connected while it lasts, then wait the backoff (kept across short connections)."""
        started = time.monotonic()
        problem = self._connect_once()
        if self._stopping.is_set():
            return
        if problem is None:  # was connected; the connection has ended
            self._connection_lost(time.monotonic() - started)
        else:
            self._report_problem(problem, self._delay)
        wait = self._delay
        if problem is not None or self._short_connections:
            self._delay = min(self._delay * 2, self.settings.reconnect_max_seconds)
        self._pause(self._stopping, wait)

    def _connection_lost(self, lasted: float) -> None:
        connection = self._connection
        reason = connection.drop_reason if connection else None
        hint = ""
        if lasted >= STABLE_SECONDS:
            self._short_connections = 0
            self._delay = self.settings.reconnect_min_seconds
        else:
            self._short_connections += 1
        if reason and "session taken over" in reason.lower():
            hint = (
                f"; another client connected with our client id {self.settings.client_id!r}: give each "
                "edgetag its own mqtt.client_id (two daemons with one id push each other off)"
            )
        elif self._short_connections >= FLAPS_BEFORE_HINT:
            hint = (
                f"; {self._short_connections} connections in a row ended within {STABLE_SECONDS:.0f} s: is "
                f"another client using our client id {self.settings.client_id!r}, or does the broker refuse "
                "what we publish (its log says why)?"
            )
        log.warning(
            "MQTT connection to %s lost (%s)%s; reconnecting in %.1f s",
            self._address, reason or "no reason given", hint, self._delay,
        )  # fmt: skip

    def _pause(self, event: threading.Event, seconds: float) -> bool:
        """Wait for `event` up to `seconds`, beating every second for the watchdog; True if it is set."""
        deadline = time.monotonic() + seconds
        while not event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.heartbeats is not None:
                self.heartbeats.beat("mqtt-connect")
            event.wait(min(left, 1.0))
        return True

    def _connect_once(self) -> str | None:
        """One connection attempt; returns why it failed, or None once a connection has come and gone."""
        with self._lock:
            self.status.connections += 1
            connection = _Connection(self._new_client(), self.status.connections)
            self._connection = connection
        client = connection.client
        try:
            client.connect(
                self.settings.host, self.settings.port, self.settings.keepalive, **self._connect_options()
            )
        except (OSError, ValueError) as error:
            return describe_connect_error(error, self.settings)
        client.loop_start()
        if not self._pause(connection.connected, CONNACK_TIMEOUT) or connection.refusal:
            client.loop_stop()
            client.disconnect()
            return connection.refusal or f"no answer from {self._address} within {CONNACK_TIMEOUT:.0f} s"
        self._reported_error = None
        self.status.last_error = None
        while not self._pause(connection.closed, 3600):
            pass
        client.loop_stop()
        return None

    @property
    def _address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _report_problem(self, problem: str, delay: float) -> None:
        self.status.last_error = problem
        if problem != self._reported_error:
            log.error("MQTT: cannot connect to %s: %s; retrying with backoff", self._address, problem)
            self._reported_error = problem
            if self.on_problem is not None:
                reason = (
                    "broker-refused" if problem.startswith("the broker refused") else "broker-unreachable"
                )
                self.on_problem(reason, f"cannot connect to {self._address}: {problem}")
        else:
            log.info(
                "MQTT: still cannot connect to %s (%s); next try in %.0f s", self._address, problem, delay
            )

    def _new_client(self) -> paho.Client:
        version5 = self.settings.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.settings.client_id,
            protocol=paho.MQTTv5 if version5 else paho.MQTTv311,
            clean_session=None if version5 else False,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.will_set(self.topics.availability, b"offline", qos=1, retain=True)
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls:
            client.tls_set(
                ca_certs=str(self.settings.ca_file) if self.settings.ca_file else None,
                certfile=str(self.settings.cert_file) if self.settings.cert_file else None,
                keyfile=str(self.settings.key_file) if self.settings.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        return client

    def _connect_options(self) -> dict[str, Any]:
        if self.settings.protocol != "5":
            return {}
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        if self.settings.max_incoming_bytes is not None:
            properties.MaximumPacketSize = self.settings.max_incoming_bytes
        return {"clean_start": False, "properties": properties}

    # --- paho callbacks (its network thread) ---------------------------------------------------------

    def _current(self, client: paho.Client) -> _Connection | None:
        connection = self._connection
        return connection if connection and connection.client is client else None

    def _handle_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        connection = self._current(client)
        if connection is None:
            return
        if reason.is_failure:
            connection.refusal = describe_refusal(reason)
            connection.connected.set()
            return
        log.info("MQTT connected to %s as %s", self._address, self.settings.client_id)
        connection.max_packet_bytes = getattr(_props, "MaximumPacketSize", None)
        with self._lock:
            subscriptions = list(self._subscriptions)
            retained = dict(self._retained)
        client.subscribe([(self.topics.sync, 1), *((f, 1) for f in self._audit_filters)])
        for subscription in subscriptions:
            client.subscribe(subscription.topic_filter, qos=subscription.qos)
        client.publish(self.topics.availability, b"online", qos=1, retain=True)
        for topic, payload in retained.items():
            client.publish(topic, payload, qos=1, retain=True)
        connection.connected.set()
        self.status.connected = True
        client.publish(self.topics.sync, connection.nonce.encode(), qos=1)

    def _handle_disconnect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _p: Any
    ) -> None:
        connection = self._current(client)
        if connection is None:
            return
        connection.drop_reason = str(reason) if reason is not None else None
        self.status.connected = self.status.synced = False
        connection.closed.set()
        with self._wake:
            self._wake.notify_all()

    def _handle_subscribe(
        self, client: paho.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
    ) -> None:
        connection = self._current(client)
        if connection and any(code.is_failure for code in codes):
            connection.audit_ok = False  # conservative: a refused subscription may be the echo one
            log.warning(
                "MQTT: the broker refused a subscription (%s); falling back to acknowledgements", codes
            )

    def _handle_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        connection = self._current(client)
        if connection is None:
            return
        ack = _ack_once(client, message.mid, message.qos)
        topic = message.topic
        if topic == self.topics.sync:
            if message.payload == connection.nonce.encode():
                self.status.synced = True
                with self._wake:
                    self._wake.notify_all()
            ack()
            return
        if any(paho.topic_matches_sub(f, topic) for f in self._audit_filters):
            self._echo_received(connection, bytes(message.payload), ack)  # acknowledged once recorded
            return
        for subscription in self._subscriptions:
            if paho.topic_matches_sub(subscription.match, topic):
                incoming = _incoming(message)
                try:
                    if subscription.handler(incoming, ack):
                        return  # the handler acknowledges once the photo is safely stored
                except Exception:
                    log.exception("error handling a message on %s", topic)
                break
        ack()

    def _echo_received(self, connection: _Connection, payload: bytes, ack: Ack) -> None:
        """Our own event came back: the broker has it. The publisher confirms it in the outbox.

        It counts only if it is byte for byte what edgetag published (a forged `{"id": X}` is not), and
        it is acknowledged to the broker only after the outbox has recorded it: killed in between, the
        broker sends the echo again, so the event is not published twice.
        """
        try:
            message_id = str(json.loads(payload)["id"])
        except (ValueError, KeyError, TypeError):
            ack()
            return  # not ours (or not an event): nothing to confirm
        with self._wake:
            entry = connection.in_flight.get(message_id)
            if entry is not None and entry.payload == payload:
                del connection.in_flight[message_id]
            self.status.in_flight = len(connection.in_flight)
            self._echoes.append((message_id, payload, ack))  # written in batches, off the network thread
            self._wake.notify_all()

    def _handle_publish(self, client: paho.Client, _userdata: Any, mid: int, _reason: Any, _p: Any) -> None:
        """A PUBACK: wake the publisher only if it confirms an outbox message (see _settle).

        Retained state and echoed events are acknowledged too; waking for those cost a loop per message.
        """
        connection = self._current(client)
        if connection is None:
            return
        with self._wake:
            entry = connection.awaiting_ack.pop(mid, None)
            if entry is not None:
                entry.acknowledged = True
                self._wake.notify_all()

    # --- publishing the outbox (its own thread) -----------------------------------------------------

    def _publish_turn(self) -> None:
        """One turn of the publisher (start_supervised beats and repeats it)."""
        with self._wake:
            self._wake.wait(0.5)
        self._write_confirmed()
        connection = self._connection
        if connection is None or not (connection.connected.is_set() and self.status.synced):
            return
        if connection.closed.is_set():
            return
        self._publish_pending(connection)

    def _publish_pending(self, connection: _Connection) -> None:
        self._settle(connection)
        room = MAX_IN_FLIGHT - len(connection.in_flight)
        with self._wake:  # read the outbox only when it has changed: most wakes are echoes and PUBACKs
            if room <= 0 or not connection.unread:
                return
            connection.unread = False
        batch = self.outbox.pending(after_seq=connection.sent_seq, limit=room)
        if len(batch) == room:
            connection.unread = True  # there may be more than there was room for
        for stored in batch:
            message = stored.message
            properties = _publish_properties(message, self.settings.protocol)
            if problem := _unsendable(message, properties, connection.max_packet_bytes):
                self._set_aside(message, problem)
                connection.sent_seq = stored.seq
                continue
            entry = _InFlight(
                stored.seq,
                connection.audit_ok and message.qos > 0 and self._is_echoed(message.topic),
                message.payload,
            )
            with self._wake:  # registered before publishing: the echo can arrive before publish() returns
                connection.in_flight[message.id] = entry
            try:
                info = connection.client.publish(
                    message.topic, message.payload, qos=message.qos, retain=message.retain,
                    properties=properties,
                )  # fmt: skip
            except (ValueError, TypeError, UnicodeError) as error:  # paho refuses it: it never will take it
                with self._wake:
                    connection.in_flight.pop(message.id, None)
                self._set_aside(message, f"the MQTT client refused it: {error}")
                connection.sent_seq = stored.seq
                continue
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                with self._wake:
                    connection.in_flight.pop(message.id, None)
                    connection.unread = True
                return  # disconnected: the next connection starts over from the outbox
            entry.info = info
            if not entry.echoed:
                with self._wake:
                    connection.awaiting_ack[info.mid] = entry
            connection.sent_seq = stored.seq
        self._settle(connection)

    def _set_aside(self, message: OutboxMessage, problem: str) -> None:
        """One message that can never be sent must not stop the ones behind it."""
        log.error("MQTT: cannot publish %s to %r: %s; set it aside", message.id, message.topic, problem)
        self.outbox.set_aside(message.id, problem)
        if self.on_set_aside is not None:
            self.on_set_aside(message.id, problem)

    def _write_confirmed(self) -> None:
        """Mark what came back as delivered, many at a time (one disk sync per batch)."""
        with self._wake:
            confirmed, self._confirmed = self._confirmed, []
            echoes, self._echoes = self._echoes, []
        try:
            if confirmed:
                self.outbox.delivered_many(confirmed)
            forged = self.outbox.delivered_echoes([(i, p) for i, p, _ in echoes]) if echoes else []
        except Exception:  # a full disk: keep them for the next try, or they would be published again
            with self._wake:
                self._confirmed[:0] = confirmed
                self._echoes[:0] = echoes
            raise
        for _, _, ack in echoes:
            ack()
        for message_id in forged:
            log.warning(
                "MQTT: a message on edgetag's events topic claims to be %s but is not what edgetag "
                "published: another client publishes there; see docs/mqtt.md (broker ACLs)", message_id,
            )  # fmt: skip

    def _settle(self, connection: _Connection) -> None:
        """Confirm what came back, and what was acknowledged and is not echoed (or never came back)."""
        self._write_confirmed()
        now = time.monotonic()
        settled: list[str] = []
        with self._wake:
            for message_id, entry in list(connection.in_flight.items()):
                if entry.info is None or not (entry.acknowledged or entry.info.is_published()):
                    continue
                if entry.echoed and now - entry.since < self.settings.echo_timeout_seconds:
                    continue
                if entry.echoed:
                    log.warning(
                        "MQTT: the broker acknowledged %s but it never came back; is edgetag allowed to read "
                        "its own topics? Relying on acknowledgements from now on", message_id,
                    )  # fmt: skip
                    connection.audit_ok = False
                del connection.in_flight[message_id]
                connection.awaiting_ack.pop(entry.info.mid, None)
                settled.append(message_id)
            self.status.in_flight = len(connection.in_flight)
            self._confirmed.extend(settled)
        self._write_confirmed()

    def _is_echoed(self, topic: str) -> bool:
        return any(paho.topic_matches_sub(f, topic) for f in self._audit_filters)


def _ack_once(client: paho.Client, mid: int, qos: int) -> Ack:
    done = threading.Event()

    def ack() -> None:
        if qos > 0 and not done.is_set():
            done.set()
            client.ack(mid, qos)  # on a dropped connection this is a no-op; the broker re-sends

    return ack


def _incoming(message: paho.MQTTMessage) -> Incoming:
    properties = getattr(message, "properties", None)
    response = getattr(properties, "ResponseTopic", None) if properties else None
    correlation = getattr(properties, "CorrelationData", None) if properties else None
    return Incoming(
        message.topic, bytes(message.payload), message.qos, bool(message.retain),
        str(response) if response else None, bytes(correlation) if correlation else None,
    )  # fmt: skip


def _unsendable(message: OutboxMessage, properties: Properties | None, max_packet: int | None) -> str | None:
    """Why the broker could never take this message (bad topic, bigger than its packets), or None."""
    if problem := topic_problem(message.topic):
        return problem
    if max_packet is not None:
        size = _packet_bytes(message, properties)
        if size > max_packet:
            return f"it is {size:,} bytes as a packet, over the broker's maximum packet size {max_packet:,}"
    return None


def _packet_bytes(message: OutboxMessage, properties: Properties | None) -> int:
    """A PUBLISH packet's size, rounded up: fixed header, topic, packet id, properties, payload."""
    encoded = properties.pack() if properties is not None else b""  # type: ignore[no-untyped-call]
    return 5 + 2 + len(message.topic.encode()) + 2 + len(encoded) + len(message.payload)


def _publish_properties(message: OutboxMessage, protocol: str) -> Properties | None:
    if protocol != "5":
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = message.properties.get("content_type", "application/json")
    if correlation := message.properties.get("correlation_data_hex"):
        properties.CorrelationData = bytes.fromhex(correlation)
    return properties


def describe_refusal(reason: ReasonCode) -> str:
    """The broker's refusal in words, with what to check."""
    text = str(reason)
    hint = ""
    if text.lower() in ("not authorized", "bad user name or password"):
        hint = " (check mqtt.username and the password)"
    return f"the broker refused us: {text}{hint}"


def describe_connect_error(error: Exception, settings: LinkSettings) -> str:
    """Why a connection attempt failed, in words, with what to check."""
    if isinstance(error, ssl.SSLCertVerificationError):
        where = (
            f"mqtt.ca_file ({settings.ca_file})"
            if settings.ca_file
            else "the system's CAs (set mqtt.ca_file)"
        )
        return f"the broker's TLS certificate is not trusted: {error.verify_message}; check {where}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the broker running, and is this the right port?)"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host name {settings.host!r}"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(error).__name__}: {error}"
