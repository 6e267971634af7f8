"""Fault injection: a burst of photos while the daemon is killed, the broker restarts, the state disk
fills up and a hostile client plays on the same broker. Each run must end with every photo's event
delivered exactly once (ids checked) and the daemon still serving.

The moments of the faults are random; the seed is printed (and taken from EDGETAG_FAULT_SEED if set),
so a failing run can be replayed. `make fault-test` runs this folder alone.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.broker import Broker, BrokerFactory, Subscriber
from tests.test_daemon import drop, drop_stream, fill, folder_source, jpeg_variant, names

BURST = 36
EVENTS = "edgetag/pi/events/#"


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("EDGETAG_FAULT_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"fault seed: EDGETAG_FAULT_SEED={seed}")
    return random.Random(seed)


def tag_events(subscriber: Subscriber) -> list[dict[str, Any]]:
    """What edgetag published as tag events (a hostile client's junk on the same topics is not one).

    A copy the broker sends this subscriber again (DUP set: the broker went down before it had our
    acknowledgement) is MQTT's at-least-once between the broker and us, not edgetag publishing
    twice: edgetag's own second publish would reach us without DUP. Such copies are left out.
    """
    found: list[dict[str, Any]] = []
    for message in subscriber.messages:
        if not mqtt.topic_matches_sub(EVENTS, message.topic):
            continue
        try:
            event = message.json()
        except ValueError:
            continue
        if not (isinstance(event, dict) and isinstance(event.get("photo"), dict) and "sentence" in event):
            continue
        if message.dup and any(earlier["id"] == event["id"] for earlier in found):
            continue
        found.append(event)
    return found


def assert_each_photo_once(subscriber: Subscriber, expected: list[str], timeout: float = 120) -> None:
    """Every photo of the folder once by name, and no event id twice (MQTT photos all share a name)."""

    def folder_names() -> Counter[str]:
        return Counter(names([e for e in tag_events(subscriber) if e["source"] == "inbox"]))

    subscriber.wait_until(lambda: set(folder_names()) >= set(expected), timeout=timeout)
    time.sleep(2.0)  # anything published twice would arrive by now
    by_name = folder_names()
    assert sorted(by_name) == sorted(expected)
    assert set(by_name.values()) == {1}, f"published twice: {[n for n, c in by_name.items() if c > 1]}"
    by_id = Counter(event["id"] for event in tag_events(subscriber))
    assert set(by_id.values()) == {1}, f"ids published twice: {[i for i, c in by_id.items() if c > 1]}"


def still_serving(subscriber: Subscriber, inbox: Path) -> None:
    drop(inbox, "after.jpg", "chelsea.jpg")
    subscriber.wait_until(lambda: "after.jpg" in names(tag_events(subscriber)), timeout=60)


def expected_names(count: int = BURST) -> list[str]:
    return [f"{index:03d}.jpg" for index in range(count)]


def test_random_sigkills_during_a_burst(
    broker: Broker, tmp_path: Path, start_daemon: Any, rng: random.Random
) -> None:
    inbox, state = tmp_path / "inbox", tmp_path / "state"
    inbox.mkdir()
    subscriber = Subscriber(broker, EVENTS)
    daemon = start_daemon(broker, sources=[folder_source(inbox)], state=state)
    stream = drop_stream(inbox, BURST, per_second=12)
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.5))
        daemon.kill()  # SIGKILL: wherever it was (decoding, storing, publishing, recording delivery)
        daemon = start_daemon(broker, sources=[folder_source(inbox)], state=state)
    stream.join()
    assert_each_photo_once(subscriber, expected_names())
    still_serving(subscriber, inbox)


def test_broker_restarts_during_a_burst(
    broker_factory: BrokerFactory, tmp_path: Path, start_daemon: Any, rng: random.Random
) -> None:
    broker = broker_factory(persistence=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, EVENTS, persistent=True, client_id="watcher")
    daemon = start_daemon(broker, sources=[folder_source(inbox)])
    stream = drop_stream(inbox, BURST, per_second=12)
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.2))
        broker.stop()
        time.sleep(rng.uniform(0.2, 1.5))  # photos keep arriving and are tagged while it is away
        broker.start()
    stream.join()
    assert_each_photo_once(subscriber, expected_names())
    still_serving(subscriber, inbox)
    assert daemon.alive


def test_the_state_disk_fills_up_during_a_burst(
    broker: Broker, tmp_path: Path, small_disk: Path, start_daemon: Any, rng: random.Random
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, EVENTS)
    daemon = start_daemon(broker, sources=[folder_source(inbox)], state=small_disk / "state")
    stream = drop_stream(inbox, BURST, per_second=12)
    for _ in range(2):
        time.sleep(rng.uniform(0.2, 1.0))
        filler = fill(small_disk)  # no room for an event, nor for the folder's state
        time.sleep(rng.uniform(0.5, 2.0))
        filler.unlink()
    stream.join()
    assert_each_photo_once(subscriber, expected_names())
    still_serving(subscriber, inbox)
    assert daemon.alive


class Hostile:
    """Another client on the same broker, allowed to publish anywhere (no ACL): what it may try."""

    def __init__(self, broker: Broker, rng: random.Random) -> None:
        self.client = broker.client("hostile", protocol=mqtt.MQTTv5)
        self.rng = rng
        self.seen: list[str] = []
        self.client.on_message = lambda _c, _u, message: self._echo(message)
        self.client.subscribe("edgetag/#", qos=1)

    def _echo(self, message: mqtt.MQTTMessage) -> None:
        """Replays a fake echo of every id it sees, as if to confirm events not yet published."""
        try:
            event_id = json.loads(message.payload)["id"]
        except (ValueError, KeyError, TypeError):
            return
        if message.topic.startswith("edgetag/pi/events/") and event_id not in self.seen:
            self.seen.append(event_id)
            self.client.publish(message.topic, json.dumps({"id": event_id}).encode(), qos=1)

    def one_attack(self) -> None:
        attack = self.rng.choice(["junk", "request", "online", "command", "fake-event"])
        if attack == "junk":  # not a photo on the MQTT source, and a payload that is not even UTF-8
            self.client.publish("cams/jpeg", bytes(self.rng.randrange(256) for _ in range(300)), qos=1)
        elif attack == "request":  # a request whose reply topic would make edgetag publish anywhere
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = self.rng.choice(["replies/#", "+", "$SYS/x", "edgetag/pi/events/x"])
            image = jpeg_variant(self.rng.randrange(40, 95))
            self.client.publish("cams/jpeg", image, qos=1, properties=properties)
        elif attack == "online":  # Home Assistant's status, flooded
            for _ in range(50):
                self.client.publish("homeassistant/status", b"online", qos=0)
        elif attack == "command":
            self.client.publish("edgetag/pi/inbox/capture", b"\x00\xff{", qos=1)
        else:  # a forged echo for an id that does not exist (yet)
            fake = "".join(self.rng.choice("0123456789abcdef") for _ in range(32))
            self.client.publish("edgetag/pi/events/inbox", json.dumps({"id": fake}).encode(), qos=1)


@pytest.fixture
def hostile(broker: Broker, rng: random.Random) -> Iterator[Hostile]:
    attacker = Hostile(broker, rng)
    yield attacker
    attacker.client.disconnect()


def test_a_hostile_client_on_the_same_broker(
    broker: Broker, tmp_path: Path, start_daemon: Any, hostile: Hostile, rng: random.Random
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, EVENTS)
    daemon = start_daemon(broker, sources=[
        folder_source(inbox), {"type": "mqtt", "name": "cams", "topic": "cams/jpeg"},
    ], homeassistant={"enabled": True})  # fmt: skip
    stream = drop_stream(inbox, BURST, per_second=12)
    while stream.is_alive():
        hostile.one_attack()
        time.sleep(rng.uniform(0.05, 0.3))
    assert_each_photo_once(subscriber, expected_names())
    still_serving(subscriber, inbox)
    assert daemon.alive
    assert not [m for m in subscriber.messages if m.topic.startswith(("replies/", "$SYS"))]
