"""`edgetag demo` (the README's first command) with no broker on localhost: it starts its own Mosquitto."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgetag import demo
from edgetag.errors import ConfigError
from tests.conftest import SAMPLES


def test_the_demo_starts_a_broker_tags_the_samples_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_answers = demo._answers
    monkeypatch.setattr(demo, "_answers", lambda host, port: port != 1883 and real_answers(host, port))
    before = _mosquitto_processes()
    assert demo.run_demo(None, timeout=120) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("edgetag-demo/demo/events/samples")]
    assert len(lines) == len(list(SAMPLES.glob("*.jpg")))
    assert any("chelsea.jpg" in line and "Image may contain: cat" in line for line in lines)
    assert "10 of 10 events received" in out
    assert "127.0.0.1:1883" not in out, "the demo used its own broker"
    assert _mosquitto_processes() == before, "the demo's broker is stopped again"


def _mosquitto_processes() -> set[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in ps.splitlines() if "edgetag-demo-broker" in line}


def test_the_demo_refuses_a_folder_without_photos(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no photos here\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no photos in"):
        demo.run_demo(tmp_path, timeout=1)
