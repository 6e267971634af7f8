"""Run `edgetag run` as a real process against a test broker: config writing, start, stop, kill, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.broker import Broker


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def toml_table(header: str, values: dict[str, Any]) -> str:
    lines = [header]
    nested = []
    for key, value in values.items():
        if isinstance(value, dict):
            nested.append(toml_table(f"[{header.strip('[]')}.{key}]", value))
        elif value is not None:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n" + "".join(f"\n{n}" for n in nested)


def daemon_config(
    broker: Broker,
    state: Path,
    *,
    device: str = "pi",
    sources: list[dict[str, Any]] = (),  # type: ignore[assignment]
    hooks: list[dict[str, Any]] = (),  # type: ignore[assignment]
    mqtt: dict[str, Any] | None = None,
    homeassistant: dict[str, Any] | None = None,
    stats_seconds: float = 3600.0,
) -> str:
    """A TOML config for one daemon on `broker`, with the broker's credentials and CA."""
    connection: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "reconnect_min_seconds": 0.2,
        "reconnect_max_seconds": 1.0,
    }
    if broker.username:
        password_file = state.parent / f"{device}-mqtt-password"
        password_file.write_text(f"{broker.password}\n", encoding="utf-8")
        connection.update(username=broker.username, password_file=str(password_file))
    if broker.tls:
        connection.update(tls=True, ca_file=str(broker.ca_file))
        if broker.require_client_cert:
            connection.update(cert_file=str(broker.client_cert), key_file=str(broker.client_key))
    connection.update(mqtt or {})
    parts = [
        toml_table("[device]", {"name": device, "state_dir": str(state)}),
        toml_table("[mqtt]", connection),
        toml_table("[homeassistant]", homeassistant or {"enabled": False}),
        toml_table("[stats]", {"interval_seconds": stats_seconds}),
        *(toml_table("[[source]]", s) for s in sources),
        *(toml_table("[[hook]]", h) for h in hooks),
    ]
    return "\n".join(parts)


class DaemonProcess:
    """`python -m edgetag run --config FILE` with its output in a log file."""

    def __init__(
        self, workdir: Path, config: str, name: str = "daemon", env: dict[str, str] | None = None
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / f"{name}.toml"
        self.config_file.write_text(config, encoding="utf-8")
        self.log_file = workdir / f"{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgetag", "run", "--config", str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_log(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while (log := self.log()).count(text) < count:
            if time.monotonic() > deadline or (self.process is not None and self.process.poll() is not None):
                raise AssertionError(f"{text!r} not in the daemon log ({count}x); it ends:\n{log[-3000:]}")
            time.sleep(0.05)
        return log

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the daemon finishes what is in flight."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.alive:
            self.kill()
