"""`edgetag demo`: the daemon on the sample photos, and the events as a subscriber receives them.

It needs an MQTT broker: the one on localhost:1883 if it answers, else a Mosquitto started just for
the demo on a free port (when the `mosquitto` binary is installed), stopped again at the end. The
daemon runs in this process with a temporary state folder and watches a copy of the photos; the
demo exits once every photo's event has arrived. It publishes under the prefix `edgetag-demo` and clears
its retained topics afterwards, so a real broker is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgetag.config import (
    Config,
    DeviceConfig,
    FolderSourceConfig,
    HomeAssistantConfig,
    LoggingConfig,
    MqttConfig,
    StatsConfig,
)
from edgetag.daemon import Daemon
from edgetag.errors import ConfigError
from edgetag.logs import setup_logging
from edgetag.topics import Topics

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PREFIX, DEVICE = "edgetag-demo", "demo"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def run_demo(photos: Path | None, timeout: float) -> int:
    folder = photos or SAMPLES
    expected = sorted(p.name for p in folder.glob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
    if not expected:
        raise ConfigError(f"no photos in {folder} (give a folder with --photos)")
    setup_logging("warning")
    with _broker() as (host, port), tempfile.TemporaryDirectory(prefix="edgetag-demo-") as state:
        print(f"broker: {host}:{port}; tagging {len(expected)} photos in {folder}\n")
        topics = Topics(PREFIX, DEVICE)
        viewer = _Viewer(len(expected))
        subscriber = _subscribe(host, port, topics.all_events, viewer)
        watched = Path(state) / "photos"  # a copy: the demo leaves the photo folder as it was
        watched.mkdir()
        for name in expected:
            shutil.copy2(folder / name, watched / name)
        daemon = Daemon(_config(watched, host, port, Path(state) / "state"), env={})
        daemon.start()
        try:
            finished = viewer.done.wait(timeout)
        finally:
            daemon.stop()
            _clear_retained(host, port, topics)
            subscriber.loop_stop()
            subscriber.disconnect()
    print(f"\n{len(viewer.received)} of {len(expected)} events received on {topics.base}/events/+")
    return 0 if finished else 1


def _config(folder: Path, host: str, port: int, state: Path) -> Config:
    return Config(
        device=DeviceConfig(name=DEVICE, state_dir=state),
        mqtt=MqttConfig(
            host=host, port=port, topic_prefix=PREFIX, client_id=f"edgetag-demo-{time.time_ns()}"
        ),
        homeassistant=HomeAssistantConfig(enabled=False),
        stats=StatsConfig(interval_seconds=3600),
        logging=LoggingConfig(level="warning"),
        sources=[FolderSourceConfig(name="samples", path=folder, settle_seconds=0.0)],
    )


@dataclass
class _Viewer:
    """What the demo's subscriber has seen: events by id, and whether all expected have arrived."""

    wanted: int
    received: dict[str, dict[str, object]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


def _subscribe(host: str, port: int, topic: str, viewer: _Viewer) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edgetag-demo-viewer-{time.time_ns()}")
    subscribed = threading.Event()

    def on_connect(c: paho.Client, *_: object) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    def on_message(_c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        event = json.loads(message.payload)
        viewer.received[str(event["id"])] = event
        photo = event["photo"]["name"]
        tags = ", ".join(f"{t['concept']} {t['score']:.2f}" for t in event["tags"]) or "-"
        print(f"{message.topic}  {photo:<18} {event['sentence']:<48} [{tags}]", flush=True)
        if len(viewer.received) >= viewer.wanted:
            viewer.done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect(host, port)
    client.loop_start()
    if not subscribed.wait(10):
        raise ConfigError(f"could not subscribe on the broker at {host}:{port}")
    return client


def _clear_retained(host: str, port: int, topics: Topics) -> None:
    """Empty retained messages delete what the demo left (availability, states, last events)."""
    found: set[str] = set()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"edgetag-demo-cleaner-{time.time_ns()}")
    client.on_message = lambda _c, _u, m: found.add(m.topic) if m.retain else None
    client.connect(host, port)
    client.loop_start()
    client.subscribe(f"{topics.base}/#")
    time.sleep(0.5)
    for topic in found:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(2)
    client.loop_stop()
    client.disconnect()


@contextlib.contextmanager
def _broker() -> Iterator[tuple[str, int]]:
    if _answers("127.0.0.1", 1883):
        yield "127.0.0.1", 1883
        return
    binary = shutil.which("mosquitto") or next(
        (str(p) for p in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto")) if p.exists()), None
    )
    if binary is None:
        raise ConfigError(
            "no MQTT broker answers on localhost:1883 and mosquitto is not installed (apt install mosquitto)"
        )
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="edgetag-demo-broker-") as folder:
        config = Path(folder) / "mosquitto.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8"
        )
        process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 5
            while not _answers("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ConfigError(f"could not start mosquitto on port {port}")
                time.sleep(0.02)
            print(f"started mosquitto for the demo (pid {process.pid})", file=sys.stderr)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(5)


def _answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
