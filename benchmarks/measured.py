"""Run a command as a fresh process and measure its wall time and peak memory, from a fresh process.

`measure(command)` starts `python -m benchmarks.measured` (a small intermediate process that imports
nothing heavy), which records the wall-clock time just before it launches the command, waits for it,
and reads the peak resident set size of its waited-for children with
`resource.getrusage(RUSAGE_CHILDREN)`. Because the intermediate process is new for every
measurement and has no other children, that peak is the command's own (the largest of the command
and any process it waited for, such as `git rev-parse`), never that of an earlier measurement.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measurement:
    launched: float  # time.time() just before the command started: comparable with log and MLflow times
    seconds: float  # wall time from launch to exit
    max_rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Measurement:
        if self.returncode != 0:
            raise RuntimeError(f"{what} exited {self.returncode}:\n{self.stderr[-3000:]}")
        return self


def measure(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measurement:
    """Run `command` in `cwd` (with PYTHONPATH set so that `-m src.train` works from anywhere)."""
    cwd.mkdir(parents=True, exist_ok=True)
    report, out, err = cwd / "measurement.json", cwd / "stdout.txt", cwd / "stderr.txt"
    environment = {**os.environ, **(env or {}), "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run(
        [sys.executable, "-m", "benchmarks.measured", str(report), str(out), str(err), "--", *command],
        cwd=cwd,
        env=environment,
        check=True,
    )
    values = json.loads(report.read_text())
    return Measurement(
        values["launched"],
        values["seconds"],
        values["max_rss_kib"] / 1024,
        values["returncode"],
        out.read_text(),
        err.read_text(),
    )


def _main(argv: list[str]) -> None:
    report, out, err, separator, *command = argv
    assert separator == "--", "usage: python -m benchmarks.measured REPORT STDOUT STDERR -- COMMAND..."
    with open(out, "w") as stdout, open(err, "w") as stderr:
        launched, start = time.time(), time.perf_counter()
        returncode = subprocess.run(command, stdout=stdout, stderr=stderr).returncode
        seconds = time.perf_counter() - start
    max_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    Path(report).write_text(
        json.dumps({"launched": launched, "seconds": seconds, "max_rss_kib": max_rss_kib, "returncode": returncode})
    )


if __name__ == "__main__":
    _main(sys.argv[1:])
