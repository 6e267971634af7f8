"""Facts about the board edgetag runs on, for the stats: temperature and throttling on a Raspberry Pi.

Both are read where the board exposes them and are None elsewhere. Throttling comes from the
firmware's flags: Raspberry Pi kernels publish them in sysfs (readable by any user); older ones only
through `vcgencmd get_throttled`, which needs the video group (the service has it).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")
THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")

THROTTLE_BITS = {
    0: "under_voltage",
    1: "frequency_capped",
    2: "throttled",
    3: "soft_temperature_limit",
    16: "under_voltage_occurred",
    17: "frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def cpu_temperature_c(path: Path = THERMAL_ZONE) -> float | None:
    """The SoC temperature in degrees Celsius (Raspberry Pi: thermal_zone0), or None where there is none."""
    try:
        return round(int(path.read_text(encoding="ascii").strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def decode_throttled(value: int) -> dict[str, bool]:
    """The firmware's throttling bit field, by name (now, and since boot)."""
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


def throttling(sysfs: Path = THROTTLED_SYSFS, vcgencmd: str | None = None) -> dict[str, bool] | None:
    """Under-voltage and throttling flags of a Raspberry Pi, or None where the board has none."""
    try:
        return decode_throttled(int(sysfs.read_text(encoding="ascii").strip(), 16))
    except (OSError, ValueError):
        pass
    command = vcgencmd or shutil.which("vcgencmd")
    if command is None:
        return None
    try:
        output = subprocess.run(
            [command, "get_throttled"], capture_output=True, text=True, timeout=2, check=True
        ).stdout  # "throttled=0x50000"
        return decode_throttled(int(output.strip().split("=", 1)[1], 16))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
