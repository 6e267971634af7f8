"""A booted Debian with systemd as PID 1, in systemd-nspawn, and a way to run commands inside it.

This machine's PID 1 is not systemd, so a unit can only run for real in a container. Each run gets a
fresh overlay on the cached image (the image itself never changes), shares the host's network (apt and
pip reach the registries; the service reaches the test broker on 127.0.0.1), and is powered off (else
killed) and unmounted whatever happens, even if this process is killed (the next run stops what an
earlier one left).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.system.mounts import remove_tree, unmount_under

Say = Callable[[str], None]
# What `sudo -i` gives a command: none of this machine's environment (its PIP_* settings, its CA
# variables) leaks into the container, where a person's root shell would not have them either.
ROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "USER": "root",
    "LOGNAME": "root",
}
PR_SET_PDEATHSIG = 1


class CommandFailed(AssertionError):  # noqa: N818 (an assertion: "the command succeeded")
    """A command in the container exited non-zero (or timed out); the message has its output."""


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        def tail(text: str) -> str:
            lines = text.rstrip().splitlines()[-40:]
            return "\n".join(f"    {line}" for line in lines) or "    (nothing)"

        return (
            f"`{' '.join(self.argv)}` exited with {self.returncode} after {self.seconds:.1f} s\n"
            f"  stdout:\n{tail(self.stdout)}\n  stderr:\n{tail(self.stderr)}"
        )


def _die_with_parent() -> None:
    """In the nspawn child: SIGTERM (= power the container off) should this test process die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may contain spaces): state, ppid, ..."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def stop_leftover_containers(directory: Path, say: Say) -> None:
    """Stop systemd-nspawn processes that an earlier, killed run left on ``directory``."""
    wanted = f"--directory={directory}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and wanted in argv:
            pid = int(entry.name)
            say(f"stopping a container an earlier run left behind (systemd-nspawn pid {pid})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                    time.sleep(0.2)
                os.kill(pid, signal.SIGKILL)


class Container:
    """One boot of the image: an overlay in ``run_dir``, systemd-nspawn, commands through nsenter."""

    def __init__(self, image: Path, run_dir: Path, *, name: str, binds: Mapping[Path, str], say: Say) -> None:
        """``binds``: host folders to mount in the container (the apt and pip caches)."""
        self.image, self.run_dir, self.name, self.binds, self.say = image, run_dir, name, binds, say
        self.root = run_dir / "root"  # the container's / as seen from the host
        self.console_log = run_dir / "console.log"
        self._nspawn: subprocess.Popen[bytes] | None = None
        self._init: tuple[int, str] | None = None  # the container's PID 1 (host pid, start time)

    # --- life cycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        """Mount a fresh overlay, boot it, and wait until systemd says the system is up."""
        stop_leftover_containers(self.root, self.say)
        remove_tree(self.run_dir)
        upper, work = self.run_dir / "upper", self.run_dir / "work"
        for folder in (upper, work, self.root):
            folder.mkdir(parents=True)
        options = f"lowerdir={self.image},upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)], check=True)
        command = [
            "systemd-nspawn", f"--directory={self.root}", f"--machine={self.name}", "--boot",
            "--register=no", "--keep-unit", "--console=pipe", "--link-journal=no",
            "--resolv-conf=copy-host",
            *(f"--bind={host}:{inside}" for host, inside in self.binds.items()),
        ]  # fmt: skip
        with self.console_log.open("wb") as console:
            self._nspawn = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script, which powers the container off
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (started before any thread of ours)
            )
        self._init = self._wait_for_init(timeout)
        deadline = time.monotonic() + timeout
        while True:  # until systemd listens on its socket, systemctl cannot even ask
            state = self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)
            if state.stdout.strip() not in ("", "offline") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if state.stdout.strip() != "running":
            failed = self.run("systemctl", "--failed", "--no-pager", check=False).stdout
            raise CommandFailed(f"the container did not boot cleanly: {state.describe()}\n{failed}")

    def _wait_for_init(self, timeout: float) -> tuple[int, str]:
        """The container's PID 1 is nspawn's child once it has exec'd systemd."""
        assert self._nspawn is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._nspawn.poll() is not None:
                console = self.console_log.read_text(errors="replace")[-3000:]
                raise CommandFailed(f"systemd-nspawn exited with {self._nspawn.returncode}:\n{console}")
            for entry in Path("/proc").iterdir():
                fields = _stat_fields(int(entry.name)) if entry.name.isdigit() else None
                if (
                    fields
                    and int(fields[1]) == self._nspawn.pid
                    and _process_name(int(entry.name)) == "systemd"
                ):
                    return int(entry.name), fields[19]  # field 22 of stat: the start time
            time.sleep(0.1)
        raise CommandFailed(f"the container's systemd did not start in {timeout} s")

    def stop(self, timeout: float = 60.0) -> None:
        """Power off (nspawn turns SIGTERM into a clean shutdown); SIGKILL if that takes too long."""
        proc, self._nspawn = self._nspawn, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.say(f"the container did not power off in {timeout} s: killing it")
                proc.kill()
                proc.wait(10)
        if self._init is not None:  # nspawn's child dies with it; make sure, by pid and start time
            pid, started = self._init
            fields = _stat_fields(pid)
            if fields is not None and fields[19] == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._init = None

    def close(self, *, keep_changes: bool = False) -> None:
        """Stop, unmount, remove the run folder (``keep_changes``: keep it to look at after a failure)."""
        try:
            self.stop()
        finally:
            unmount_under(self.run_dir)
            if not keep_changes:
                remove_tree(self.run_dir)

    def __enter__(self) -> Container:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(keep_changes=error is not None)

    # --- commands ------------------------------------------------------------------------------------

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 120.0,
        input: bytes | str | None = None,
        cwd: str = "/",
    ) -> Result:
        """Run ``argv`` in the container as root with a clean environment, like a root shell would."""
        if self._init is None:
            raise RuntimeError("the container is not running")
        env = [f"{key}={value}" for key, value in ROOT_ENV.items()]
        command = [
            "nsenter", f"--target={self._init[0]}", "--all", "--",
            "env", "-i", f"--chdir={cwd}", *env, *argv,
        ]  # fmt: skip
        data = input.encode() if isinstance(input, str) else input
        start = time.monotonic()
        try:
            run = subprocess.run(command, input=data, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as expired:
            out = (expired.stdout or b"").decode(errors="replace")
            err = (expired.stderr or b"").decode(errors="replace")
            result = Result(tuple(argv), -1, out, err, time.monotonic() - start)
            raise CommandFailed(f"timed out after {timeout} s: {result.describe()}") from None
        result = Result(
            tuple(argv),
            run.returncode,
            run.stdout.decode(errors="replace"),
            run.stderr.decode(errors="replace"),
            time.monotonic() - start,
        )
        if check and result.returncode != 0:
            raise CommandFailed(result.describe())
        return result

    def sh(self, script: str, *, check: bool = True, timeout: float = 120.0, cwd: str = "/") -> Result:
        """``sh -c script``: for redirections and globs, as a person would type them."""
        return self.run("sh", "-c", script, check=check, timeout=timeout, cwd=cwd)

    def write(self, path: str, data: str | bytes, *, mode: int = 0o644) -> None:
        """Write a file in the container (from inside it: no host path can escape through a symlink)."""
        self.run("install", "-D", f"--mode={mode:o}", "/dev/stdin", path, input=data)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p A -p B unit` as a dict."""
        options = [f"--property={name}" for name in properties]
        lines = self.run("systemctl", "show", *options, unit).stdout.splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def journal(self, *options: str) -> str:
        return self.run("journalctl", "--no-pager", *options).stdout

    def diagnostics(self, unit: str) -> str:
        """What a person would look at when the service misbehaves: its status and its journal."""
        parts = []
        for argv in (
            ("systemctl", "status", unit, "--no-pager", "--full", "--lines=0"),
            ("journalctl", "--no-pager", "-u", unit, "-n", "60", "-o", "short-precise"),
            ("journalctl", "--no-pager", "-b", "-p", "warning", "-n", "25", "-o", "short-precise"),
        ):
            try:
                result = self.run(*argv, check=False, timeout=30)
                parts.append(f"$ {' '.join(argv)}\n{result.stdout.rstrip()}{result.stderr.rstrip()}")
            except (CommandFailed, RuntimeError) as error:
                parts.append(f"$ {' '.join(argv)}\n(could not run it: {error})")
        return "\n\n".join(parts)
