"""The container's root file system: Debian bookworm with systemd, made once by debootstrap and cached.

Only what a Debian or Raspberry Pi OS system has before edgetag's installer runs goes in: systemd as
PID 1, D-Bus, nss-systemd (names for DynamicUser users) and the CA store. Python, venv, pip and procps
are left to systemd/install.sh's own apt step, so the test sees what the installer really does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.system.mounts import remove_tree, unmount_under

SUITE = "bookworm"  # what Raspberry Pi OS is based on today
FALLBACK_MIRROR = "http://deb.debian.org/debian"
HOSTNAME = "edgetag-pi"
# A command the test needs on the host -> the Debian package that has it.
HOST_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "mosquitto": "mosquitto",
    "mosquitto_passwd": "mosquitto-clients",
}
Say = Callable[[str], None]


class ImageError(RuntimeError):
    """The image could not be made (debootstrap failed, a tool is missing)."""


@dataclass(frozen=True)
class Recipe:
    """Everything the image depends on: a cached image made from another recipe is made again."""

    mirror: str
    suite: str = SUITE
    packages: tuple[str, ...] = ("systemd", "systemd-sysv", "dbus", "libnss-systemd", "ca-certificates")
    revision: int = 1  # bump when build() changes what it does to the image

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _which(tool: str) -> str | None:
    """Like `command -v`, also looking in the sbin folders that a non-login PATH may lack."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    return shutil.which(tool, path=path)


def ensure_host_tools(say: Say) -> None:
    """Install systemd-nspawn, debootstrap and Mosquitto with apt if missing: a new machine has none."""
    missing = sorted({package for tool, package in HOST_TOOLS.items() if _which(tool) is None})
    if not missing:
        return
    say(f"installing on this machine with apt: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise ImageError(f"{' '.join(command)} failed:\n{run.stdout[-2000:]}{run.stderr[-2000:]}")


def _deb822_fields(block: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = ""
    for line in block.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line[0].isspace() and key:  # a continuation line
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The mirror this machine's apt uses for bookworm main (deb822 .sources or one-line .list files)."""
    for file in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for block in file.read_text(encoding="utf-8").split("\n\n"):
            fields = _deb822_fields(block)
            if (
                "deb" in fields.get("types", "").split()
                and SUITE in fields.get("suites", "").split()
                and "main" in fields.get("components", "").split()
            ):
                for uri in fields.get("uris", "").split():
                    if uri.startswith(("http://", "https://")):
                        return uri.rstrip("/")
    for file in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]:
        lines = file.read_text(encoding="utf-8").splitlines() if file.is_file() else []
        for line in lines:
            words = [word for word in line.split() if not word.startswith("[")]  # drops [options]
            if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                return words[1].rstrip("/")
    return FALLBACK_MIRROR


def ensure_image(cache: Path, recipe: Recipe, *, rebuild: bool, say: Say) -> Path:
    """The cached root file system for ``recipe``; built (about a minute) when missing or outdated."""
    rootfs, stamp = cache / "rootfs", cache / "rootfs.stamp"
    if (
        not rebuild
        and rootfs.is_dir()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8") == recipe.key()
    ):
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp.stat().st_mtime))
        say(f"reusing the image {rootfs} (built {built}; --rebuild-image makes it again)")
        return rootfs
    building = cache / "rootfs.building"
    remove_tree(building)
    say(f"building the image: debootstrap {recipe.suite} from {recipe.mirror} (about a minute)")
    log = cache / "debootstrap.log"
    command = [
        "debootstrap", "--variant=minbase", f"--include={','.join(recipe.packages)}", "--components=main",
        recipe.suite, str(building), recipe.mirror,
    ]  # fmt: skip
    with log.open("wb") as out:
        run = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    unmount_under(building)  # debootstrap mounts /proc and /sys inside, and may leave them when it fails
    if run.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise ImageError(f"debootstrap failed (exit {run.returncode}); the end of {log}:\n{tail}")
    _finish(building)
    stamp.unlink(missing_ok=True)
    remove_tree(rootfs)
    building.rename(rootfs)
    stamp.write_text(recipe.key(), encoding="utf-8")
    return rootfs


def _finish(rootfs: Path) -> None:
    """What an installed system has and debootstrap leaves as the host's: its own name; no .deb files."""
    (rootfs / "etc" / "hostname").write_text(f"{HOSTNAME}\n", encoding="utf-8")
    hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    (rootfs / "etc" / "hosts").write_text(hosts, encoding="utf-8")
    for deb in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
