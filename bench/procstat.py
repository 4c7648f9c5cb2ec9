"""CPU time of processes, from /proc (Linux): what the benches charge each side."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# Fields of /proc/<pid>/stat after the process's name, counted from 0: the parent, the
# session, user and system CPU in clock ticks.
PARENT, SESSION, UTIME, STIME = 1, 3, 11, 12


def cpu_seconds(selected: Callable[[int, list[str]], bool]) -> float:
    """User + system CPU seconds so far of every live process `selected(pid, fields)` picks
    (a process that has exited is no longer counted)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if selected(int(stat.parent.name), fields):
            total += int(fields[UTIME]) + int(fields[STIME])
    return total / os.sysconf("SC_CLK_TCK")
