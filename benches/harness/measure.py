"""Running a command and measuring it: wall time, and user+sys CPU and peak RSS as GNU time
reports them.

The command runs under `/usr/bin/time` rather than straight from Python: a child's peak RSS
is a high-water mark that starts with the memory of the process it was forked from, so a
child of the harness would never report less than the harness's own tens of MiB."""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError


@dataclass(frozen=True)
class Usage:
    """What one process tree cost. `rss_kib` is the largest single process's peak RSS: Linux
    reports the maximum over the reaped tree, not a sum."""

    wall: float
    cpu: float
    rss_kib: int

    def then(self, other: Usage) -> Usage:
        """Two commands run one after the other (Buildah's bud, then its push)."""
        return Usage(self.wall + other.wall, self.cpu + other.cpu, max(self.rss_kib, other.rss_kib))


TIME = "/usr/bin/time"


def run(argv: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> Usage:
    """Runs `argv` to completion with its output in `log`; raises naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    report = log.with_name(log.name + ".time")
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.monotonic()
        status = subprocess.call(
            [TIME, "-f", "%U %S %M", "-o", str(report), *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd, env=env,
        )
        wall = time.monotonic() - start
    if status != 0:
        raise BenchError(f"{argv[0]} exited with {status}: see {log}\n{tail(log)}")
    try:
        user, system, rss_kib = report.read_text().split()[-3:]
        return Usage(wall, float(user) + float(system), int(rss_kib))
    except (OSError, ValueError) as err:
        raise BenchError(f"reading {TIME}'s report {report}: {err}") from err


def wall(argv: list[str], log: Path, **kwargs) -> float:
    """Wall time only (the physical limits)."""
    return run(argv, log, **kwargs).wall


def tail(log: Path, lines: int = 15) -> str:
    """The end of a log, for error messages."""
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass(frozen=True)
class Spread:
    """Median with min and max of a list of samples."""

    median: float
    low: float
    high: float

    @staticmethod
    def of(values: list[float]) -> Spread | None:
        if not values:
            return None
        return Spread(statistics.median(values), min(values), max(values))
