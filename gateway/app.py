"""create_app(settings): routes, middleware and the long-lived resources as cleanup contexts.

Resources open in order (identity data, outbox, HTTP client, relay workers, upkeep tasks) and
close in reverse, so at shutdown the workers finish their in-flight batches before the client
and the outbox close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import hdrs, web

from . import admin, appkeys, logsafety
from .accesskeys import KeysInForce
from .alerts import Alerts
from .backpressure import Backpressure
from .config import load_settings
from .console import add_console_routes, follow_console_destinations
from .enrich import Enricher
from .errors import HitError, OutboxFull, OutboxUnavailable
from .eventbus import EventBus
from .identity.cookies import FirstPartyCookies
from .identity.trustedproxies import TrustedProxies
from .ingest.browser import handle_hit
from .ingest.cors import add_cors
from .ingest.demo import add_demo_routes
from .ingest.serverroutes import add_server_routes
from .ingest.snippet import add_snippet_routes
from .live import Live, Snapshot
from .liverules import LiveRules
from .observe import Metrics
from .pipeline import Pipeline
from .recordwatch import RecordWatch
from .relay.relays import Relays
from .relay.worker import IDLE_POLL_SECONDS, SHARED_IDLE_POLL_SECONDS, RelayWorker
from .reload import Reloader, file_stamp
from .settings import Settings
from .storage import claims_at_once, start_outbox
from .whole.service import add_whole

__all__ = ["create_app"]

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600.0
# server.shutdown_timeout is one budget: open requests first (hits are quick), then batches.
HANDLER_SHARE_OF_SHUTDOWN = 0.3
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    worker: int | None = None,
) -> web.Application:
    """The gateway as an aiohttp application; `settings` must already be validated.

    `worker`: this process's index among the `serve --workers N` processes that share the
    port and the outbox (None: the only process). Only worker 0 relays."""
    logsafety.install()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.LIVE] = live = Live(settings)
    app[appkeys.CLOCK] = clock
    app[appkeys.WORKER] = (worker or 0, not worker)
    app[appkeys.SHARED] = worker is not None
    app[appkeys.METRICS] = Metrics()
    app[appkeys.EVENTS] = EventBus(worker or 0)
    app[appkeys.PROXIES] = TrustedProxies(
        settings.server.trusted_proxies, settings.server.client_ip_headers,
        chain=settings.server.forwarding_header, truncate=settings.identity.truncate_ip,
    )
    app[appkeys.ACCESS_KEYS] = KeysInForce(lambda: live.current.settings.access_keys)
    app[appkeys.COOKIES] = FirstPartyCookies(
        enabled=settings.cookies.enabled, domain=settings.cookies.domain
    )
    app.cleanup_ctx.extend([
        identity_ctx, outbox_ctx, rules_ctx, http_session_ctx, relay_ctx, upkeep_ctx, reload_ctx,
    ])
    prefix = settings.server.path_prefix
    app.router.add_route("GET", f"{prefix}/tr", handle_hit)
    app.router.add_route("POST", f"{prefix}/tr", handle_hit)
    add_cors(app, prefix)
    add_snippet_routes(app, prefix, name=settings.server.script_name)
    add_demo_routes(app, settings)
    admin.add_routes(app, prefix)
    add_console_routes(app, prefix)
    add_whole(app, worker or 0)  # this process's report, live events across processes
    add_server_routes(app, prefix)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals the sender can act on, as JSON with a reason; never a traceback."""
    try:
        response = await handler(request)
    except HitError as exc:
        response = web.json_response({"error": exc.reason}, status=exc.status)
    except OutboxUnavailable as exc:
        if isinstance(exc, OutboxFull):
            metrics = request.app[appkeys.METRICS]
            metrics.count(metrics.hits, "busy")
        response = web.json_response({"error": exc.answer}, status=503,
                                     headers={"Retry-After": str(exc.retry_after)})
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (404, 405, ...) in the same JSON shape as ours.
        headers = {name: value for name, value in exc.headers.items()
                   if name not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)}
        response = web.json_response({"error": exc.reason.lower()}, status=exc.status,
                                     headers=headers)
    except Exception as exc:
        # A bug, not the sender's fault: log where it happened, but neither the query nor the
        # exception's message (both may carry what the sender sent: personal data), and
        # answer without details.
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error("internal error handling %s %s: %s\n%s", request.method, request.path,
                  type(exc).__name__, where.rstrip())
        response = web.json_response({"error": "internal error"}, status=500)
    if request.content.exception() is not None:
        # A body that could not be read (bad gzip, broken chunks) leaves the connection
        # unusable: say so (`Connection: close`) rather than let the client reuse it and fail.
        response.force_close()
    return response


