"""The one table `make bench` prints, and the line that says which machine measured it."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version


@dataclass(frozen=True)
class Row:
    measure: str
    framework: str
    value: float | str
    unit: str = ""
    aim: str = ""  # e.g. "<= 1.10"; empty when there is none
    met: bool | None = None  # None when there is no aim

    def cells(self) -> list[str]:
        value = self.value if isinstance(self.value, str) else _number(self.value)
        met = "" if self.met is None else ("yes" if self.met else "NO")
        return [self.measure, self.framework, value, self.unit, self.aim, met]


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def at_most(measure: str, framework: str, value: float, limit: float, unit: str = "") -> Row:
    return Row(measure, framework, value, unit, f"<= {limit:g}", value <= limit)


def at_least(measure: str, framework: str, value: float, limit: float, unit: str = "") -> Row:
    return Row(measure, framework, value, unit, f">= {limit:g}", value >= limit)


def format_table(rows: list[Row]) -> str:
    header = ["measure", "framework", "value", "unit", "aim", "met?"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    right = {2}  # numbers line up on the right

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(cells) for cells in table[1:])])


def cpu_seconds_busy() -> tuple[float, float]:
    """(CPU seconds every process on the machine has used since boot, CPU seconds this process and
    its waited-for children have used): their difference over a bench is what other jobs took."""
    import resource

    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    everyone = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    return everyone, own


def others_load(before: tuple[float, float], after: tuple[float, float], seconds: float) -> str:
    """How busy the machine was with other jobs during a bench: their CPU seconds, as cores."""
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
    return f"other processes used {others:.0f} CPU s in {seconds:.0f} s ({others / seconds:.2f} cores on average)"


def machine() -> str:
    """CPU model and cores, Python and library versions: what a reader needs to compare numbers."""
    model = "unknown CPU"
    try:
        for text in open("/proc/cpuinfo"):
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load unknown"
    versions = ", ".join(
        f"{name} {_version(name)}" for name in ("torch", "tensorflow", "keras", "numpy", "mlflow", "hydra-core")
    )
    return (
        f"{model}, {usable} cores ({load} before the bench), {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, {versions}"
    )


def _version(distribution: str) -> str:
    for name in (distribution, f"{distribution}-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"
