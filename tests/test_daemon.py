"""`edgetag run` end to end: real daemon processes, real Mosquitto brokers, real models and photos.

Each test starts its own broker on a free port (plain, password, TLS) and one or more daemons, puts
photos in (a folder, MQTT payloads), and checks what a subscriber receives: one event per photo,
none lost when the broker or the daemon goes down, none twice, clear errors for bad input, and no
image data anywhere on the broker.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from PIL import Image
from referencing import Registry, Resource

from edgetag.config import CameraSourceConfig, Config, DeviceConfig, HomeAssistantConfig, MqttConfig
from edgetag.daemon import Daemon
from tests.broker import Broker, BrokerFactory, Subscriber
from tests.conftest import ROOT, SAMPLES, png_bomb
from tests.daemon_process import DaemonProcess, daemon_config
from tests.test_sources import FakePicamera2, camera_frame

SCHEMAS = ROOT / "docs" / "schema"
EVENT = "edgetag/pi/events/inbox"
PHOTOS = ["chelsea.jpg", "two_people.jpg", "coffee.jpg", "astronaut.jpg", "motorcycle.jpg", "china.jpg"]


def schema(name: str) -> jsonschema.protocols.Validator:
    registry: Registry[Any] = Registry()
    for path in SCHEMAS.glob("*.json"):
        resource = Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))
        registry = registry.with_resource(path.name, resource)
    document = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(document, registry=registry)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons (each with its own state folder unless given); all are killed at teardown.

    Unless `online=False`, waits for the daemon to say `online` on the broker: it subscribes to its
    sources before that, so a test may publish photos to it right away.
    """
    started: list[DaemonProcess] = []

    def start(
        broker: Broker, *, name: str = "pi", state: Path | None = None, online: bool = True, **options: Any
    ) -> DaemonProcess:
        state = state or tmp_path / f"state-{name}"
        device = options.pop("device", name)
        config = daemon_config(broker, state, device=device, **options)
        availability = Subscriber(broker, f"edgetag/{device}/availability") if online else None
        daemon = DaemonProcess(tmp_path / "daemons", config, name=f"{name}-{len(started)}").start()
        started.append(daemon)
        daemon.wait_log("running as", timeout=60)
        if availability is not None:  # live (not retained): this daemon, not one before it
            availability.wait_for(lambda m: m.payload == b"online" and not m.retain, timeout=60)
            availability.close()
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def folder_source(inbox: Path, **options: Any) -> dict[str, Any]:
    return {"type": "folder", "name": "inbox", "path": str(inbox), **options}


def drop(inbox: Path, name: str, sample: str | None = None) -> None:
    """Put a photo in the folder the way upload tools do: a temporary name, then a rename."""
    inbox.mkdir(exist_ok=True)
    temporary = inbox / f".{name}.part"
    shutil.copy(SAMPLES / (sample or name), temporary)
    temporary.rename(inbox / name)


def drop_stream(inbox: Path, count: int, per_second: float) -> threading.Thread:
    """A camera-like stream of photos named 000.jpg, 001.jpg... in the background."""

    def run() -> None:
        for index in range(count):
            drop(inbox, f"{index:03d}.jpg", PHOTOS[index % len(PHOTOS)])
            time.sleep(1 / per_second)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def events(subscriber: Subscriber, topic: str = EVENT) -> list[dict[str, Any]]:
    return [m.json() for m in subscriber.messages if mqtt.topic_matches_sub(topic, m.topic)]


def names(found: list[dict[str, Any]]) -> list[str]:
    return [event["photo"]["name"] for event in found]


def wait_events(
    subscriber: Subscriber, count: int, topic: str = EVENT, timeout: float = 90
) -> list[dict[str, Any]]:
    subscriber.wait_until(lambda: len(events(subscriber, topic)) >= count, timeout=timeout)
    return events(subscriber, topic)


def jpeg_variant(quality: int) -> bytes:
    """A distinct JPEG of the same real photo (each quality encodes differently)."""
    buffer = io.BytesIO()
    with Image.open(SAMPLES / "chelsea.jpg") as photo:
        photo.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# --- the folder source, end to end -------------------------------------------------------------


