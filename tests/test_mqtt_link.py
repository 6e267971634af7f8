"""The MQTT link on its own, against a real broker: the outbox drains completely, in order."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from edgetag.mqtt import LinkSettings, MqttLink
from edgetag.outbox import Outbox, OutboxMessage
from edgetag.topics import Topics
from tests.broker import Broker, Subscriber

TOPICS = Topics("edgetag", "pi")


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def link_for(
    broker: Broker, outbox: Outbox, echo_timeout_seconds: float = 30.0, protocol: str = "5"
) -> MqttLink:
    settings = LinkSettings(
        host=broker.host, port=broker.port, client_id="edgetag-pi", protocol=protocol,
        username=broker.username, password=broker.password,
        reconnect_min_seconds=0.2, reconnect_max_seconds=1.0, echo_timeout_seconds=echo_timeout_seconds,
    )  # fmt: skip
    return MqttLink(settings, TOPICS, outbox)


def event(number: int) -> OutboxMessage:
    payload = json.dumps({"id": f"{number:020x}", "n": number}).encode()
    return OutboxMessage(f"{number:020x}", TOPICS.events("cam"), payload)


def test_a_large_backlog_drains_completely_and_in_order(broker: Broker, outbox: Outbox) -> None:
    """Thousands of events at once: every one is confirmed, whether its echo beats publish() or not."""
    outbox.add_many([event(n) for n in range(2000)])
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    link = link_for(broker, outbox)
    link.start()
    try:
        assert link.flush(timeout=120), f"{outbox.stats().pending} events left in the outbox"
        received = [m.json()["n"] for m in subscriber.wait_count(2000, timeout=30)]
        assert received == list(range(2000))
        assert link.status.in_flight == 0
    finally:
        link.stop()


def test_messages_to_topics_edgetag_does_not_read_are_confirmed_by_acknowledgement(
    broker: Broker, outbox: Outbox
) -> None:
    replies = Subscriber(broker, "replies/#")
    outbox.add(OutboxMessage("reply-1", "replies/me", b'{"sentence": "x"}'))
    outbox.add(OutboxMessage("hook-1", "alerts/door", b"person", qos=0))
    link = link_for(broker, outbox)
    link.start()
    try:
        assert link.flush(timeout=30)
        assert [m.topic for m in replies.wait_count(1)] == ["replies/me"]
    finally:
        link.stop()


class SlowPublisher(MqttLink):
    """Pauses after every publish(), as a busy Pi deschedules the publisher thread: echoes come first."""

    def _new_client(self) -> paho.Client:
        client = super()._new_client()
        publish = client.publish

        def publish_then_pause(*args: Any, **kwargs: Any) -> paho.MQTTMessageInfo:
            info = publish(*args, **kwargs)
            time.sleep(0.02)
            return info

        client.publish = publish_then_pause  # type: ignore[method-assign]
        return client


def test_echoes_that_arrive_before_publish_returns_are_not_lost(broker: Broker, outbox: Outbox) -> None:
    """Regression: an echo that beat publish() back used to leave a stale in-flight entry; ten stalled it."""
    outbox.add_many([event(n) for n in range(60)])
    link = SlowPublisher(link_for(broker, outbox).settings, TOPICS, outbox)
    link.start()
    try:
        assert link.flush(timeout=60), f"stalled with {outbox.stats().pending} events in the outbox"
    finally:
        link.stop()


class ExpectsEveryEcho(MqttLink):
    """Believes every topic comes back, as if its own subscription were silently refused."""

    def _is_echoed(self, topic: str) -> bool:
        return True


def test_an_echo_that_never_comes_falls_back_to_the_acknowledgement(
    broker: Broker, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Some brokers' access rules let edgetag write its topics but not read them: no stall, a warning."""
    replies = Subscriber(broker, "replies/#")
    outbox.add_many([OutboxMessage(f"reply-{n}", "replies/me", b"{}") for n in range(3)])
    settings = link_for(broker, outbox, echo_timeout_seconds=0.5).settings
    link = ExpectsEveryEcho(settings, TOPICS, outbox)
    link.start()
    try:
        assert link.flush(timeout=30), "waiting forever for echoes that never come would stall the outbox"
        assert len(replies.wait_count(3)) == 3
    finally:
        link.stop()
    assert "never came back; is edgetag allowed to read its own topics?" in caplog.text


@pytest.mark.parametrize("topic", ["replies/#", "+", "replies/\0x", "$SYS/x", ""])
def test_a_message_that_cannot_be_published_is_set_aside_and_the_rest_flows(
    broker: Broker, outbox: Outbox, topic: str
) -> None:
    """Regression (issue 11, item 1): a reply to `replies/#` raised in paho, killed the publisher, and
    stayed first in the outbox, so nothing was ever delivered again."""
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    outbox.add(OutboxMessage("poison:reply", topic, b"{}"))
    outbox.add_many([event(n) for n in range(3)])
    told: list[tuple[str, str]] = []
    link = link_for(broker, outbox)
    link.on_set_aside = lambda message_id, why: told.append((message_id, why))
    link.start()
    try:
        assert link.flush(timeout=30), f"stalled with {outbox.stats().pending} messages in the outbox"
        assert [m.json()["n"] for m in subscriber.wait_count(3, timeout=10)] == [0, 1, 2]
        assert outbox.stats().set_aside == 1
        assert [message_id for message_id, _ in told] == ["poison:reply"]
        assert outbox.is_known("poison:reply"), "set aside, not forgotten: it is not tagged again"
    finally:
        link.stop()