# -- resources ------------------------------------------------------------------------------
async def identity_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the user-agent rules and open the geo databases, off the event loop."""
    live = app[appkeys.LIVE]
    enricher = await asyncio.get_running_loop().run_in_executor(
        None, Enricher.from_settings, app[appkeys.SETTINGS], lambda: live.current.kinds)
    app[appkeys.ENRICHER] = enricher
    yield
    enricher.close()


async def rules_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the marketers' rules and run their tests; a broken rule set stops start-up."""
    settings = app[appkeys.SETTINGS]
    rules = LiveRules(settings.rules_path, app[appkeys.LIVE], app[appkeys.ENRICHER].enrich,
                      clock=app[appkeys.CLOCK])
    await rules.load()
    app[appkeys.RULES] = rules
    app[appkeys.PIPELINE] = Pipeline(
        app[appkeys.LIVE], app[appkeys.OUTBOX], app[appkeys.METRICS], app[appkeys.ENRICHER],
        app[appkeys.CLOCK], app[appkeys.BACKPRESSURE], rules, app[appkeys.EVENTS],
    )
    yield


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[appkeys.SETTINGS]
    storage = settings.storage
    # Starts even when the store cannot be opened yet (full disk, database down): ingest
    # answers 503 until it opens in the background.
    outbox = await start_outbox(storage, clock=app[appkeys.CLOCK], shared=app[appkeys.SHARED])
    app[appkeys.OUTBOX] = outbox
    app[appkeys.RECORDS] = RecordWatch(outbox)
    # The console's destinations join config.yaml's before the rules load (rules may name them).
    follow_console_destinations(app)
    with contextlib.suppress(OutboxUnavailable):  # not open yet: they come with the watch
        await app[appkeys.RECORDS].refresh()
    backpressure = Backpressure(outbox, app[appkeys.METRICS], max_rows=storage.max_queue_rows,
                                max_bytes=storage.max_queue_mb * 2**20)
    await backpressure.check()
    app[appkeys.BACKPRESSURE] = backpressure
    yield
    await outbox.close()


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(
        headers={"User-Agent": "tag-gateway"}, connector=aiohttp.TCPConnector(limit=0)
    )
    app[appkeys.HTTP_SESSION] = session
    alerts = Alerts(session, app[appkeys.SETTINGS].alert_webhook_url, clock=app[appkeys.CLOCK])
    app[appkeys.ALERTS] = alerts
    yield
    await alerts.close()
    await session.close()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    """One relay worker per live destination, in the relaying process only."""
    settings = app[appkeys.SETTINGS]

    def make_worker(name: str) -> RelayWorker:
        return RelayWorker(
            name, app[appkeys.LIVE], app[appkeys.OUTBOX], app[appkeys.HTTP_SESSION],
            app[appkeys.METRICS], app[appkeys.ALERTS],
            dedup_seconds=settings.storage.dedup_hours * 3600,
            claims_at_once=claims_at_once(settings.storage), clock=app[appkeys.CLOCK],
            idle_poll_seconds=(SHARED_IDLE_POLL_SECONDS if app[appkeys.SHARED]
                               else IDLE_POLL_SECONDS),
            bus=app[appkeys.EVENTS],
        )

    relays = Relays(app[appkeys.LIVE], make_worker)
    _, relaying = app[appkeys.WORKER]
    if relaying:
        relays.start()
    app[appkeys.RELAYS] = relays
    yield
    await relays.stop(settings.server.shutdown_timeout * (1 - HANDLER_SHARE_OF_SHUTDOWN))


