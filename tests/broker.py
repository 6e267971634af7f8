"""A real Mosquitto broker for the MQTT tests: one process per test, on a free loopback port.

Loaded as a pytest plugin (``pytest_plugins = ["tests.broker"]``), it provides the fixtures ``broker``,
``auth_broker``, ``tls_broker`` (TLS + password), ``tls_client_cert_broker`` (client certificate
required), ``broker_factory`` (any options) and ``mqtt_certs`` (certificates made once per session).
The system broker on 1883 is never used: every Broker picks its own port.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

MQTTv311 = MQTTProtocolVersion.MQTTv311
MQTTv5 = MQTTProtocolVersion.MQTTv5
MOSQUITTO = os.environ.get("MOSQUITTO") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
_LIVE: set[subprocess.Popen[bytes]] = set()  # killed at interpreter exit should a teardown never run


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    server_cert: Path  # for localhost and 127.0.0.1
    server_key: Path
    client_cert: Path  # signed by the same CA
    client_key: Path
    wrong_ca_file: Path  # an unrelated CA that signed nothing here


def make_certificates(directory: Path) -> Certificates:
    """EC P-256 keys and certificates made with the openssl CLI (~0.1 s for all of them)."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(command: str, *extra: str) -> None:
        args = ["openssl", *command.split(), *extra]
        run = subprocess.run(args, cwd=directory, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{run.stderr}")

    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for ca in ("ca", "wrong-ca"):
        ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]
        openssl(f"req -x509 {key} -days 30 -keyout {ca}.key -out {ca}.crt -subj /CN=edgetag-{ca}", *ca_ext)
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = ["basicConstraints=CA:FALSE", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid"]
        ext += [f"extendedKeyUsage={usage}"]
        ext += ["subjectAltName=DNS:localhost,IP:127.0.0.1"] if name == "server" else []
        (directory / f"{name}.ext").write_text("\n".join(ext) + "\n")
        openssl(f"req -new {key} -keyout {name}.key -out {name}.csr -subj /CN=edgetag-{name}")
        sign = f"x509 -req -CA ca.crt -CAkey ca.key -days 30 -set_serial {secrets.randbits(63)}"
        openssl(f"{sign} -in {name}.csr -extfile {name}.ext -out {name}.crt")
    names = ("ca.crt", "server.crt", "server.key", "client.crt", "client.key", "wrong-ca.crt")
    return Certificates(*(directory / name for name in names))


class ConnectFailed(AssertionError):  # noqa: N818 (an assertion: "the client connected")
    """The broker refused the CONNECT (``reason_code`` set) or dropped the connection before a CONNACK."""

    def __init__(self, message: str, reason_code: ReasonCode | None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class Broker:
    """One mosquitto process the tests own; its config, log and password file live in ``workdir``."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        auth: bool = False,
        tls: bool = False,
        require_client_cert: bool = False,
        port: int | None = None,
        certs: Certificates | None = None,
        persistence: bool = False,
        extra_config: str = "",
    ) -> None:
        """``certs``: the fixtures share one set per session; made in ``workdir`` if tls and not given.

        ``persistence``: keep sessions and queued messages across restarts, as a production broker does.
        ``extra_config``: more mosquitto.conf lines (limits such as ``max_packet_size 1024``).
        """
        if require_client_cert and not tls:
            raise ValueError("require_client_cert needs tls=True")
        self.workdir, self.auth, self.tls, self.require_client_cert = workdir, auth, tls, require_client_cert
        self.persistence = persistence
        self.extra_config = extra_config
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if port is None else port
        self._may_change_port = port is None  # until the first successful start
        self.username = "edgetag" if auth else None
        self.password = secrets.token_urlsafe(16) if auth else None
        self.certs = (certs or make_certificates(workdir / "certs")) if tls else None
        self.ca_file = self.certs.ca_file if self.certs else None
        self.client_cert = self.certs.client_cert if self.certs else None
        self.client_key = self.certs.client_key if self.certs else None
        self.wrong_ca_file = self.certs.wrong_ca_file if self.certs else None
        self.log_file = workdir / "mosquitto.log"
        self.pid: int | None = None  # of the last process started; kept after stop() for leak checks
        self._proc: subprocess.Popen[bytes] | None = None
        self._clients: list[mqtt.Client] = []
        if self.password:
            passwd = ["mosquitto_passwd", "-c", "-b", str(workdir / "passwd"), "edgetag", self.password]
            subprocess.run(passwd, check=True, capture_output=True)

    def __repr__(self) -> str:
        options = " ".join(o for o in ("auth", "tls", "require_client_cert") if getattr(self, o)) or "plain"
        return f"<Broker {self.host}:{self.port} {options} pid={self.pid} running={self.running}>"

    def _config(self) -> str:
        config = f"""\
            listener {self.port} {self.host}
            persistence {str(self.persistence).lower()}
            persistence_location {self.workdir}/
            log_dest file {self.log_file}
            log_type all
            max_queued_messages 10000
            max_inflight_messages 20
            allow_anonymous {str(not self.auth).lower()}
            """
        if os.geteuid() == 0:  # else mosquitto drops to user "mosquitto", who cannot read our temp dirs
            config += "user root\n"
        if self.auth:
            config += f"password_file {self.workdir / 'passwd'}\n"
        if self.certs:
            config += f"cafile {self.ca_file}\n"
            config += f"certfile {self.certs.server_cert}\nkeyfile {self.certs.server_key}\n"
        if self.require_client_cert:
            config += "require_certificate true\n"
        config += self.extra_config
        return "\n".join(line.strip() for line in config.splitlines()) + "\n"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 5.0) -> str:
        """Wait until ``text`` is in the log; mosquitto may write a line after the client got its answer."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                tail = "\n".join(log.splitlines()[-10:])
                raise AssertionError(
                    f"{text!r} not in the log of {self!r} after {timeout} s; its end:\n{tail}"
                )
            time.sleep(0.01)
        return log

    def start(self, timeout: float = 5.0) -> None:
        """Start, and wait until the log says "running" (after the listener is bound).

        Port taken: before the first start, pick another; on a restart, retry the same port a few times.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        for attempt in range(5):
            error = self._launch(timeout)
            if error is None:
                self._may_change_port = False
                return
            if "Address already in use" not in error or attempt == 4:
                raise RuntimeError(error)
            if self._may_change_port:
                self.port = free_port()
            else:
                time.sleep(0.2 * (attempt + 1))

    def _launch(self, timeout: float) -> str | None:
        config = self.workdir / "mosquitto.conf"
        config.write_text(self._config())
        offset = len(self.log())  # the log file is appended to across restarts
        with (self.workdir / "mosquitto.out").open("wb") as out:  # errors from before the log file opens
            proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
        self._proc, self.pid = proc, proc.pid
        _LIVE.add(proc)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if " running" in self.log()[offset:]:
                return None
            time.sleep(0.005)
        why = f"not ready in {timeout} s" if proc.poll() is None else f"exited with code {proc.returncode}"
        self.kill()
        output = (self.workdir / "mosquitto.out").read_text(errors="replace")
        tail = "\n".join(self.log()[offset:].splitlines()[-15:])
        return f"mosquitto on port {self.port} {why}\noutput:\n{output}\nlog:\n{tail}"

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 5 s); nothing to do if not running."""
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self.kill()  # SIGKILL if SIGTERM was not enough; reaps and forgets the process

    def kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            _LIVE.discard(proc)

    def restart(self) -> None:
        """Stop, then start on the same port: connected clients see the broker go away and come back."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Teardown: disconnect every client made here, then SIGKILL (SIGTERM takes ~0.1 s)."""
        for client in self._clients:
            client.disconnect()
        for client in self._clients:  # after all the disconnects, so paho's 1 s reconnect sleeps overlap
            client.loop_stop()
        self._clients.clear()
        self.kill()

    def new_client(
        self,
        client_id: str = "",
        protocol: MQTTProtocolVersion = MQTTv311,
        *,
        auth: bool = True,
        tls: bool = True,
        client_cert: bool | None = None,
        clean_session: bool = True,
    ) -> mqtt.Client:
        """A paho client set up for this broker, not connected yet; closed at teardown.

        ``auth``/``tls`` False leave out the password/TLS; ``client_cert`` defaults to require_client_cert.
        ``clean_session`` False (MQTT 3.1.1 only) asks the broker to keep the session while away.
        """
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if protocol == MQTTv5 else clean_session,
        )
        if auth and self.username:
            client.username_pw_set(self.username, self.password)
        if tls and self.certs:
            cert = self.require_client_cert if client_cert is None else client_cert
            client.tls_set(
                ca_certs=str(self.ca_file),
                certfile=str(self.client_cert) if cert else None,
                keyfile=str(self.client_key) if cert else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._clients.append(client)
        return client

    def connect(
        self,
        client: mqtt.Client,
        *,
        timeout: float = 5.0,
        on_connected: Callable[[mqtt.Client], None] | None = None,
    ) -> mqtt.Client:
        """Connect, start the loop and wait for a successful CONNACK, else raise ConnectFailed.

        Sets ``client.on_connect``, ``on_disconnect`` and ``on_log``; ``on_connected`` runs after every
        successful (re)connection. TLS verification errors raise as ssl.SSLError subclasses.
        """
        done = threading.Event()
        results: list[ReasonCode | None] = []  # the first CONNACK's reason code, None if lost before it
        errors: list[str] = []  # paho's error log until then (TLS alerts, resets)

        def first(c: mqtt.Client, reason: ReasonCode | None) -> None:
            if not done.is_set():
                if reason is None or reason.is_failure:
                    c.disconnect()  # inside the loop thread loop_stop() only tells it to end: no retry,
                    c.loop_stop()  # and our loop_stop() below need not wait out paho's 1 s reconnect sleep
                results.append(reason)
                done.set()

        def on_connect(c: mqtt.Client, _: Any, f: mqtt.ConnectFlags, rc: ReasonCode, p: Any) -> None:
            first(c, rc)
            if not rc.is_failure and on_connected is not None:
                on_connected(c)

        def on_disconnect(c: mqtt.Client, _: Any, f: mqtt.DisconnectFlags, rc: ReasonCode, p: Any) -> None:
            first(c, None)

        def on_log(c: mqtt.Client, _: Any, level: int, text: str) -> None:
            if level in (mqtt.MQTT_LOG_ERR, mqtt.MQTT_LOG_WARNING) and not done.is_set():
                errors.append(text)

        client.on_connect, client.on_disconnect, client.on_log = on_connect, on_disconnect, on_log
        client.connect(self.host, self.port)  # the TLS handshake happens here
        if not done.is_set():  # a TLS 1.3 alert can already have lost the connection inside connect()
            client.loop_start()
        done.wait(timeout)
        reason = results[0] if results else None
        if reason is not None and not reason.is_failure:
            return client
        client.disconnect()
        client.loop_stop()
        why = f"refused: {reason} ({reason.value})" if reason else f"no CONNACK: {'; '.join(errors)}"
        tail = "\n".join(self.log().splitlines()[-5:])
        raise ConnectFailed(f"connect to {self!r} {why}\nbroker log tail:\n{tail}", reason)

    def client(
        self,
        client_id: str = "",
        protocol: MQTTProtocolVersion = MQTTv311,
        *,
        auth: bool = True,
        tls: bool = True,
        client_cert: bool | None = None,
    ) -> mqtt.Client:
        """A connected client, loop started; disconnected at teardown if the test does not do it."""
        return self.connect(self.new_client(client_id, protocol, auth=auth, tls=tls, client_cert=client_cert))


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None = None  # MQTT v5 only
    user_properties: tuple[tuple[str, str], ...] = ()
    dup: bool = False  # the broker sent it again (its acknowledgement was lost): at-least-once at work

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A client subscribed to ``topic`` (again after each reconnect) that records what arrives."""

    def __init__(
        self,
        broker: Broker,
        topic: str = "#",
        *,
        qos: int = 1,
        protocol: MQTTProtocolVersion = MQTTv5,
        client_id: str = "",
        timeout: float = 5.0,
        persistent: bool = False,
    ) -> None:
        """``persistent``: an MQTT 3.1.1 session the broker keeps (with ``client_id``) while it is away."""
        if persistent:
            protocol = MQTTv311
        self.topic, self.qos = topic, qos
        self.subacks = 0  # successful SUBACKs: one per (re)connection
        self._cond = threading.Condition()
        self._messages: list[Message] = []
        self._refusals: list[str] = []
        self.client = broker.new_client(client_id, protocol, clean_session=not persistent)
        self.client.on_message, self.client.on_subscribe = self._on_message, self._on_subscribe
        broker.connect(self.client, timeout=timeout, on_connected=self._subscribe)
        self.wait_subscribed(1, timeout)

    def _subscribe(self, client: mqtt.Client) -> None:
        client.subscribe(self.topic, self.qos)

    def _on_message(self, c: mqtt.Client, _: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties if c.protocol == MQTTv5 else None
        user = tuple(getattr(props, "UserProperty", ()))
        message = Message(
            msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), props, user, bool(msg.dup)
        )
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()

    def _on_subscribe(self, c: mqtt.Client, _: Any, mid: int, codes: list[ReasonCode], p: Any) -> None:
        with self._cond:
            self._refusals += [str(code) for code in codes if code.is_failure]
            self.subacks += not self._refusals
            self._cond.notify_all()

    @property
    def messages(self) -> list[Message]:
        with self._cond:
            return list(self._messages)

    def _summary(self) -> str:
        last = "".join(f"\n  {m.topic} retain={m.retain} {m.payload[:100]!r}" for m in self._messages[-5:])
        return f"{len(self._messages)} message(s) on {self.topic!r}; the last ones:{last or ' none'}"

    def wait_subscribed(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait for the ``count``-th SUBACK (``count`` - 1 reconnections)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.subacks >= count or bool(self._refusals), timeout):
                raise AssertionError(
                    f"{self.subacks} SUBACK(s) for {self.topic!r} in {timeout} s, not {count}"
                )
            if self._refusals:
                raise AssertionError(f"subscription to {self.topic!r} refused: {self._refusals}")

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 5.0) -> list[Message]:
        """Wait until at least one message matches; return all those that do."""
        found: list[Message] = []
        seen = 0

        def check() -> bool:  # only looks at messages it has not seen yet
            nonlocal seen
            found.extend(m for m in self._messages[seen:] if predicate(m))
            seen = len(self._messages)
            return bool(found)

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"no message matching {predicate} in {timeout} s; {self._summary()}")
        return found

    def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds; it may look at ``messages`` (the lock is re-entrant)."""
        with self._cond:
            if not self._cond.wait_for(condition, timeout):
                raise AssertionError(f"condition not met in {timeout} s; {self._summary()}")

    def wait_count(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Wait until at least ``count`` messages arrived; return all of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise AssertionError(f"wanted {count} messages in {timeout} s; {self._summary()}")
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BrokerFactory:
    """Makes brokers (started unless start=False) in ``directory``; ``close()`` stops them all."""

    def __init__(self, directory: Path, certs: Certificates) -> None:
        self.directory, self.certs = directory, certs
        self.brokers: list[Broker] = []
        self._stack = contextlib.ExitStack()  # closes every broker even if one close() raises

    def __call__(
        self,
        *,
        auth: bool = False,
        tls: bool = False,
        require_client_cert: bool = False,
        port: int | None = None,
        start: bool = True,
        persistence: bool = False,
        extra_config: str = "",
    ) -> Broker:
        workdir = self.directory / f"broker{len(self.brokers)}"
        broker = Broker(
            workdir, auth=auth, tls=tls, require_client_cert=require_client_cert, port=port, certs=self.certs,
            persistence=persistence, extra_config=extra_config,
        )  # fmt: skip
        self.brokers.append(broker)
        self._stack.callback(broker.close)
        if start:
            broker.start()
        return broker

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def mqtt_certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("mqtt-certs"))


@pytest.fixture
def broker_factory(tmp_path: Path, mqtt_certs: Certificates) -> Iterator[BrokerFactory]:
    factory = BrokerFactory(tmp_path / "mqtt", mqtt_certs)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> Broker:
    return broker_factory()


@pytest.fixture
def auth_broker(broker_factory: BrokerFactory) -> Broker:
    return broker_factory(auth=True)


@pytest.fixture
def tls_broker(broker_factory: BrokerFactory) -> Broker:
    return broker_factory(auth=True, tls=True)


@pytest.fixture
def tls_client_cert_broker(broker_factory: BrokerFactory) -> Broker:
    return broker_factory(tls=True, require_client_cert=True)
