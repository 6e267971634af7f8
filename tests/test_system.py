"""Board facts for the stats, from files and programs shaped like a Raspberry Pi's."""

from __future__ import annotations

import stat
from pathlib import Path

from edgetag.system import cpu_temperature_c, decode_throttled, throttling


def test_cpu_temperature_from_the_thermal_zone(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    zone.write_text("51625\n", encoding="ascii")
    assert cpu_temperature_c(zone) == 51.6
    assert cpu_temperature_c(tmp_path / "missing") is None


def test_throttling_flags_are_named() -> None:
    flags = decode_throttled(0x50005)
    assert flags["under_voltage"] and flags["throttled"]
    assert flags["under_voltage_occurred"] and flags["throttled_occurred"]
    assert not flags["frequency_capped"] and not flags["soft_temperature_limit_occurred"]
    assert not any(decode_throttled(0).values())


def test_throttling_from_sysfs_else_vcgencmd_else_none(tmp_path: Path) -> None:
    sysfs = tmp_path / "get_throttled"
    sysfs.write_text("50000\n", encoding="ascii")
    assert throttling(sysfs)["under_voltage_occurred"] is True  # type: ignore[index]
    vcgencmd = tmp_path / "vcgencmd"
    vcgencmd.write_text('#!/bin/sh\n[ "$1" = get_throttled ] && echo throttled=0x4\n', encoding="ascii")
    vcgencmd.chmod(vcgencmd.stat().st_mode | stat.S_IEXEC)
    from_command = throttling(tmp_path / "no-sysfs", str(vcgencmd))
    assert from_command is not None and from_command["throttled"] and not from_command["under_voltage"]
    assert throttling(tmp_path / "no-sysfs", str(tmp_path / "no-vcgencmd")) is None
