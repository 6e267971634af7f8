"""edgetag as a systemd service: the unit file, sd_notify, the watchdog, signals and journald logging.

The unit is checked with the real systemd-analyze; sd_notify is received on a real Unix datagram
socket, the way systemd receives it. (Booting the unit under a real systemd is `make system-test`.)
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgetag.config import Config, DeviceConfig, HomeAssistantConfig, MqttConfig
from edgetag.daemon import Daemon
from edgetag.logs import setup_logging
from edgetag.notify import Notifier
from edgetag.sources.base import PhotoJob
from tests.broker import Broker, Subscriber
from tests.conftest import ROOT, SAMPLES
from tests.daemon_process import DaemonProcess, daemon_config

UNIT = ROOT / "systemd" / "edgetag.service"
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


def unit_for_checks(tmp_path: Path) -> Path:
    """The unit as shipped, with ExecStart pointing at this checkout's edgetag (verify wants it to exist)."""
    text = UNIT.read_text(encoding="utf-8")
    edgetag = Path(sys.executable).parent / "edgetag"
    path = tmp_path / "edgetag.service"
    path.write_text(text.replace("/opt/edgetag/venv/bin/edgetag", str(edgetag)), encoding="utf-8")
    return path


@needs_systemd_analyze
def test_the_unit_verifies_without_a_single_warning(tmp_path: Path) -> None:
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit_for_checks(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0
    assert run.stderr == "", "systemd-analyze only warns (exit 0) on unknown keys and bad values"


@needs_systemd_analyze
def test_the_unit_is_hardened_to_an_exposure_of_at_most_2(tmp_path: Path) -> None:
    run = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit_for_checks(tmp_path))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for edgetag\.service: (\d+\.\d)", run.stdout)
    assert match, run.stdout[-2000:]
    assert float(match.group(1)) <= 2.0


def test_the_unit_asks_for_what_the_issue_needs() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "Type=notify", "WatchdogSec=60", "Restart=on-failure", "StateDirectory=edgetag",
        "ConfigurationDirectory=edgetag", "LoadCredential=mqtt-password:/etc/edgetag/mqtt-password",
        "DynamicUser=yes", "SupplementaryGroups=video", "ProtectSystem=strict", "ProtectHome=read-only",
        "PrivateTmp=yes", "NoNewPrivileges=yes", "SystemCallFilter=@system-service", "MemoryMax=400M",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):  # fmt: skip
        assert line in text.splitlines(), line


# --- sd_notify --------------------------------------------------------------------------------------------


class NotifySocket:
    """What systemd does with $NOTIFY_SOCKET: a datagram socket that collects the daemon's messages."""

    def __init__(self, folder: Path, abstract: bool) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edgetag-test-{os.getpid()}-{time.monotonic_ns()}"
            self.socket.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = folder / "notify.sock"
            self.socket.bind(str(path))
            self.env_value = str(path)
        self.socket.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        return [line for _, message in self.messages for line in message.splitlines()]

    def wait_for(self, line_start: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.startswith(line_start):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no {line_start!r} within {timeout} s; got {self.lines()[-10:]}")

    def pings_since(self, moment: float) -> int:
        return sum(1 for when, message in self.messages if when >= moment and "WATCHDOG=1" in message)

    def close(self) -> None:
        self._stop.set()
        self.socket.close()
        self._thread.join(2)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifySocket]:
    receiver = NotifySocket(tmp_path, abstract=request.param == "abstract")
    yield receiver
    receiver.close()


def test_the_notifier_does_nothing_outside_systemd() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_seconds is None
    assert notifier.ready("x") is False
    assert Notifier({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}).watchdog_seconds is None  # not us
    assert Notifier({"WATCHDOG_USEC": "5000000"}).watchdog_seconds == 5.0


