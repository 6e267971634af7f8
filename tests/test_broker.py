"""The broker fixtures themselves: a real mosquitto with auth, TLS, restarts and shared subscriptions."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.broker import Broker, BrokerFactory, ConnectFailed, MQTTv5, MQTTv311, Subscriber

ROOT = Path(__file__).resolve().parent.parent


def publish(
    client: mqtt.Client,
    topic: str,
    payload: bytes,
    *,
    retain: bool = False,
    properties: Properties | None = None,
) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain, properties=properties)
    info.wait_for_publish(5)
    assert info.is_published(), f"PUBACK for {topic} never came"


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition still false after timeout"
        time.sleep(0.02)


def mosquitto_alive(pid: int) -> bool:
    """True if ``pid`` is a running mosquitto (a reaped or zombie process has no cmdline)."""
    try:
        return b"mosquitto" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


def test_plain_broker_delivers_qos1_and_retained(broker: Broker) -> None:
    publisher = broker.client("camera")
    publish(publisher, "edgetag/status", b"online", retain=True)  # before anyone subscribes
    subscriber = Subscriber(broker, "edgetag/#")
    [status] = subscriber.wait_for(lambda m: m.topic == "edgetag/status")
    assert status.retain and status.payload == b"online"

    publish(publisher, "edgetag/events", b'{"tags": ["cat"]}')
    [event] = subscriber.wait_for(lambda m: m.topic == "edgetag/events")
    assert (event.qos, event.retain, event.json()) == (1, False, {"tags": ["cat"]})


def test_v5_user_properties_reach_the_subscriber(broker: Broker) -> None:
    subscriber = Subscriber(broker, "edgetag/+", protocol=MQTTv5)
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = ("model", "efficientnet-lite0")
    publish(broker.client("camera", MQTTv5), "edgetag/tags", b"[]", properties=properties)
    [message] = subscriber.wait_for(lambda m: m.topic == "edgetag/tags")
    assert message.user_properties == (("model", "efficientnet-lite0"),)


def test_auth_broker_accepts_the_right_password(auth_broker: Broker) -> None:
    client = auth_broker.client("good-client")
    assert client.is_connected()
    assert "u'edgetag'" in auth_broker.wait_for_log("as good-client")


@pytest.mark.parametrize("protocol", [MQTTv311, MQTTv5])
def test_auth_broker_refuses_a_wrong_password(auth_broker: Broker, protocol: MQTTProtocolVersion) -> None:
    client = auth_broker.new_client("intruder", protocol, auth=False)
    client.username_pw_set("edgetag", "not-the-password")
    with pytest.raises(ConnectFailed) as refused:
        auth_broker.connect(client)
    assert refused.value.reason_code is not None
    # mosquitto sends rc 5 (v3.1.1) / 135 (v5); paho 2 reports both as the v5 code "Not authorized"
    assert (refused.value.reason_code.value, str(refused.value.reason_code)) == (135, "Not authorized")
    expected_rc = "(0, 5)" if protocol == MQTTv311 else "(0, 135)"
    auth_broker.wait_for_log(f"Sending CONNACK to 127.0.0.1 {expected_rc}")
    auth_broker.wait_for_log("disconnected, not authorised")  # written after the CONNACK went out


def test_auth_broker_refuses_anonymous_clients(auth_broker: Broker) -> None:
    with pytest.raises(ConnectFailed, match="Not authorized"):
        auth_broker.client("anonymous", auth=False)


def test_tls_broker_works_with_the_right_ca(tls_broker: Broker) -> None:
    subscriber = Subscriber(tls_broker, "edgetag/#")
    client = tls_broker.client("tls-client", MQTTv5)
    assert isinstance(client.socket(), ssl.SSLSocket)
    publish(client, "edgetag/events", b"over tls")
    subscriber.wait_for(lambda m: m.payload == b"over tls")


def test_tls_broker_rejects_the_wrong_ca(tls_broker: Broker) -> None:
    assert tls_broker.wrong_ca_file is not None
    client = tls_broker.new_client("wrong-ca", tls=False)
    client.tls_set(ca_certs=str(tls_broker.wrong_ca_file), cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        tls_broker.connect(client)
    tls_broker.wait_for_log("alert unknown ca")


def test_tls_broker_rejects_plain_mqtt(tls_broker: Broker) -> None:
    with pytest.raises(ConnectFailed, match="no CONNACK"):
        tls_broker.client("plain", tls=False)


def test_client_cert_broker_needs_a_client_certificate(tls_client_cert_broker: Broker) -> None:
    broker = tls_client_cert_broker
    with pytest.raises((ConnectFailed, ssl.SSLError)):  # TLS 1.3 reports it after the handshake
        broker.client("no-cert", client_cert=False)
    broker.wait_for_log("peer did not return a certificate")

    client = broker.client("with-cert")  # the client certificate is the default here
    assert client.is_connected()
    broker.wait_for_log("as with-cert")


def test_restart_keeps_the_port_and_clients_reconnect_by_themselves(broker: Broker) -> None:
    port, first_pid = broker.port, broker.pid
    subscriber = Subscriber(broker, "edgetag/#", client_id="watcher")
    client = broker.new_client("daemon")
    client.reconnect_delay_set(min_delay=1, max_delay=2)
    connects: list[float] = []
    broker.connect(client, on_connected=lambda c: connects.append(time.monotonic()))

    broker.restart()
    assert (broker.port, broker.running) == (port, True)
    assert broker.pid != first_pid and not mosquitto_alive(first_pid or 0)
    eventually(lambda: len(connects) == 2 and client.is_connected())
    subscriber.wait_subscribed(2, timeout=10)  # the Subscriber subscribes again on reconnect
    publish(client, "edgetag/events", b"after restart")
    subscriber.wait_for(lambda m: m.payload == b"after restart")


def test_kill_then_start_works(broker: Broker) -> None:
    port, pid = broker.port, broker.pid
    assert pid is not None and mosquitto_alive(pid)
    broker.kill()
    assert not broker.running and not mosquitto_alive(pid)
    broker.start()
    assert (broker.running, broker.port) == (True, port) and broker.pid != pid
    client = broker.client("after-kill")
    assert client.is_connected()
    client.disconnect()
    broker.stop()
    broker.stop()  # idempotent
    assert not broker.running


def test_shared_subscription_delivers_each_message_to_one_member(broker: Broker) -> None:
    members = [Subscriber(broker, "$share/taggers/edgetag/jobs", client_id=f"tagger{i}") for i in range(2)]
    everything = Subscriber(broker, "edgetag/jobs", client_id="auditor")  # proves what was sent
    publisher = broker.client("camera", MQTTv5)
    sent = [f"photo-{i}".encode() for i in range(20)]
    for payload in sent:
        publish(publisher, "edgetag/jobs", payload)

    everything.wait_count(len(sent))
    eventually(lambda: sum(len(m.messages) for m in members) >= len(sent))
    time.sleep(0.2)  # a duplicate would arrive late
    received = Counter(m.payload for member in members for m in member.messages)
    assert received == Counter(sent), "each message exactly once across the group"
    assert all(member.messages for member in members), "both members got a share"


def test_factory_close_stops_every_broker(broker_factory: BrokerFactory) -> None:
    brokers = [
        broker_factory(),
        broker_factory(auth=True),
        broker_factory(tls=True, require_client_cert=True),
    ]
    for broker in brokers:
        Subscriber(broker, "x")
    pids = [broker.pid or 0 for broker in brokers]
    assert all(map(mosquitto_alive, pids))
    broker_factory.close()
    assert not any(map(mosquitto_alive, pids))
    assert not any(broker.running for broker in brokers)


def test_fixtures_leave_no_process_behind_even_when_a_test_fails(tmp_path: Path) -> None:
    """Runs a small pytest session that uses every fixture (one test fails on purpose) and checks the
    recorded pids after its fixtures are torn down (in pytest_sessionfinish, before any atexit)."""
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        pytest_plugins = ["tests.broker"]

        def pytest_sessionfinish(session, exitstatus):
            pids = Path("pids").read_text().split()
            alive = [p for p in pids if Path(f"/proc/{p}").exists() and b"mosquitto" in
                     Path(f"/proc/{p}/cmdline").read_bytes()]
            Path("alive").write_text(" ".join(alive))
        """)
    )
    (tmp_path / "test_inner.py").write_text(
        textwrap.dedent("""
        from pathlib import Path
        from tests.broker import Subscriber

        def record(*brokers):
            with Path("pids").open("a") as f:
                f.write("".join(f"{b.pid}\\n" for b in brokers))

        def test_passes(broker, auth_broker):
            Subscriber(auth_broker, "x")
            record(broker, auth_broker)

        def test_fails(tls_broker, tls_client_cert_broker, broker_factory):
            extra = broker_factory(auth=True)
            Subscriber(tls_client_cert_broker, "x")
            record(tls_broker, tls_client_cert_broker, extra)
            assert False, "deliberate failure"
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "."]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 5
    assert (tmp_path / "alive").read_text() == "", "still running after fixture teardown"
    assert not any(map(mosquitto_alive, pids))
