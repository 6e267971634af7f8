"""systemd's notify protocol (sd_notify) in a few lines, so edgetag needs no compiled dependency.

Under `Type=notify`, systemd gives the service a Unix datagram socket in $NOTIFY_SOCKET (a path, or
an abstract name starting with "@") and waits for `READY=1`. `STATUS=` lines show in `systemctl
status`; with `WatchdogSec=`, $WATCHDOG_USEC says how often `WATCHDOG=1` must arrive before systemd
restarts the service. Outside systemd every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self.watchdog_seconds = _watchdog_seconds(env)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; False (and nothing else) if it cannot be sent."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message, self._address)
            except OSError as error:  # systemd gone, socket closed: never a reason to stop tagging
                log.debug("sd_notify %s failed: %s", fields, error)
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self, status: str) -> bool:
        return self.send("RELOADING=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _address(path: str) -> str | bytes | None:
    """A path as is; "@name" is an abstract socket, whose address starts with a NUL byte."""
    if not path:
        return None
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """systemd's watchdog interval for this process, if it asked for one."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that exec'd us, say)
    return int(usec) / 1_000_000
