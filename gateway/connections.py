"""Connections the gateway accepts: how many, how long idle, and file descriptors to hold them.

Idle connections once exhausted the process's file descriptors (1,100 idle connections under a
1,024 limit failed every hit for 75 s). Three defences:
- an idle timeout suited to beacons (`server.idle_timeout_seconds`): a browser sends a hit and
  goes; a connection that sends no complete request, or nothing after its last answer, is
  closed after it (aiohttp's keep-alive timeout, which it also applies before the first
  request);
- a cap on open connections (`server.max_connections`): past it a new connection is closed at
  once, so the descriptors left serve the connections already open, the outbox and relays;
- at start, the soft limit on open files is raised to the hard limit, and a limit too low for
  the cap is reported.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from aiohttp import web_server

__all__ = ["RESERVED_DESCRIPTORS", "install_cap", "raise_file_limit"]

log = logging.getLogger(__name__)

# Descriptors kept for everything but client connections: the outbox files, connections to
# destinations, geo databases, logs.
RESERVED_DESCRIPTORS = 256
_WARN_EVERY_SECONDS = 60.0


def raise_file_limit(max_connections: int) -> int:
    """Raise the soft limit on open files to the hard one; warn when it cannot hold
    `max_connections` plus the reserve. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < max_connections + RESERVED_DESCRIPTORS:
        log.warning("the open-file limit is %d, too low for server.max_connections %d (plus "
                    "%d for the outbox and relays): raise it (ulimit -n, LimitNOFILE= in "
                    "systemd, --ulimit nofile= in Docker) or lower server.max_connections",
                    soft, max_connections, RESERVED_DESCRIPTORS)
    return soft


class _Cap:
    """The connection cap, checked as aiohttp registers each new connection."""

    limit = 0  # 0: no cap (the class is installed once per process, the limit set per run)
    exempt: frozenset[tuple[str, int]] = frozenset()  # listeners never capped (the admin one)
    refused = 0
    warned_at = -_WARN_EVERY_SECONDS


def install_cap(limit: int, exempt: frozenset[tuple[str, int]] = frozenset()) -> None:
    """Close new connections once `limit` are open, except on the `exempt` listeners ((host,
    port) as bound: the admin listener must answer most when the public one is flooded).
    aiohttp has no such setting: its server's connection registration is wrapped, once per
    process."""
    _Cap.limit, _Cap.exempt = limit, exempt
    server: Any = web_server.Server
    if getattr(server.connection_made, "capped", False):
        return
    original = server.connection_made

    def connection_made(self: Any, handler: Any, transport: asyncio.Transport) -> None:
        original(self, handler, transport)
        if _Cap.limit and len(self._connections) > _Cap.limit and not _exempt(transport):
            transport.close()
            _Cap.refused += 1
            now = time.monotonic()
            if now - _Cap.warned_at >= _WARN_EVERY_SECONDS:
                _Cap.warned_at = now
                log.warning("%d connections open, the most server.max_connections allows: "
                            "closing new ones (%d so far)", _Cap.limit, _Cap.refused)

    def _exempt(transport: asyncio.Transport) -> bool:
        name = transport.get_extra_info("sockname")
        return bool(name) and (str(name[0]), int(name[1])) in _Cap.exempt

    connection_made.capped = True  # type: ignore[attr-defined]
    server.connection_made = connection_made
