"""Rebuild eval/photos/debian/ from Debian packages (apt-get download, dpkg-deb -x, re-encode).

    python eval/sources/debian.py     # needs apt-get (after apt-get update), dpkg-deb and Pillow

Which file of which package version becomes which photo, with its license, is the data in
debian-sources.json beside this script; the manifest debian-manifest.jsonl is written from it.
"""

from __future__ import annotations

from pathlib import Path

from photolib import build

if __name__ == "__main__":
    build("debian", Path(__file__).resolve().with_name("debian-sources.json"))
