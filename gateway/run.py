"""Run the gateway: logging, event loop, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import logging
import socket

from aiohttp import web

from . import admin, storage
from .app import HANDLER_SHARE_OF_SHUTDOWN, create_app
from .connections import install_cap, raise_file_limit
from .ingest.basecode import start_text
from .live import Snapshot
from .settings import Settings

__all__ = ["PortInUse", "describe", "serve", "tune_gc"]

log = logging.getLogger("gateway")

# Collections of the youngest generation run after this many net allocations (CPython's
# default is 700, which a hit's short-lived containers reach every ~20 hits).
GC_YOUNG_THRESHOLD = 7000


async def tune_gc(app: web.Application) -> None:
    """Once start-up has built what lives as long as the process (UA regexes, geo readers,
    rules, metrics), move it out of the collector's sight and collect less often. Measured
    under load: the collector took ~1.1 s of CPU in 16 s (full collections walked those
    ~50,000 objects again, pausing up to ~50 ms); with this, ~45 ms."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_ALLOCATION_BYTES = 1 << 20


def tune_malloc() -> None:
    """Keep large buffers (request bodies up to several MB) out of the heap: glibc raises its
    mmap threshold after the first large block is freed, so later ones are carved from the heap
    and the holes they leave keep the process's memory up. Pinned, every block of 1 MB or more
    is mapped and given back to the system when freed (measured with bench/hostile.py:
    docs/benchmarks.md). No-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION_BYTES)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def describe(settings: Settings) -> list[str]:
    """One line per destination saying where its events go (no secrets)."""
    lines = []
    for destination in Snapshot.of(settings).destinations:
        d = destination.settings
        accepts = "all pixel ids" if d.accepts is None else ", ".join(sorted(d.accepts))
        mode = (f"DRY RUN ({d.dry_run_reason})" if d.is_dry_run
                else f"live via {destination.endpoint}")
        lines.append(f"destination {d.name}: {mode}; accepts {accepts}; sends to "
                     f"{destination.target}")
    return lines


class PortInUse(Exception):
    """A listener's address is taken; `setting` names where to choose another."""

    def __init__(self, address: str, setting: str) -> None:
        super().__init__(address)
        self.address = address
        self.setting = setting


def _admin_socket(listen: str, *, shared: bool) -> socket.socket:
    """The admin listener's socket, bound (aiohttp listens on it beside the public port)."""
    host, _, port = listen.rpartition(":")
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), int(port), type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:  # every `--workers` process answers on it, as on the public port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(listen, "admin.listen") from None
        raise
    return sock


def _listening(text: str, settings: Settings, worker: int | None) -> None:
    """Log where the gateway listens; a lone process then prints the base code to paste (with
    `--workers N` the supervisor prints it, once)."""
    log.info("%s", text.strip())
    if worker is None:
        print(start_text(settings), flush=True)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # optional speed-up
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(settings: Settings, *, worker: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM, then drain: stop accepting, finish requests and batches.

    `worker`: this process is one of several sharing the port (SO_REUSEPORT) and the outbox;
    only worker 0 relays (one relay per destination across processes)."""
    configure_logging(settings.log_level)
    server = settings.server
    if not worker:
        log.info("outbox: %s", storage.describe(settings.storage))
        for line in describe(settings):
            log.info("%s", line)
    tune_malloc()
    raise_file_limit(server.max_connections)
    app = create_app(settings, worker=worker)
    app.on_startup.append(tune_gc)  # after the cleanup contexts: they build the long-lived parts
    admin_sockets = []
    if settings.admin_listen:
        admin_sockets.append(_admin_socket(settings.admin_listen, shared=worker is not None))
        admin.serve_operators_on(app, admin_sockets[0].getsockname())
        if not worker:
            log.info("operator endpoints (/status, /metrics, /dead-letters) on http://%s%s%s",
                     settings.admin_listen, server.path_prefix,
                     " with the admin key" if settings.admin_key_sha256 else " (no key needed)")
    exempt: set[tuple[str, int]] = app[admin.ADMIN_LISTENERS]
    install_cap(server.max_connections, frozenset(exempt))
    web.run_app(
        app,
        host=server.host,
        port=server.port,
        sock=admin_sockets or None,
        reuse_port=worker is not None,
        shutdown_timeout=server.shutdown_timeout * HANDLER_SHARE_OF_SHUTDOWN,
        # The default access log would write hit URLs, which carry personal data.
        access_log=None,
        # A request answered before its body was read (a refused key, a throttled client)
        # closes its connection rather than reading and discarding the rest for up to 10 s:
        # a client sending large bodies without a key costs their headers, not their bytes.
        lingering_time=0,
        keepalive_timeout=server.idle_timeout,
        print=(lambda text: _listening(text, settings, worker)) if not worker else None,
        loop=_new_loop(),
    )
