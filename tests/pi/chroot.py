"""A Debian Bookworm rootfs for a foreign architecture: built once, copied per run, entered with chroot.

Every mount made here is undone by `Mounts` on the way out, even on failure or Ctrl-C, and nothing
is deleted while anything below it is still mounted: a leftover rbind of /dev inside a rootfs would
make `rm -rf` delete the host's device nodes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.pi.arches import Arch

SUITE = "bookworm"  # Raspberry Pi OS Bookworm's Debian release: Python 3.11.2, glibc 2.36
# minbase plus what Raspberry Pi OS Lite has from the start; python3-venv and python3-pip are left
# out on purpose: installing them is install.sh's job.
INCLUDE = ("python3", "ca-certificates")
RECIPE_VERSION = 1  # bump to rebuild every cached rootfs after a change to how it is built
MAX_AGE_DAYS = 30  # package lists older than this may name .debs the mirror has dropped
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class PiTestError(Exception):
    """The test failed; the message says what and where to look."""


def _unescape(field: str) -> str:
    """/proc/self/mountinfo writes spaces and the like as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path``, deepest first (the order to unmount them in)."""
    root = path.resolve()
    points = {
        Path(_unescape(line.split()[4]))
        for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    }
    inside = [point for point in points if point == root or root in point.parents]
    return sorted(inside, key=lambda point: len(point.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything at or below ``path`` (lazily if still busy); raise if anything stays."""
    for _ in range(3):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
                time.sleep(0.5)
                subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    if left := mounts_under(path):
        raise PiTestError(f"still mounted under {path}: {', '.join(map(str, left))}; unmount them by hand")


