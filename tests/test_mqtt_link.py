"""The MQTT link on its own, against a real broker: the outbox drains completely, in order."""

from __future__ import annotations

import json
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


def link_for(broker: Broker, outbox: Outbox, echo_timeout_seconds: float = 30.0) -> MqttLink:
    settings = LinkSettings(
        host=broker.host, port=broker.port, client_id="edgetag-pi",
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
