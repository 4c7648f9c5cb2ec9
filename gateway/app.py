"""create_app(settings): routes, middleware and the long-lived resources as cleanup contexts.

Resources open in order (outbox, HTTP client, relay workers, pruner) and close in reverse, so at
shutdown the workers finish their in-flight batches before the client and the outbox close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from . import keys, logsafety
from .config import Settings
from .enrich import Enricher
from .errors import HitError, OutboxUnavailable
from .identity.cookies import FirstPartyCookies
from .identity.geo import GeoLocator
from .identity.proxy import TrustedProxies
from .identity.useragent import shared_parser
from .ingest.browser import handle_hit
from .observe import Labels, Metrics
from .outbox import Outbox
from .pipeline import Pipeline
from .relay.meta import DryRunSender, MetaCapiSender
from .relay.worker import RelayWorker, Sender

__all__ = ["create_app"]

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 600.0
# server.shutdown_timeout is one budget: open requests first (hits are quick), then batches.
HANDLER_SHARE_OF_SHUTDOWN = 0.3
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The gateway as an aiohttp application; `settings` must already be validated."""
    logsafety.install()
    app = web.Application(
        client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware]
    )
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock
    app[keys.METRICS] = Metrics()
    app[keys.PROXIES] = TrustedProxies(
        settings.server.trusted_proxies, settings.server.client_ip_headers,
        truncate=settings.identity.truncate_ip,
    )
    app[keys.COOKIES] = FirstPartyCookies(
        enabled=settings.cookies.enabled, domain=settings.cookies.domain
    )
    app.cleanup_ctx.extend([identity_ctx, outbox_ctx, http_session_ctx, relay_ctx, pruner_ctx])

    prefix = settings.server.path_prefix
    app.router.add_route("GET", f"{prefix}/tr", handle_hit)
    app.router.add_route("POST", f"{prefix}/tr", handle_hit)
    app.router.add_get(f"{prefix}/healthz", healthz)
    app.router.add_get(f"{prefix}/readyz", readyz)
    app.router.add_get(f"{prefix}/metrics", metrics)
    return app


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals the sender can act on, as JSON with a reason; never a traceback."""
    try:
        return await handler(request)
    except HitError as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
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
    settings = app[keys.SETTINGS]
    loop = asyncio.get_running_loop()
    user_agents = await loop.run_in_executor(None, shared_parser)
    geo = None
    if settings.geo.databases:
        geo = await loop.run_in_executor(None, GeoLocator, settings.geo.databases)
    app[keys.ENRICHER] = Enricher(
        user_agents, geo, fill_from_geo=settings.geo.fill_user_data,
        default_country=settings.identity.default_country,
    )
    yield
    if geo is not None:
        geo.close()


async def outbox_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    storage = settings.storage
    outbox = await Outbox.open(
        storage.path,
        commit_interval=storage.commit_interval_ms / 1000,
        lease_seconds=storage.lease_seconds,
        synchronous=storage.synchronous,
        clock=app[keys.CLOCK],
    )
    app[keys.OUTBOX] = outbox
    app[keys.PIPELINE] = Pipeline(
        settings.destinations, outbox, app[keys.METRICS], app[keys.ENRICHER], app[keys.CLOCK]
    )
    yield
    await outbox.close()


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession(
        headers={"User-Agent": "tag-gateway"}, connector=aiohttp.TCPConnector(limit=0)
    )
    app[keys.HTTP_SESSION] = session
    yield
    await session.close()


async def relay_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    workers = []
    for destination in settings.destinations:
        sender: Sender
        if destination.is_dry_run:
            sender = DryRunSender(destination)
        else:
            sender = MetaCapiSender(destination, app[keys.HTTP_SESSION])
        workers.append(RelayWorker(destination, app[keys.OUTBOX], sender, app[keys.METRICS],
                                   clock=app[keys.CLOCK]))
    for worker in workers:
        worker.start()
    app[keys.WORKERS] = workers
    yield
    budget = settings.server.shutdown_timeout * (1 - HANDLER_SHARE_OF_SHUTDOWN)
    await asyncio.gather(*(w.stop(budget) for w in workers))


async def pruner_ctx(app: web.Application) -> AsyncIterator[None]:
    """Delete finished rows after the retention period, now and then."""
    retention = app[keys.SETTINGS].storage.retention_hours * 3600
    outbox, clock = app[keys.OUTBOX], app[keys.CLOCK]

    async def prune_forever() -> None:
        while True:
            try:
                removed = await outbox.prune(clock() - retention)
                if removed:
                    log.info("pruned %d finished outbox rows", removed)
            except Exception:
                log.exception("pruning the outbox failed; will try again")
            await asyncio.sleep(PRUNE_EVERY_SECONDS)

    task = asyncio.create_task(prune_forever(), name="outbox-pruner")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# -- probes ---------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the outbox takes writes and every relay worker runs."""
    problems = []
    if not await request.app[keys.OUTBOX].writable():
        problems.append("outbox is not writable")
    problems += [
        f"relay worker for destination {w.settings.name} is not running"
        for w in request.app[keys.WORKERS] if not w.running
    ]
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    counts = await request.app[keys.OUTBOX].counts()
    rows: dict[Labels, float] = {
        (("destination", dest), ("state", state)): float(n) for (dest, state), n in counts.items()
    }
    text = request.app[keys.METRICS].render({"gateway_outbox_rows": rows})
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
