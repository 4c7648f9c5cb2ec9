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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from . import admin, keys, logsafety
from .alerts import Alerts
from .backpressure import Backpressure
from .config import DestinationSettings, Settings
from .enrich import Enricher
from .errors import HitError, OutboxFull, OutboxUnavailable
from .identity.cookies import FirstPartyCookies
from .identity.proxy import TrustedProxies
from .ingest.browser import handle_hit
from .ingest.cors import add_cors
from .ingest.server import add_server_routes
from .ingest.snippet import add_snippet_routes
from .observe import Metrics
from .pipeline import Pipeline
from .relay.meta import DryRunSender, MetaCapiSender
from .relay.worker import IDLE_POLL_SECONDS, SHARED_IDLE_POLL_SECONDS, RelayWorker, Sender
from .reload import ConfigReloader
from .rulesreload import LiveRules
from .storage import open_outbox

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
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock
    app[keys.WORKER] = (worker or 0, not worker)
    app[keys.SHARED] = worker is not None
    app[keys.METRICS] = Metrics()
    app[keys.PROXIES] = TrustedProxies(
        settings.server.trusted_proxies, settings.server.client_ip_headers,
        chain=settings.server.forwarding_header, truncate=settings.identity.truncate_ip,
    )
    app[keys.COOKIES] = FirstPartyCookies(
        enabled=settings.cookies.enabled, domain=settings.cookies.domain
    )
    app.cleanup_ctx.extend([
        identity_ctx, rules_ctx, outbox_ctx, http_session_ctx, relay_ctx, upkeep_ctx, reload_ctx,
    ])
    prefix = settings.server.path_prefix
    app.router.add_route("GET", f"{prefix}/tr", handle_hit)
    app.router.add_route("POST", f"{prefix}/tr", handle_hit)
    add_cors(app, prefix, settings.server.allowed_origins)
    add_snippet_routes(app, prefix, name=settings.server.script_name)
    admin.add_routes(app, prefix)
    add_server_routes(app, prefix)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals the sender can act on, as JSON with a reason; never a traceback."""
    try:
        return await handler(request)
    except HitError as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    except OutboxFull as exc:
        metrics = request.app[keys.METRICS]
        metrics.count(metrics.hits, "busy")
        return web.json_response({"error": f"the gateway is busy: {exc}; retry later"},
                                 status=503, headers={"Retry-After": "30"})
    except OutboxUnavailable:
        return web.json_response(
            {"error": "the gateway cannot store events right now; retry later"},
            status=503, headers={"Retry-After": "5"},
        )
    except web.HTTPException:
        raise
    except Exception:
        # A bug, not the sender's fault: log it (the route only: queries carry personal data)
        # and answer without details.
        log.exception("internal error handling %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


# -- resources ------------------------------------------------------------------------------
async def identity_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the user-agent rules and open the geo databases, off the event loop."""
    enricher = await asyncio.get_running_loop().run_in_executor(
        None, Enricher.from_settings, app[keys.SETTINGS])
    app[keys.ENRICHER] = enricher
    yield
    enricher.close()


async def rules_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the marketers' rules and run their tests; a broken rule set stops start-up."""
    settings = app[keys.SETTINGS]
    rules = LiveRules(settings.rules_path, settings.destinations, app[keys.ENRICHER].enrich,
                      clock=app[keys.CLOCK])
    await rules.load()
    app[keys.RULES] = rules
    yield


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    storage = settings.storage
    outbox = await open_outbox(storage, clock=app[keys.CLOCK], shared=app[keys.SHARED])
    app[keys.OUTBOX] = outbox
    backpressure = Backpressure(outbox, app[keys.METRICS], max_rows=storage.max_queue_rows,
                                max_bytes=storage.max_queue_mb * 2**20)
    await backpressure.check()
    app[keys.BACKPRESSURE] = backpressure
    app[keys.PIPELINE] = Pipeline(
        settings.destinations, outbox, app[keys.METRICS], app[keys.ENRICHER], app[keys.CLOCK],
        backpressure, app[keys.RULES],
    )
    yield
    await outbox.close()


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(
        headers={"User-Agent": "tag-gateway"}, connector=aiohttp.TCPConnector(limit=0)
    )
    app[keys.HTTP_SESSION] = session
    alerts = Alerts(session, app[keys.SETTINGS].alert_webhook_url, clock=app[keys.CLOCK])
    app[keys.ALERTS] = alerts
    yield
    await alerts.close()
    await session.close()


