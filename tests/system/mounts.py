"""Mount points under a folder, so that nothing is ever deleted through a mount that is still there.

`rm -rf` of a root file system with a leftover overlay or bind mount inside would delete the files
behind the mount (the image, or the host's own /dev): every removal here unmounts first and refuses to
go on if something stays mounted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def _unescape(field: str) -> str:
    """/proc/self/mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mounts_under(path: Path) -> list[Path]:
    """The mount points at or below ``path``, deepest first (the order to unmount them in)."""
    root = path.resolve()
    points = []
    for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines():
        point = Path(_unescape(line.split()[4]))
        if point == root or root in point.parents:
            points.append(point)
    return sorted(points, key=lambda point: len(point.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything at or below ``path`` (lazily if busy); raise if anything is still mounted."""
    for point in mounts_under(path):
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    if left := mounts_under(path):
        raise RuntimeError(f"still mounted under {path}: {', '.join(map(str, left))}")


def remove_tree(path: Path) -> None:
    """``rm -rf path``, but only once nothing is mounted inside it."""
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        unmount_under(path)
        shutil.rmtree(path)
