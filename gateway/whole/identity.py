"""Which serving process this is: its node (host name), pid and `--workers` index."""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass

__all__ = ["ProcessId", "this_process"]

_apps = itertools.count(1)  # gateways started in this process (tests start several)


@dataclass(frozen=True)
class ProcessId:
    id: str  # `host:pid`; a later gateway app in the same process `host:pid.n`
    node: str
    pid: int
    worker: int

    def origin(self) -> dict[str, object]:
        """What each live event seen here says of where (eventbus.py)."""
        return {"worker": self.worker, "node": self.node, "process": self.id}


def this_process(worker: int) -> ProcessId:
    node, pid, n = socket.gethostname(), os.getpid(), next(_apps)
    return ProcessId(f"{node}:{pid}" + (f".{n}" if n > 1 else ""), node, pid, worker)