def make_sender(destination: DestinationSettings, session: aiohttp.ClientSession) -> Sender:
    if destination.is_dry_run:
        return DryRunSender(destination)
    return MetaCapiSender(destination, session)


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    _, relays = app[keys.WORKER]
    workers = [] if not relays else [
        RelayWorker(
            make_sender(destination, app[keys.HTTP_SESSION]), app[keys.OUTBOX],
            app[keys.METRICS], app[keys.ALERTS],
            dedup_seconds=settings.storage.dedup_hours * 3600, clock=app[keys.CLOCK],
            idle_poll_seconds=SHARED_IDLE_POLL_SECONDS if app[keys.SHARED] else IDLE_POLL_SECONDS,
        )
        for destination in settings.destinations
    ]
    for worker in workers:
        worker.start()
    app[keys.WORKERS] = workers
    yield
    budget = settings.server.shutdown_timeout * (1 - HANDLER_SHARE_OF_SHUTDOWN)
    await asyncio.gather(*(w.stop(budget) for w in workers))


async def upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Background chores: prune finished rows and stale dedup keys; watch the queue's size."""
    storage = app[keys.SETTINGS].storage
    outbox, clock = app[keys.OUTBOX], app[keys.CLOCK]

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

    _, relays = app[keys.WORKER]
    jobs = [prune_forever(), app[keys.BACKPRESSURE].run()] if relays else [
        app[keys.BACKPRESSURE].run()]
    async with _background(*jobs):
        yield


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """Reload rules (always) and config (when read from a file) on change and on SIGHUP."""

    def apply(old: Settings, new: Settings) -> None:
        apply_settings(app, old, new)

    reloader = ConfigReloader(app[keys.SETTINGS], apply, clock=app[keys.CLOCK])
    app[keys.RELOADER] = reloader
    rules = app[keys.RULES]
    loop = asyncio.get_running_loop()

    async def reload_all() -> None:
        await reloader.reload()
        await rules.reload()

    jobs = [rules.watch()]
    if app[keys.SETTINGS].path is not None:
        jobs.append(reloader.watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_all()))
    async with _background(*jobs):
        yield
    if app[keys.SETTINGS].path is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)


def apply_settings(app: web.Application, old: Settings, new: Settings) -> None:
    """Hot-apply what the running workers can take; name what needs a restart.

    Everything is compared with what is running (the pipeline's destinations, the start-up
    settings), not with the previous file, so a second reload cannot drift from reality.
    """
    running = app[keys.SETTINGS]
    by_name = {d.name: d for d in new.destinations}
    restart = [name for name in RESTART_SECTIONS if getattr(running, name) != getattr(new, name)]
    # Every process routes (the pipeline); only the relaying one has workers to update.
    current = {d.name: d for d in app[keys.PIPELINE].destinations}
    applied = []
    for started in running.destinations:
        # A destination the new file leaves out keeps running as it is (removing one needs a
        # restart), never falls back to its start-up settings (an old, perhaps revoked token).
        destination = by_name.get(started.name) or current[started.name]
        if destination.max_in_flight != started.max_in_flight:
            restart.append(f"destinations[{started.name}].max_in_flight")
            destination = replace(destination, max_in_flight=started.max_in_flight)
        if destination.is_dry_run and not current[started.name].is_dry_run:
            # An emptied token (an unset variable, a typo) would mark the whole queue as
            # dry_run: never switch a live destination off without a restart.
            restart.append(f"destinations[{started.name}] (live to dry run)")
            destination = current[started.name]
        applied.append(destination)
    workers = {w.name: w for w in app[keys.WORKERS]}
    for destination in applied:
        worker = workers.get(destination.name)
        if worker is not None and destination != worker.settings:
            worker.use(make_sender(destination, app[keys.HTTP_SESSION]))
    app[keys.PIPELINE].use_destinations(applied)
    app[keys.RULES].use_destinations(applied)
    if {d.name for d in running.destinations} != set(by_name):
        restart.append("destinations (added or removed)")
    if restart:
        log.warning("config changes that need a restart to apply: %s", ", ".join(restart))


RESTART_SECTIONS = ("server", "storage", "geo", "identity", "cookies", "rules_path",
                    "access_keys", "alert_webhook_url", "admin_key_sha256", "log_level")


@contextlib.asynccontextmanager
async def _background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