def test_ready_status_watchdog_and_stopping_reach_the_socket(
    broker: Broker, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"}
    config = daemon_config(broker, tmp_path / "state")
    daemon = DaemonProcess(tmp_path, config, env=env).start()
    try:
        status = notify_socket.wait_for("STATUS=")
        assert status == "STATUS=loading the models"
        notify_socket.wait_for("READY=1")
        assert "STATUS=tagging: 0 source(s), connecting to the broker at" in "\n".join(notify_socket.lines())
        ready_at = time.monotonic()
        time.sleep(3.0)
        pings = [
            when for when, message in notify_socket.messages if when >= ready_at and "WATCHDOG=1" in message
        ]
        assert len(pings) >= 3, "a 2 s watchdog is pinged every 0.5 s"
        gaps = [later - earlier for earlier, later in zip([ready_at, *pings], pings, strict=False)]
        assert max(gaps) < 2.0, f"a gap of {max(gaps):.2f} s would let systemd's 2 s watchdog fire"
        assert daemon.stop() == 0
        notify_socket.wait_for("STOPPING=1", timeout=5)
    finally:
        daemon.close()


def test_watchdog_pings_stop_when_the_pipeline_is_stuck(
    broker: Broker, tmp_path: Path, notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(
        device=DeviceConfig(name="pi", state_dir=tmp_path / "state"),
        mqtt=MqttConfig(host=broker.host, port=broker.port),
        homeassistant=HomeAssistantConfig(enabled=False),
    )
    daemon = Daemon(config, env={"NOTIFY_SOCKET": notify_socket.env_value, "WATCHDOG_USEC": "2000000"})
    daemon.start()
    unblock = threading.Event()
    try:
        notify_socket.wait_for("READY=1")
        time.sleep(1.0)
        assert notify_socket.pings_since(time.monotonic() - 1.0) >= 1, "healthy: pings arrive"

        def read_forever() -> bytes:
            unblock.wait()
            return b""

        stuck = PhotoJob(source="test", name="never.jpg", id="0" * 20, read=read_forever)
        daemon.pipeline.submit(stuck)  # the decode thread now waits forever inside one step
        notify_socket.wait_for("STATUS=stuck: no progress from decode", timeout=10)
        silent_from = time.monotonic()
        time.sleep(2.5)
        assert notify_socket.pings_since(silent_from) == 0, "a stuck pipeline must not feed the watchdog"
        assert "no progress from decode" in caplog.text
    finally:
        unblock.set()
        daemon.stop()


# --- signals ----------------------------------------------------------------------------------------


def test_sighup_reloads_a_valid_config_and_refuses_an_invalid_one(broker: Broker, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    folder = {"type": "folder", "name": "first", "path": str(first)}
    daemon = DaemonProcess(tmp_path, daemon_config(broker, tmp_path / "state", sources=[folder])).start()
    subscriber = Subscriber(broker, "edgetag/pi/events/#")
    try:
        daemon.wait_log("running as")
        assert daemon.process is not None
        pid = daemon.process.pid

        daemon.config_file.write_text('[mqtt]\nport = "not a port"\n', encoding="utf-8")
        os.kill(pid, signal.SIGHUP)
        daemon.wait_log("reload refused, the running config stays: ")
        assert daemon.alive

        other = {"type": "folder", "name": "second", "path": str(second)}
        daemon.config_file.write_text(
            daemon_config(broker, tmp_path / "state", sources=[folder, other]), encoding="utf-8"
        )
        os.kill(pid, signal.SIGHUP)
        daemon.wait_log("running as", count=2)
        shutil.copy(SAMPLES / "chelsea.jpg", second / "cat.jpg")
        (message,) = subscriber.wait_count(1, timeout=60)
        assert message.topic == "edgetag/pi/events/second"
        assert daemon.alive and daemon.process.pid == pid, "reloaded in place, not restarted"
    finally:
        daemon.close()


def test_a_reload_says_reloading_then_ready_and_never_stopping(
    broker: Broker, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """systemd 252 holds a STOPPING=1 that arrives during ExecReload and stops the unit once it ends."""
    env = {"NOTIFY_SOCKET": notify_socket.env_value}
    daemon = DaemonProcess(tmp_path, daemon_config(broker, tmp_path / "state"), env=env).start()
    try:
        notify_socket.wait_for("READY=1")
        assert daemon.process is not None
        os.kill(daemon.process.pid, signal.SIGHUP)  # the config is unchanged and valid: a full reload
        notify_socket.wait_for("RELOADING=1")
        daemon.wait_log("running as", count=2)  # logged just before the new daemon sends READY=1
        deadline = time.monotonic() + 10
        while "READY=1" not in (lines := notify_socket.lines())[lines.index("RELOADING=1") :]:
            assert time.monotonic() < deadline, f"READY=1 again once the new config runs: {lines}"
            time.sleep(0.05)
        assert "STOPPING=1" not in lines, f"a reload must not look like a stop: {lines}"
        assert daemon.stop() == 0
        notify_socket.wait_for("STOPPING=1", timeout=5)  # a real stop still says so
    finally:
        daemon.close()


def signalled_while_starting(
    broker: Broker, workdir: Path, notify_socket: NotifySocket, signum: signal.Signals
) -> DaemonProcess:
    """A daemon sent `signum` while start() loads the models, before its READY=1.

    systemd may signal the moment it sees READY=1, which start() itself sends.
    """
    env = {"NOTIFY_SOCKET": notify_socket.env_value}
    daemon = DaemonProcess(workdir, daemon_config(broker, workdir / "state"), env=env).start()
    try:
        notify_socket.wait_for("STATUS=loading the models")
        assert daemon.process is not None
        daemon.process.send_signal(signum)
    except BaseException:
        daemon.close()
        raise
    return daemon


def test_a_sighup_while_starting_is_a_reload_once_started(
    broker: Broker, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    daemon = signalled_while_starting(broker, tmp_path, notify_socket, signal.SIGHUP)
    try:
        daemon.wait_log("running as", count=2)  # started, then reloaded (Python's default would kill it)
        assert daemon.alive
    finally:
        daemon.close()


def test_a_sigterm_while_starting_is_a_clean_stop_once_started(
    broker: Broker, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    daemon = signalled_while_starting(broker, tmp_path, notify_socket, signal.SIGTERM)
    try:
        assert daemon.process is not None
        assert daemon.process.wait(timeout=60) == 0, "a SIGTERM while starting is a clean stop"
        assert "READY=1" in notify_socket.lines(), "it stops after starting, not halfway through"
        assert "stopped" in daemon.log()
    finally:
        daemon.close()


# --- journald ---------------------------------------------------------------------------------------


def test_log_lines_carry_syslog_priorities_under_journald(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    setup_logging("info", env={"JOURNAL_STREAM": "8:12345"})
    logger = logging.getLogger("edgetag.test")
    logger.info("tagged inbox/cat.jpg: Image may contain: cat")
    logger.warning("could not tag inbox/x.jpg: empty file (0 bytes)")
    logger.error("MQTT: cannot connect")
    logger.debug("not shown at info")
    assert stream.getvalue().splitlines() == [
        "<6>edgetag.test: tagged inbox/cat.jpg: Image may contain: cat",
        "<4>edgetag.test: could not tag inbox/x.jpg: empty file (0 bytes)",
        "<3>edgetag.test: MQTT: cannot connect",
    ]
    setup_logging("warning", env={})
    logger.warning("in a terminal")
    assert re.search(
        r"^\d{4}-\d\d-\d\d [\d:,]+ WARNING edgetag.test: in a terminal$", stream.getvalue().splitlines()[-1]
    )


def test_the_config_the_installer_writes_is_valid() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "edgetag", "check-config", "--config", str(ROOT / "systemd" / "edgetag.toml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "the config is valid (1 source(s), 0 hook(s))" in run.stderr


def test_the_installer_refuses_to_run_without_root_and_explains_itself() -> None:
    script = ROOT / "systemd" / "install.sh"
    usage = subprocess.run(["sh", str(script), "--help"], capture_output=True, text=True, check=False)
    assert usage.returncode == 0 and "--uninstall --purge" in usage.stdout
    wrong = subprocess.run(["sh", str(script), "--bogus"], capture_output=True, text=True, check=False)
    assert wrong.returncode == 1 and "unknown option --bogus" in wrong.stderr
    if os.geteuid() != 0:
        refused = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
        assert refused.returncode == 1 and "run it as root" in refused.stderr