def test_photos_in_a_folder_become_one_event_each(broker: Broker, tmp_path: Path, start_daemon: Any) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    everything = Subscriber(broker, "#")
    daemon = start_daemon(
        broker, sources=[folder_source(inbox, after="delete")], homeassistant={"concepts": ["person", "cat"]}
    )
    everything.wait_until(lambda: any(m.topic == "edgetag/pi/availability" and m.payload == b"online"
                                    for m in everything.messages))  # fmt: skip
    for name in ("chelsea.jpg", "two_people.jpg", "coffee.jpg"):
        drop(inbox, name)
    found = {event["photo"]["name"]: event for event in wait_events(everything, 3)}
    assert found["chelsea.jpg"]["sentence"] == "Image may contain: cat"
    assert found["two_people.jpg"]["sentence"] == "Image may contain: 2 people and people smiling"
    assert {t["concept"] for t in found["coffee.jpg"]["tags"]} & {"coffee", "cup"}
    validator = schema("tag-event.schema.json")
    for event in found.values():
        validator.validate(event)
        assert (event["device"], event["source"], event["version"]) == ("pi", "inbox", 1)

    retained = {
        m.topic: m.payload for m in everything.messages if m.retain or m.topic.startswith("edgetag/pi/inbox/")
    }
    assert json.loads(retained["edgetag/pi/inbox/last"])["id"] in {e["id"] for e in found.values()}
    assert retained["edgetag/pi/inbox/person"] in {b"0", b"2"}
    configs = [
        m for m in everything.messages if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")
    ]
    assert any("person" in m.topic for m in configs) and any("cat" in m.topic for m in configs)

    deadline = time.monotonic() + 10
    while any(inbox.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(inbox.iterdir()), "after = delete: each photo is deleted once its event is stored"
    assert daemon.stop() == 0
    everything.wait_until(lambda: everything.messages[-1].topic == "edgetag/pi/availability"
                        and everything.messages[-1].payload == b"offline")  # fmt: skip
    assert "tagged inbox/chelsea.jpg: Image may contain: cat" in daemon.log()


def test_a_broader_concept_sensor_sees_its_kinds(broker: Broker, tmp_path: Path, start_daemon: Any) -> None:
    """Home Assistant asks for "animal"; the photo says "cat": the animal sensor turns on."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    everything = Subscriber(broker, "#")
    start_daemon(broker, sources=[folder_source(inbox)], homeassistant={"concepts": ["animal"]})
    drop(inbox, "chelsea.jpg")
    (cat,) = wait_events(everything, 1)
    assert cat["sentence"] == "Image may contain: cat" and cat["tags"][0]["parents"] == ["animal"]
    animal = "edgetag/pi/inbox/animal"
    everything.wait_until(lambda: any(m.topic == animal and m.payload == b"1" for m in everything.messages))
    drop(inbox, "coffee.jpg")
    wait_events(everything, 2)
    everything.wait_until(lambda: [m.payload for m in everything.messages if m.topic == animal][-1] == b"0")
    configs = [m.topic for m in everything.messages if m.topic.startswith("homeassistant/")]
    assert any("animal" in topic and topic.endswith("/config") for topic in configs)


def test_photos_that_arrived_while_down_are_tagged_and_old_ones_are_not_repeated(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    drop(inbox, "chelsea.jpg")
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    first = start_daemon(broker, sources=[folder_source(inbox)])
    wait_events(subscriber, 1)
    assert first.stop() == 0
    drop(inbox, "coffee.jpg")  # arrives while edgetag is down
    second = start_daemon(broker, sources=[folder_source(inbox)])
    wait_events(subscriber, 2)
    time.sleep(1.5)
    assert sorted(names(events(subscriber))) == ["chelsea.jpg", "coffee.jpg"]
    assert second.stop() == 0


# --- MQTT in: request/reply, shared subscriptions ------------------------------------------------


def test_mqtt_v5_request_reply(broker: Broker, start_daemon: Any) -> None:
    start_daemon(broker, sources=[{"type": "mqtt", "name": "cams", "topic": "cams/+/jpeg"}])
    replies = Subscriber(broker, "replies/me")
    published = Subscriber(broker, "edgetag/pi/events/cams")
    requester = broker.client("requester", mqtt.MQTTv5)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = "replies/me"
    properties.CorrelationData = b"request-42"
    requester.publish("cams/front/jpeg", (SAMPLES / "chelsea.jpg").read_bytes(), qos=1, properties=properties)
    (reply,) = replies.wait_count(1, timeout=60)
    event = reply.json()
    assert event["sentence"] == "Image may contain: cat"
    assert event["photo"]["name"] == "cams/front/jpeg"
    assert getattr(reply.properties, "CorrelationData", None) == b"request-42"
    (announced,) = published.wait_count(1, timeout=30)
    assert announced.json()["id"] == event["id"], "the photo is also one event on the events topic"


def test_two_daemons_on_a_shared_subscription_tag_each_image_once(broker: Broker, start_daemon: Any) -> None:
    source = {"type": "mqtt", "name": "stream", "topic": "stream/jpeg", "share_group": "taggers"}
    start_daemon(broker, name="a", sources=[source])
    start_daemon(broker, name="b", sources=[source])
    subscriber = Subscriber(broker, "edgetag/+/events/stream")
    camera = broker.client("camera")
    images = [jpeg_variant(quality) for quality in range(60, 80)]
    for image in images:
        camera.publish("stream/jpeg", image, qos=1)
    subscriber.wait_count(len(images), timeout=120)
    time.sleep(1.5)
    messages = subscriber.messages
    ids = Counter(m.json()["id"] for m in messages)
    assert len(ids) == len(images) and set(ids.values()) == {1}, "each image tagged by exactly one daemon"
    by_device = Counter(m.json()["device"] for m in messages)
    assert by_device["a"] > 0 and by_device["b"] > 0, f"the stream was split: {by_device}"


# --- nothing lost, nothing twice ------------------------------------------------------------------


def test_a_broker_restart_mid_stream_loses_no_event(
    broker_factory: BrokerFactory, tmp_path: Path, start_daemon: Any
) -> None:
    broker = broker_factory(persistence=True)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, "edgetag/pi/events/#", persistent=True, client_id="watcher")
    daemon = start_daemon(broker, sources=[folder_source(inbox)])
    stream = drop_stream(inbox, 24, per_second=12)
    wait_events(subscriber, 6)
    broker.stop()
    time.sleep(1.5)  # photos keep arriving and are tagged while the broker is away
    broker.start()
    stream.join()
    subscriber.wait_until(lambda: len(set(names(events(subscriber)))) >= 24, timeout=120)
    assert sorted(set(names(events(subscriber)))) == [f"{i:03d}.jpg" for i in range(24)]
    assert daemon.alive
    assert "MQTT connection to" in daemon.log() and "; reconnecting in" in daemon.log()


def test_the_daemon_killed_mid_stream_loses_nothing_and_publishes_nothing_twice(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    state = tmp_path / "state"
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    daemon = start_daemon(broker, sources=[folder_source(inbox)], state=state)
    stream = drop_stream(inbox, 30, per_second=15)
    wait_events(subscriber, 8)
    daemon.kill()  # SIGKILL: no chance to clean up
    stream.join()
    start_daemon(broker, sources=[folder_source(inbox)], state=state)
    wait_events(subscriber, 30)
    time.sleep(2.0)  # anything published twice would arrive by now
    received = Counter(names(events(subscriber)))
    assert sorted(received) == [f"{i:03d}.jpg" for i in range(30)]
    assert set(received.values()) == {1}, f"published twice: {[n for n, c in received.items() if c > 1]}"


def test_sigterm_during_a_burst_finishes_or_keeps_every_photo(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    for index in range(40):
        drop(inbox, f"{index:03d}.jpg", PHOTOS[index % len(PHOTOS)])
    state = tmp_path / "state"
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    daemon = start_daemon(broker, sources=[folder_source(inbox)], state=state)
    wait_events(subscriber, 5)
    assert daemon.stop(timeout=30) == 0
    assert "stopping: finishing the photos in flight" in daemon.log()
    start_daemon(broker, sources=[folder_source(inbox)], state=state)
    wait_events(subscriber, 40)
    time.sleep(1.5)
    received = Counter(names(events(subscriber)))
    assert len(received) == 40 and set(received.values()) == {1}


# --- brokers that refuse us ---------------------------------------------------------------------------


def test_a_wrong_password_is_reported_retried_and_published_once_it_works(
    auth_broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    state = tmp_path / "state"
    password = tmp_path / "wrong-password"
    password.write_text("not-the-password\n", encoding="utf-8")
    daemon = start_daemon(auth_broker, state=state, mqtt={"password_file": str(password)}, online=False)
    daemon.wait_log("the broker refused us: Not authorized (check mqtt.username and the password)")
    daemon.wait_log("still cannot connect", timeout=20)
    assert daemon.alive, "a refusing broker does not stop edgetag"
    assert daemon.stop() == 0
    errors = Subscriber(auth_broker, "edgetag/pi/errors")
    start_daemon(auth_broker, state=state)  # the right password this time
    (message,) = errors.wait_count(1, timeout=30)
    error = message.json()
    schema("error-event.schema.json").validate(error)
    assert (error["source"], error["reason"]) == ("mqtt", "broker-refused")


@pytest.mark.parametrize("ca", ["wrong", "system"])
def test_an_untrusted_broker_certificate_is_reported_and_retried(
    tls_broker: Broker, tmp_path: Path, start_daemon: Any, ca: str
) -> None:
    # "system": no ca_file at all, so the system's CAs, which do not know the test CA.
    ca_file = str(tls_broker.wrong_ca_file) if ca == "wrong" else None
    daemon = start_daemon(tls_broker, mqtt={"ca_file": ca_file}, online=False)
    where = "mqtt.ca_file" if ca == "wrong" else "the system's CAs (set mqtt.ca_file)"
    log = daemon.wait_log("retrying with backoff")
    untrusted = "the broker's TLS certificate is not trusted: self-signed certificate in certificate chain"
    assert f"{untrusted}; check {where}" in log
    time.sleep(1.0)
    assert daemon.alive


@pytest.mark.parametrize("kind", ["tls_broker", "tls_client_cert_broker"])
def test_tls_with_a_password_or_a_client_certificate(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, start_daemon: Any
) -> None:
    broker: Broker = request.getfixturevalue(kind)
    inbox = tmp_path / "inbox"
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    start_daemon(broker, sources=[folder_source(inbox)], mqtt={"protocol": "3.1.1"})
    drop(inbox, "chelsea.jpg")
    (event,) = wait_events(subscriber, 1)
    assert event["sentence"] == "Image may contain: cat"


# --- bad input on every source ---------------------------------------------------------------------


def test_bad_files_and_payloads_get_error_events_and_the_daemon_keeps_serving(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, "edgetag/pi/#")
    start_daemon(broker, sources=[
        folder_source(inbox),
        {"type": "mqtt", "name": "cams", "topic": "cams/jpeg", "max_bytes": 200_000},
    ])  # fmt: skip
    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "truncated.jpg").write_bytes((SAMPLES / "chelsea.jpg").read_bytes()[:5000])
    (inbox / "notes.jpg").write_text("shopping list\n", encoding="utf-8")
    (inbox / "bomb.png").write_bytes(png_bomb())
    camera = broker.client("camera")
    camera.publish("cams/jpeg", b"", qos=1)
    camera.publish("cams/jpeg", b"this is not a photo", qos=1)
    camera.publish("cams/jpeg", (SAMPLES / "motorcycle.jpg").read_bytes() * 2, qos=1)  # > max_bytes
    error_topic = "edgetag/pi/errors"
    subscriber.wait_until(lambda: len(events(subscriber, error_topic)) >= 7, timeout=60)
    drop(inbox, "chelsea.jpg")  # the daemon is still serving
    camera.publish("cams/jpeg", (SAMPLES / "coffee.jpg").read_bytes(), qos=1)
    good = wait_events(subscriber, 2, topic="edgetag/pi/events/+")
    assert {e["sentence"] for e in good} >= {"Image may contain: cat"}
    errors = {(e["source"], e["photo"], e["reason"]) for e in events(subscriber, error_topic)}
    assert errors >= {
        ("inbox", "empty.jpg", "empty"),
        ("inbox", "truncated.jpg", "corrupt"),
        ("inbox", "notes.jpg", "not-an-image"),
        ("inbox", "bomb.png", "too-many-pixels"),
        ("cams", "cams/jpeg", "empty"),
        ("cams", "cams/jpeg", "not-an-image"),
        ("cams", "cams/jpeg", "too-large"),
    }
    validator = schema("error-event.schema.json")
    for error in events(subscriber, error_topic):
        validator.validate(error)
        assert error["message"]


def test_a_payload_far_over_max_bytes_never_reaches_the_daemon(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    """MQTT v5's Maximum Packet Size: the broker drops it, so 150 MB cannot exhaust a Pi's memory."""
    subscriber = Subscriber(broker, "edgetag/pi/#")
    daemon = start_daemon(broker, sources=[
        {"type": "mqtt", "name": "cams", "topic": "cams/jpeg", "max_bytes": 200_000},
    ])  # fmt: skip
    camera = broker.client("camera")
    camera.publish("cams/jpeg", b"\xff\xd8" + bytes(3 * 1024 * 1024), qos=1)  # > max_bytes + 1 MiB
    camera.publish("cams/jpeg", (SAMPLES / "coffee.jpg").read_bytes(), qos=1)
    [event] = wait_events(subscriber, 1, topic="edgetag/pi/events/+")
    assert event["photo"]["name"] == "cams/jpeg"
    time.sleep(1.0)
    assert events(subscriber, "edgetag/pi/errors") == []  # it never arrived: no too-large event
    assert "too-large" not in daemon.log()


def test_names_with_control_characters_cannot_forge_log_lines(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    """A file name or a topic with a newline in it is logged on one line, escaped; events keep it."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    subscriber = Subscriber(broker, "edgetag/pi/#")
    daemon = start_daemon(
        broker, sources=[folder_source(inbox), {"type": "mqtt", "name": "cams", "topic": "cams/#"}]
    )
    drop(inbox, "a\nFAKE LOG LINE.jpg", "chelsea.jpg")
    (inbox / "b\r\nFAKE WARNING\x1b[2J.jpg").write_text("not a photo\n", encoding="utf-8")
    camera = broker.client("camera")  # a broker refuses C0 controls in topics, not Unicode separators
    camera.publish("cams/c\u2028FAKE TOPIC\u202eFAKE TOO", b"not a photo either", qos=1)
    subscriber.wait_until(lambda: len(events(subscriber, "edgetag/pi/errors")) >= 2, timeout=60)
    (event,) = wait_events(subscriber, 1)
    assert event["photo"]["name"] == "a\nFAKE LOG LINE.jpg"
    assert daemon.stop() == 0
    log = daemon.log()
    assert [line for line in log.splitlines() if "FAKE" in line and not line.startswith("20")] == []
    assert "tagged inbox/a\\nFAKE LOG LINE.jpg: Image may contain: cat" in log
    assert "b\\r\\nFAKE WARNING\\x1b[2J.jpg" in log
    assert "cams/c\\u2028FAKE TOPIC\\u202eFAKE TOO" in log
    assert not {"\x1b", "\r", "\u2028", "\u202e"} & set(log)


def test_a_malformed_config_stops_with_a_message_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[mqtt]\nport = "eighteen"\nprot = 1\n', encoding="utf-8")
    daemon = DaemonProcess(tmp_path, config.read_text(encoding="utf-8"), name="bad").start()
    assert daemon.process is not None and daemon.process.wait(60) == 2
    log = daemon.log()
    assert "mqtt.port" in log and 'unknown key "prot"' in log
    assert "Traceback" not in log


# --- privacy, Home Assistant, hooks, stats --------------------------------------------------------


def image_fingerprints() -> list[bytes]:
    """Byte patterns that would give image data away: magic numbers, base64 of them, pieces of the photos."""
    patterns = [b"\xff\xd8\xff", b"\x89PNG\r\n", b"WEBPVP8", b"/9j/", b"iVBORw0KGgo", b"UklGR"]
    for path in SAMPLES.glob("*.jpg"):
        data = path.read_bytes()
        middle = data[len(data) // 2 : len(data) // 2 + 24]
        patterns += [middle, base64.b64encode(middle)[:24]]
    return patterns


def test_no_image_bytes_reach_the_broker_the_logs_or_the_hooks(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    hook_input = tmp_path / "hook-input.json"
    script = f"import sys, pathlib; pathlib.Path({str(hook_input)!r}).write_bytes(sys.stdin.buffer.read())"
    everything = Subscriber(broker, "#")
    alert = {
        "name": "cat-alert",
        "concept": "cat",
        "cooldown_seconds": 0.0,
        "publish": {"topic": "alerts/cat"},
    }
    run = {
        "name": "cat-script",
        "concept": "cat",
        "cooldown_seconds": 0.0,
        "run": [sys.executable, "-c", script],
    }
    daemon = start_daemon(
        broker,
        sources=[folder_source(inbox), {"type": "mqtt", "name": "cams", "topic": "cams/jpeg"}],
        homeassistant={"concepts": ["person", "cat"]},
        hooks=[alert, run],
        stats_seconds=0.5,
    )
    for name in ("chelsea.jpg", "two_people.jpg"):
        drop(inbox, name)
    camera = broker.client("camera")
    camera.publish("cams/jpeg", (SAMPLES / "coffee.jpg").read_bytes(), qos=1)
    wait_events(everything, 3, topic="edgetag/pi/events/+")
    everything.wait_until(lambda: any(m.topic == "alerts/cat" for m in everything.messages), timeout=30)
    everything.wait_until(lambda: any(m.topic == "edgetag/pi/stats" for m in everything.messages), timeout=30)
    deadline = time.monotonic() + 20
    while not hook_input.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    ours = [m for m in everything.messages if m.topic != "cams/jpeg"]  # the test itself sent the JPEG there
    assert len(ours) >= 10
    fingerprints = image_fingerprints()
    for message in ours:
        assert not any(f in message.payload for f in fingerprints), f"image data on {message.topic}"
        assert len(message.payload) < 16_000, f"suspiciously large payload on {message.topic}"
    assert daemon.stop() == 0
    for text in (daemon.log().encode(), hook_input.read_bytes()):
        assert not any(f in text for f in fingerprints)
    assert json.loads(hook_input.read_bytes())["sentence"] == "Image may contain: cat"


def discovered(broker: Broker, start_daemon: Any) -> tuple[Subscriber, int]:
    """A daemon with Home Assistant discovery, once its first round of configs has settled."""
    configs = Subscriber(broker, "homeassistant/+/+/+/config")
    start_daemon(broker, sources=[{"type": "mqtt", "name": "cams", "topic": "cams/jpeg"}],
                 homeassistant={"concepts": ["person", "dog"]})  # fmt: skip
    configs.wait_until(lambda: len(configs.messages) >= 4)
    time.sleep(0.5)
    return configs, len(configs.messages)


def test_discovery_is_sent_again_when_home_assistant_comes_online(broker: Broker, start_daemon: Any) -> None:
    configs, first = discovered(broker, start_daemon)
    topics = {m.topic for m in configs.messages}
    assert any(
        t.startswith("homeassistant/binary_sensor/") and t.endswith("cams_person/config") for t in topics
    )
    broker.client("home-assistant").publish("homeassistant/status", b"online", qos=1)
    configs.wait_until(lambda: len(configs.messages) >= 2 * first, timeout=20)
    assert {m.topic for m in configs.messages[first:]} == topics


def test_a_flood_of_online_messages_does_not_flood_discovery(broker: Broker, start_daemon: Any) -> None:
    """Regression (issue 11, item 19): 2,000 fake `online` messages re-sent 13,135 discovery messages."""
    configs, first = discovered(broker, start_daemon)
    flooder = broker.client("flooder")
    for _ in range(300):
        flooder.publish("homeassistant/status", b"online", qos=1)
    configs.wait_until(lambda: len(configs.messages) >= 2 * first, timeout=20)  # the first is answered
    time.sleep(4.0)
    rounds = len(configs.messages) / first - 1
    assert rounds <= 2, f"{rounds:.0f} discovery rounds for one burst of online messages"


def test_stats_are_published(broker: Broker, start_daemon: Any) -> None:
    stats = Subscriber(broker, "edgetag/pi/stats")
    start_daemon(broker, stats_seconds=0.3)
    message = stats.wait_count(1, timeout=30)[0].json()
    for key in ("photos_per_minute", "queue_depth", "errors_total", "outbox_pending", "latency_ms", "mqtt"):
        assert key in message
    assert message["mqtt"]["connected"] is True


def test_a_camera_source_takes_photos_on_command(broker: Broker, tmp_path: Path) -> None:
    """The daemon in-process with the camera adapter driven through its seam (no camera hardware here)."""
    fake = FakePicamera2(camera_frame())
    config = Config(
        device=DeviceConfig(name="pi", state_dir=tmp_path / "state"),
        mqtt=MqttConfig(
            host=broker.host, port=broker.port, reconnect_min_seconds=0.2, reconnect_max_seconds=1.0
        ),
        homeassistant=HomeAssistantConfig(enabled=False),
        sources=[CameraSourceConfig(name="porch", interval_seconds=0)],
    )
    subscriber = Subscriber(broker, "edgetag/pi/#")
    daemon = Daemon(config, env={}, open_camera=lambda _index: fake)
    daemon.start()
    try:
        subscriber.wait_for(lambda m: m.topic == "edgetag/pi/availability" and m.payload == b"online")
        broker.client("phone").publish("edgetag/pi/porch/capture", b"now", qos=1)
        (event,) = wait_events(subscriber, 1, topic="edgetag/pi/events/porch", timeout=30)
        assert event["sentence"] == "Image may contain: cat"
        assert event["photo"]["name"].startswith("porch-") and event["photo"]["width"] == 640
        assert daemon.stats_snapshot()["cameras"] == {"porch": True}
    finally:
        daemon.stop()
    assert fake.calls[-2:] == ["stop", "close"]


def test_retained_state_and_discovery_come_back_after_a_broker_loses_everything(
    broker: Broker, tmp_path: Path, start_daemon: Any
) -> None:
    inbox = tmp_path / "inbox"
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    daemon = start_daemon(broker, sources=[folder_source(inbox)], homeassistant={"concepts": ["cat"]})
    drop(inbox, "chelsea.jpg")
    wait_events(subscriber, 1)
    broker.restart()  # no persistence: every retained message is gone
    daemon.wait_log("MQTT connected", count=2)
    retained = Subscriber(broker, "#")

    def everything_back() -> bool:
        topics = {m.topic for m in retained.messages}
        states = {"edgetag/pi/inbox/cat", "edgetag/pi/inbox/last", "edgetag/pi/availability"} <= topics
        return states and any(t.startswith("homeassistant/binary_sensor/") for t in topics)

    retained.wait_until(everything_back, timeout=30)
    by_topic = {m.topic: m for m in retained.messages}
    assert by_topic["edgetag/pi/inbox/cat"].payload == b"1"
    assert by_topic["edgetag/pi/inbox/last"].json()["sentence"] == "Image may contain: cat"
    assert by_topic["edgetag/pi/availability"].payload == b"online"
    assert any(t.startswith("homeassistant/binary_sensor/") for t in by_topic)
    assert all(m.retain for m in by_topic.values() if not m.topic.startswith("edgetag/pi/sync"))


@pytest.mark.parametrize("response_topic", ["replies/#", "+", "edgetag/pi/events/inbox", "$SYS/x"])
def test_a_request_may_not_choose_a_wildcard_or_edgetags_own_topic_as_reply(
    broker: Broker, start_daemon: Any, response_topic: str
) -> None:
    """Regression (issue 11, item 1): a reply to `replies/#` killed publishing for good, across restarts."""
    daemon = start_daemon(broker, sources=[{"type": "mqtt", "name": "cams", "topic": "cams/+/jpeg"}])
    published = Subscriber(broker, "edgetag/pi/#")
    requester = broker.client("requester", mqtt.MQTTv5)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ResponseTopic = response_topic
    requester.publish("cams/a/jpeg", (SAMPLES / "chelsea.jpg").read_bytes(), qos=1, properties=properties)
    requester.publish("cams/b/jpeg", (SAMPLES / "coffee.jpg").read_bytes(), qos=1)
    tagged = wait_events(published, 2, topic="edgetag/pi/events/cams", timeout=60)
    assert sorted(e["photo"]["name"] for e in tagged) == ["cams/a/jpeg", "cams/b/jpeg"]
    (error,) = wait_events(published, 1, topic="edgetag/pi/errors", timeout=10)
    assert error["reason"] == "bad-response-topic"
    time.sleep(1.0)
    assert len(events(published, "edgetag/pi/events/cams")) == 2, "no reply lands on edgetag's own topics"
    assert daemon.alive


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs, to fill up (root only: mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the filesystem to the last byte; the file to delete to free it again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler


def test_disk_full_during_a_broker_outage_does_not_stop_reconnecting(
    broker_factory: BrokerFactory, tmp_path: Path, small_disk: Path, start_daemon: Any
) -> None:
    """Regression (issue 11, item 5): storing the broker-unreachable event raised OutboxError and killed
    mqtt-connect; after space and broker came back, nothing reconnected and no event was published."""
    broker = broker_factory(persistence=True)
    inbox = tmp_path / "inbox"
    daemon = start_daemon(broker, state=small_disk / "state", sources=[folder_source(inbox)])
    filler = fill(small_disk)
    broker.stop()
    daemon.wait_log("cannot connect", timeout=30)
    time.sleep(2.0)  # several connect attempts on a full disk
    filler.unlink()
    broker.start()
    subscriber = Subscriber(broker, EVENT)
    drop(inbox, "chelsea.jpg")
    (event,) = wait_events(subscriber, 1, timeout=60)
    assert event["photo"]["name"] == "chelsea.jpg"
    assert daemon.alive


def test_mqtt_photos_that_met_a_full_disk_are_tagged_once_it_has_room(
    broker: Broker, small_disk: Path, start_daemon: Any
) -> None:
    """Regression (issue 11, item 11): messages whose event could not be stored were never acknowledged
    nor delivered again; they used up the broker's receive maximum and the source stalled for good."""
    start_daemon(
        broker, state=small_disk / "state", sources=[{"type": "mqtt", "name": "cams", "topic": "cams/+"}]
    )
    subscriber = Subscriber(broker, "edgetag/pi/events/cams")
    filler = fill(small_disk)
    camera = broker.client("camera")
    images = [jpeg_variant(quality) for quality in range(60, 80)]  # more than the receive maximum (16)
    for number, image in enumerate(images):
        camera.publish(f"cams/{number:02d}", image, qos=1)
    time.sleep(4.0)
    filler.unlink()
    subscriber.wait_until(
        lambda: len({m.json()["id"] for m in subscriber.messages}) >= len(images), timeout=90
    )
    time.sleep(1.0)
    ids = Counter(m.json()["id"] for m in subscriber.messages)
    assert len(ids) == len(images) and set(ids.values()) == {1}, "each photo's event once"
