"""Run a command as a fresh process and measure its wall time and peak memory, from a fresh process.

`measure(command)` starts `python -m benchmarks.measured` (a small intermediate process that imports
nothing heavy), which records the wall-clock time just before it launches the command, waits for it,
and reads the peak resident set size of its waited-for children with
`resource.getrusage(RUSAGE_CHILDREN)`. Because the intermediate process is new for every
measurement and has no other children, that peak is the command's own (the largest of the command
and any process it waited for, such as `git rev-parse`), never that of an earlier measurement. It
also samples the resident memory of the command's whole process tree every 0.1 s (a forked training
process and its parent together; pages they share are counted in each).
"""

from __future__ import annotations

import contextlib
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
    max_rss_mib: float  # the largest single process's peak
    tree_rss_mib: float  # the peak of the sum over the command's processes, sampled every 0.1 s
    returncode: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Measurement:
        if self.returncode != 0:
            raise RuntimeError(f"{what} exited {self.returncode}:\n{self.stderr[-3000:]}")
        return self


def measure(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measurement:
    """Run `command` in `cwd` (with the project first on PYTHONPATH so that `-m src.train` works from
    anywhere; packages the caller put on PYTHONPATH stay importable)."""
    cwd.mkdir(parents=True, exist_ok=True)
    report, out, err = cwd / "measurement.json", cwd / "stdout.txt", cwd / "stderr.txt"
    inherited = [os.path.abspath(path) for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    environment = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *inherited])}
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
        values["tree_rss_kib"] / 1024,
        values["returncode"],
        out.read_text(),
        err.read_text(),
    )


def _main(argv: list[str]) -> None:
    report, out, err, separator, *command = argv
    assert separator == "--", "usage: python -m benchmarks.measured REPORT STDOUT STDERR -- COMMAND..."
    import psutil

    with open(out, "w") as stdout, open(err, "w") as stderr:
        launched, start = time.time(), time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        tree_rss = 0
        while process.poll() is None:
            tree_rss = max(tree_rss, _tree_rss(psutil.Process(process.pid)))
            time.sleep(0.1)
        returncode = process.returncode
        seconds = time.perf_counter() - start
    max_rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    report_values = {"launched": launched, "seconds": seconds, "max_rss_kib": max_rss_kib, "returncode": returncode}
    Path(report).write_text(json.dumps({**report_values, "tree_rss_kib": max(tree_rss // 1024, max_rss_kib)}))


def _tree_rss(process) -> int:
    """Bytes resident in a process and its descendants now (pages they share counted once per process)."""
    import psutil

    total = 0
    try:
        for member in [process, *process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += member.memory_info().rss
    except psutil.Error:
        pass
    return total


if __name__ == "__main__":
    _main(sys.argv[1:])