def remove_tree(path: Path) -> None:
    """``rm -rf --one-file-system path``, refused while anything inside is mounted."""
    if not path.exists():
        return
    if left := mounts_under(path):
        raise PiTestError(f"refusing to delete {path}: still mounted inside: {', '.join(map(str, left))}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


class Mounts:
    """The mounts of one chroot session; leaving the `with` block unmounts them, newest first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.points: list[Path] = []

    def __enter__(self) -> Mounts:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.unmount_all()

    def mount(self, *args: str, target: Path) -> None:
        """`mount ARGS... TARGET`, remembered for unmounting."""
        subprocess.run(["mount", *args, str(target)], check=True, capture_output=True, text=True)
        self.points.append(target)

    def unmount_all(self) -> None:
        """Unmount what this session mounted, then anything still left below the rootfs."""
        while self.points:
            point = self.points.pop()
            subprocess.run(["umount", "--recursive", str(point)], check=False, capture_output=True)
        unmount_under(self.root)

    def pi_like(self, arch: Arch, cpus: int, cpuinfo_file: Path) -> None:
        """/proc, /dev, and the Pi-4-like CPU description that LiteRT's CPU detection needs.

        /sys is a tmpfs with only devices/system/cpu/{possible,present}: with the host's /sys LiteRT
        segfaulted, with no /sys it silently ran without XNNPACK (shared/notes/testing.md).
        """
        self.mount("-t", "proc", "proc", target=self.root / "proc")
        self.mount("--rbind", "/dev", target=self.root / "dev")
        # a slave copy: unmounting it can never propagate back and unmount the host's /dev/pts
        subprocess.run(["mount", "--make-rslave", str(self.root / "dev")], check=True)
        self.mount("-t", "tmpfs", "-o", "mode=755", "edgetag-pi-sys", target=self.root / "sys")
        cpu = self.root / "sys/devices/system/cpu"
        cpu.mkdir(parents=True)
        for name in ("possible", "present", "online"):
            (cpu / name).write_text(f"0-{cpus - 1}\n", encoding="ascii")
        cpuinfo_file.write_text(arch.cpuinfo(cpus), encoding="ascii")
        self.mount("--bind", str(cpuinfo_file), target=self.root / "proc/cpuinfo")


@dataclass(frozen=True)
class Chroot:
    """Runs commands inside a rootfs under qemu-user, with a clean environment."""

    root: Path
    arch: Arch
    extra_env: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        """Nothing from the host's environment leaks in (its pip config points at host-only paths)."""
        return {
            "PATH": CHROOT_PATH,
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "QEMU_CPU": self.arch.qemu_cpu,
            **dict(self.extra_env),
        }

    def run(
        self,
        *argv: str,
        cwd: str = "/root",
        timeout: float = 3600,
        check: bool = True,
        merge_stderr: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the rootfs from ``cwd``, output captured; a non-zero exit raises PiTestError.

        ``merge_stderr`` keeps a long step's messages in the order it printed them (stdout gets both).
        """
        command = ["chroot", str(self.root), "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]
        stderr = subprocess.STDOUT if merge_stderr else subprocess.PIPE
        try:
            done = subprocess.run(
                command,
                env=self.env(),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise PiTestError(
                f"[{self.arch.name}] {' '.join(argv)}: no result after {timeout:.0f} s"
            ) from error
        if check and done.returncode != 0:
            raise PiTestError(
                f"[{self.arch.name}] {' '.join(argv)} exited with {done.returncode}\n"
                f"--- stdout (last lines) ---\n{_tail(done.stdout)}\n"
                f"--- stderr (last lines) ---\n{_tail(done.stderr or '')}"
            )
        return done


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


@dataclass(frozen=True)
class Rootfs:
    """The cached base rootfs of one architecture and its per-run working copy."""

    cache: Path  # <cache>/<arch>
    arch: Arch
    mirror: str

    @property
    def base(self) -> Path:
        return self.cache / "base"

    @property
    def work(self) -> Path:
        return self.cache / "work"

    @property
    def stamp(self) -> Path:
        return self.cache / "base.stamp.json"

    def recipe(self) -> dict[str, Any]:
        """Everything the base depends on: a different recipe means a rebuild."""
        return {
            "version": RECIPE_VERSION,
            "suite": SUITE,
            "arch": self.arch.name,
            "variant": "minbase",
            "include": list(INCLUDE),
            "mirror": self.mirror,
        }

    def cached(self) -> dict[str, Any] | None:
        """The stamp, if the base was built by this recipe less than MAX_AGE_DAYS ago."""
        try:
            stamp: dict[str, Any] = json.loads(self.stamp.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        built = datetime.fromisoformat(stamp.get("built", "1970-01-01T00:00:00+00:00"))
        fresh = (datetime.now(UTC) - built).days < MAX_AGE_DAYS
        if stamp.get("recipe") == self.recipe() and fresh and (self.base / "usr/bin/python3").exists():
            return stamp
        return None

    def build_base(self) -> float:
        """debootstrap the base in two stages (the second one runs under qemu); returns the seconds."""
        started = time.monotonic()
        partial = self.cache / "base.partial"
        unmount_under(self.cache)
        for path in (partial, self.base):
            remove_tree(path)
        self.stamp.unlink(missing_ok=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        first = [
            "debootstrap", f"--arch={self.arch.name}", "--foreign", "--variant=minbase",
            f"--include={','.join(INCLUDE)}", SUITE, str(partial), self.mirror,
        ]  # fmt: skip
        _logged(first, self.cache / "debootstrap.log", f"[{self.arch.name}] debootstrap (first stage)")
        qemu = shutil.which(self.arch.qemu)
        if qemu is None:
            raise PiTestError(f"{self.arch.qemu} not found: apt-get install qemu-user-static")
        shutil.copy2(qemu, partial / "usr/bin" / self.arch.qemu)
        try:
            second = ["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"]
            _logged(second, self.cache / "debootstrap.log", f"[{self.arch.name}] debootstrap (second stage)")
        finally:
            unmount_under(partial)  # the second stage mounts /proc itself
        partial.rename(self.base)
        seconds = time.monotonic() - started
        stamp = {"recipe": self.recipe(), "built": datetime.now(UTC).isoformat(), "seconds": round(seconds)}
        self.stamp.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        return seconds

    def fresh_work_copy(self) -> None:
        """A new copy of the base to install into, so every run starts from a clean Pi-like system."""
        unmount_under(self.work)
        remove_tree(self.work)
        subprocess.run(["cp", "-a", "--reflink=auto", str(self.base), str(self.work)], check=True)
        # DNS for apt and pip inside (a Pi has its own resolv.conf; the rootfs has none)
        shutil.copy2("/etc/resolv.conf", self.work / "etc/resolv.conf")


def _logged(command: list[str], log: Path, what: str) -> None:
    """Run a long build step with its output appended to ``log``; on failure show its end."""
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        raise PiTestError(f"{what} failed (exit {done.returncode}); {log} ends with:\n{_tail(text)}")


def copy_source_tree(repo: Path, destination: Path) -> int:
    """Copy the checkout as a user's clone would have it: tracked and new files, nothing ignored.

    `git ls-files` leaves out .venv, the caches and models/build's venvs and work folder (the
    .gitignore files say so), and includes uncommitted edits, so the test checks the tree as it is.
    """
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    count = 0
    for name in filter(None, listed.split("\0")):
        source = repo / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        count += 1
    return count
