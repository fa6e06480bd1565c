"""What the benches read of a process: its own CPU time, and its share of a
core while something runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` alone (its threads, not its children)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_percent_during(pid: int, action: Callable[[], T]) -> tuple[T, float]:
    """`action()`'s result and the percent of one core `pid` used meanwhile."""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    result = action()
    cpu1, wall1 = cpu_seconds(pid), time.monotonic()
    return result, 100 * (cpu1 - cpu0) / (wall1 - wall0)