async def upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Background chores: prune finished rows and stale dedup keys; watch the queue's size and
    the console's records."""
    storage = app[appkeys.SETTINGS].storage
    outbox, clock = app[appkeys.OUTBOX], app[appkeys.CLOCK]

    async def prune_forever() -> None:
        while True:
            try:
                removed = await outbox.prune(
                    clock() - storage.retention_hours * 3600,
                    dedup_older_than=clock() - storage.dedup_hours * 3600,
                )
                if removed:
                    log.info("pruned %d finished outbox rows", removed)
            except Exception:
                log.exception("pruning the outbox failed; will try again")
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    _, relays = app[appkeys.WORKER]
    jobs = [app[appkeys.BACKPRESSURE].run(), app[appkeys.RECORDS].watch()]
    if relays:
        jobs.append(prune_forever())
    async with _background(*jobs):
        yield


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """Reload rules (always) and config (when read from a file) on change and on SIGHUP."""
    settings = app[appkeys.SETTINGS]
    path = settings.path
    rules, live = app[appkeys.RULES], app[appkeys.LIVE]
    checks: set[asyncio.Task[bool]] = set()

    def apply(new: Settings) -> None:
        apply_settings(app, new)
        log.info("config reloaded from %s", path)

    def destinations_changed(old: Snapshot, new: Snapshot) -> None:
        if set(old.by_name) != set(new.by_name):
            # Rules name destinations (config.yaml's or the console's): test them against the
            # new set now (a rule set that waited for a new destination goes live; one naming
            # a removed one is reported).
            check = asyncio.get_running_loop().create_task(rules.reload())
            checks.add(check)
            check.add_done_callback(checks.discard)

    unlisten = live.listen(destinations_changed)

    reloader = Reloader(
        "config", stamp=lambda: file_stamp(path) if path else None,
        build=lambda: load_settings(path) if path else settings, apply=apply,
        clock=app[appkeys.CLOCK],
    )
    reloader.started()
    app[appkeys.RELOADER] = reloader
    loop = asyncio.get_running_loop()

    async def reload_all() -> None:
        if path is not None:
            await reloader.reload()
        await rules.reload()

    jobs = [rules.watch()]
    if path is not None:
        jobs.append(reloader.watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_all()))
    async with _background(*jobs):
        yield
    unlisten()
    for check in list(checks):
        check.cancel()
    await asyncio.gather(*checks, return_exceptions=True)
    if path is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)


def apply_settings(app: web.Application, new: Settings) -> None:
    """Make a reloaded config live as far as it can be without a restart; name the rest.

    Destinations apply whole (added, removed, retyped or changed: the relay follows the live
    snapshot), except that a live destination never turns into a dry run without a restart (an
    emptied token, an unset variable or a typo, would mark its whole queue as sent); so do
    `access_keys` (those made in the console stay: they are not config) and
    `server.allowed_origins`. The other sections are compared with what is
    running, and those that differ are logged and listed on /status until a restart.
    """
    live = app[appkeys.LIVE]
    running = live.config  # the console's destinations stay: Live adds them
    started = app[appkeys.SETTINGS]  # what the restart-only sections still are
    live_server = replace(started.server, allowed_origins=new.server.allowed_origins)
    restart = [name for name in RESTART_SECTIONS if getattr(started, name) != getattr(new, name)]
    if live_server != new.server:
        restart.insert(0, "server (other than allowed_origins)")
    applied = []
    previous = {d.name: d for d in running.destinations}  # config.yaml's, never the console's
    for destination in new.destinations:
        current = previous.get(destination.name)
        if current is not None and destination.is_dry_run and not current.is_dry_run:
            restart.append(f"destinations[{destination.name}] (live to dry run)")
            destination = current
        applied.append(destination)
    live.swap(replace(running, destinations=tuple(applied), access_keys=new.access_keys,
                      server=live_server))
    live.waiting_for_restart = tuple(restart)
    if restart:
        log.warning("config changes that need a restart to apply: %s", ", ".join(restart))


# Read once at start; `server` too, except its allowed_origins (see apply_settings).
RESTART_SECTIONS = ("storage", "geo", "identity", "cookies", "rules_path",
                    "alert_webhook_url", "admin_key_sha256", "admin_listen", "log_level")


@contextlib.asynccontextmanager
async def _background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
