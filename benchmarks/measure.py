"""What one command costs in memory, as the kernel counts it: shared by the benchmark scripts.

ru_maxrss of RUSAGE_CHILDREN is the largest child a process ever had, so measuring two commands
from one process reports the larger twice. Each command is therefore run under a fresh parent
that reports its one child's peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

_PARENT = (
    "import json, resource, subprocess, sys;"
    " r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
    " print(json.dumps({'rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
    " 'returncode': r.returncode, 'stdout': r.stdout, 'stderr': r.stderr}))"
)


@dataclass(frozen=True)
class Measured:
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(command: list[str]) -> Measured:
    """Run `command` alone under a fresh parent: its peak RSS, exit status and output."""
    run = subprocess.run(
        [sys.executable, "-c", _PARENT, *command], check=True, capture_output=True, text=True
    )
    report = json.loads(run.stdout)
    return Measured(report["rss_kb"] / 1024, report["returncode"], report["stdout"], report["stderr"])