def test_a_message_over_the_brokers_maximum_packet_size_is_set_aside(
    broker_factory: Any, outbox: Outbox
) -> None:
    """Issue 11, item 8: with `max_packet_size 1024` the daemon reconnected forever and nothing flowed."""
    broker = broker_factory(extra_config="max_packet_size 1024\n")
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    big = json.dumps({"id": "big", "pad": "x" * 5000}).encode()
    outbox.add(OutboxMessage("big", TOPICS.events("cam"), big))
    outbox.add_many([event(n) for n in range(3)])
    told: list[str] = []
    link = link_for(broker, outbox)
    link.on_set_aside = lambda message_id, why: told.append(why)
    link.start()
    try:
        assert link.flush(timeout=30), f"stalled with {outbox.stats().pending} messages in the outbox"
        assert [m.json()["n"] for m in subscriber.wait_count(3, timeout=10)] == [0, 1, 2]
        assert len(told) == 1 and "maximum packet size 1,024" in told[0]
        assert link.status.connections == 1, "no reconnect loop"
    finally:
        link.stop()


def test_a_broker_that_drops_us_for_each_message_gets_ever_slower_reconnects(
    broker_factory: Any, outbox: Outbox
) -> None:
    """Issue 11, item 8: MQTT 3.1.1 has no maximum packet size to respect; the broker hangs up on each
    try. Backoff must grow across such short connections (it was reset on each connect: 100 per 15 s)."""
    broker = broker_factory(extra_config="max_packet_size 1024\n")
    outbox.add(OutboxMessage("big", TOPICS.events("cam"), json.dumps({"pad": "x" * 5000}).encode()))
    link = link_for(broker, outbox, protocol="3.1.1")
    link.start()
    try:
        time.sleep(5.0)  # 0.2 + 0.4 + 0.8 + 1 + 1 + 1 s of pauses: at most 7 tries, not 25
        assert 2 <= link.status.connections <= 7
    finally:
        link.stop()


def test_two_daemons_with_one_client_id_are_told_so_in_the_log(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11, item 21: two daemons with the same client id pushed each other off with no hint."""
    first, second = Outbox(tmp_path / "first.db"), Outbox(tmp_path / "second.db")
    links = [link_for(broker, first), link_for(broker, second)]
    with caplog.at_level(logging.WARNING, logger="edgetag.mqtt"):
        for link in links:
            link.start()
        try:
            deadline = time.monotonic() + 15
            hint = "our client id 'edgetag-pi'"  # the taken-over session, or the flapping it causes
            while time.monotonic() < deadline and not any(hint in r.getMessage() for r in caplog.records):
                time.sleep(0.1)
        finally:
            for link in links:
                link.stop()
            first.close()
            second.close()
    assert any(hint in record.getMessage() for record in caplog.records)


def test_a_fake_echo_from_another_client_does_not_count_as_delivery(broker: Broker, outbox: Outbox) -> None:
    """Regression (issue 11, item 7): `{"id": X}` published by anyone on the events topic made edgetag
    take event X as delivered and never publish it."""
    link = link_for(broker, outbox)
    link.start()  # creates edgetag's persistent session, subscribed to its events topics
    assert link.flush(timeout=10)
    link.stop()
    outbox.add_many([event(n) for n in range(3)])
    hostile = broker.client("hostile")
    for n in range(3):  # queued in edgetag's session: they arrive before edgetag publishes anything
        hostile.publish(TOPICS.events("cam"), json.dumps({"id": f"{n:020x}"}).encode(), qos=1)
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    time.sleep(0.5)
    link = link_for(broker, outbox)
    link.start()
    try:
        assert link.flush(timeout=30)
        subscriber.wait_until(lambda: sum("n" in m.json() for m in subscriber.messages) >= 3, timeout=10)
        assert sorted(m.json()["n"] for m in subscriber.messages if "n" in m.json()) == [0, 1, 2]
    finally:
        link.stop()


class FrozenOutbox(Outbox):
    """Stops dead in the write that records a delivery, as a process SIGKILLed right there does."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.frozen = threading.Event()

    def delivered_many(self, message_ids: Any) -> int:
        self.frozen.set()
        threading.Event().wait()
        return 0

    def delivered_echoes(self, echoes: Any) -> list[str]:
        self.frozen.set()
        threading.Event().wait()
        return []


def test_killed_between_the_echo_and_recording_it_publishes_no_duplicate(
    broker: Broker, tmp_path: Path
) -> None:
    """Regression (issue 11, item 6): the echo was acknowledged before the outbox recorded it; a SIGKILL
    in between lost the echo, and the event was published again after the restart."""
    path = tmp_path / "frozen.db"
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    frozen = FrozenOutbox(path)
    frozen.add(event(1))
    first = link_for(broker, frozen)
    first.start()
    assert frozen.frozen.wait(10), "the echo came back"
    first._stopping.set()  # the "killed" process: no reconnect, no more writes
    connection = first._connection
    assert connection is not None
    connection.client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    time.sleep(0.5)
    with Outbox(path) as outbox:
        second = link_for(broker, outbox)
        second.start()
        try:
            assert second.flush(timeout=30)
            time.sleep(1.0)
        finally:
            second.stop()
    assert [m.json()["n"] for m in subscriber.messages] == [1], "published once, not again after the kill"
