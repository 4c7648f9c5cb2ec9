"""The console's routes: its static page, sign-in and sign-out, and the API (each route through
the guard, guard.py). While `admin.key_sha256` is empty the page says how to turn the console
on and every other route refuses.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import hdrs, web

from .. import appkeys
from ..accesskeys import key_sha256
from ..errors import OutboxUnavailable
from ..ingest.body import UNREADABLE_FORM
from . import api, destinations, stream
from .accesskeys import add_access_key_routes
from .guard import (
    API_HEADERS,
    SESSION,
    SESSIONS,
    TURN_ON,
    Handler,
    console_api,
    refuse,
    set_session_cookie,
)
from .sessions import Session, Sessions
from .signins import SignIns

__all__ = ["add_console_routes"]

log = logging.getLogger(__name__)

SIGN_INS = web.AppKey("console_sign_ins", SignIns)  # only while the console is on
PRUNE_SESSIONS_SECONDS = 600.0

STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"
_FILES = {"": ("index.html", "text/html"), "console.js": ("console.js", "text/javascript"),
          "console.css": ("console.css", "text/css"),
          "destinations.js": ("destinations.js", "text/javascript")}
_PAGE_HEADERS = {
    hdrs.CACHE_CONTROL: "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; form-action 'self'; "
                               "base-uri 'none'; frame-ancestors 'none'",
}


def add_console_routes(app: web.Application, prefix: str) -> None:
    settings = app[appkeys.SETTINGS]
    on = bool(settings.admin_key_sha256)
    if on:
        app[SIGN_INS] = SignIns(app[appkeys.CLOCK])
        app.cleanup_ctx.append(_sessions_ctx)
    base = f"{prefix}/admin"

    async def home(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{base}/")

    app.router.add_get(base, home)
    for name, (file, content_type) in _FILES.items():
        page = file if on or name else "off.html"  # off: the page says how to turn it on
        app.router.add_get(f"{base}/{name}", _static(STATIC / page, content_type))
    app.router.add_post(f"{base}/sign-in", sign_in)
    app.router.add_post(f"{base}/sign-out", console_api(sign_out, write=True))
    app.router.add_get(f"{base}/api/session", console_api(api.session))
    app.router.add_get(f"{base}/api/status", console_api(api.status))
    app.router.add_get(f"{base}/api/destinations", console_api(api.destinations))
    add_destination_routes(app, f"{base}/api")
    app.router.add_get(f"{base}/api/dead-letters", console_api(api.dead_letters))
    app.router.add_post(f"{base}/api/dead-letters/replay", console_api(api.replay, write=True))
    app.router.add_get(f"{base}/api/rules", console_api(api.rules))
    app.router.add_get(f"{base}/api/events/stream", console_api(stream.events))
    app.router.add_get(f"{base}/api/traffic", console_api(api.traffic))
    app.on_shutdown.append(stream.end_streams)
    add_access_key_routes(app, base)


async def _sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Sessions in the store (opened once the outbox is); the relaying worker prunes ended
    ones now and then."""
    app[SESSIONS] = sessions = Sessions(app[appkeys.OUTBOX],
                                        app[appkeys.SETTINGS].admin_key_sha256,
                                        app[appkeys.CLOCK])

    async def prune_forever() -> None:
        while True:
            try:
                await sessions.prune()
            except OutboxUnavailable:
                pass  # next time
            except Exception:
                log.exception("console: pruning ended sessions failed; will try again")
            await asyncio.sleep(PRUNE_SESSIONS_SECONDS)

    _, relays = app[appkeys.WORKER]
    task = asyncio.create_task(prune_forever()) if relays else None
    yield
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    app[SIGN_INS].close()


def add_destination_routes(app: web.Application, api_base: str) -> None:
    """Console destinations and their write-only tokens (destinations.py)."""
    base, one = f"{api_base}/destinations", f"{api_base}/destinations/{{name}}"
    app.router.add_get(f"{api_base}/destination-types", console_api(destinations.types))
    app.router.add_post(base, console_api(destinations.add, write=True))
    app.router.add_delete(one, console_api(destinations.remove, write=True))
    app.router.add_put(f"{one}/token", console_api(destinations.set_token, write=True))
    app.router.add_delete(f"{one}/token", console_api(destinations.clear_token, write=True))
    app.router.add_post(f"{one}/test-event", console_api(destinations.test_event, write=True))


def _static(path: Path, content_type: str) -> Handler:
    body = path.read_bytes()  # read once: the files ship with the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=_PAGE_HEADERS)

    return serve


async def sign_in(request: web.Request) -> web.StreamResponse:
    """The sign-in form (`key`): a session cookie and back to the page; with a wrong key back
    to the page with `?signin=failed` and no cookie; after too many wrong keys from one
    address, 429 until the throttle lets it try again."""
    app = request.app
    if SESSIONS not in app:
        return refuse(403, TURN_ON)
    sign_ins = app[SIGN_INS]
    client = app[appkeys.PROXIES].client_ip(request.remote, request.headers) or "unknown"
    wait = sign_ins.retry_after(client)
    if wait is not None:
        return web.json_response(
            {"error": f"too many sign-ins with a wrong admin key from your address: try again "
                      f"in {wait} s"},
            status=429, headers={**API_HEADERS, hdrs.RETRY_AFTER: str(wait)})
    base = f"{app[appkeys.SETTINGS].server.path_prefix}/admin/"
    try:
        form = await request.post()
    except UNREADABLE_FORM:
        sign_ins.failed(client)
        return refuse(400, "the sign-in form cannot be read: send the admin key as the form "
                           "field `key`")
    key = form.get("key")
    expected = app[appkeys.SETTINGS].admin_key_sha256
    if not isinstance(key, str) or not hmac.compare_digest(key_sha256(key.strip()), expected):
        sign_ins.failed(client)
        return web.Response(status=303, headers={hdrs.LOCATION: base + "?signin=failed",
                                                 **API_HEADERS})
    sign_ins.succeeded(client)
    session, token = await app[SESSIONS].start()
    response = web.Response(status=303, headers={hdrs.LOCATION: base, **API_HEADERS})
    set_session_cookie(request, response, session, token)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session: the cookie is cleared and its token refused from now on, by every
    worker and node."""
    response = web.Response(status=204)
    session = request.get(SESSION)
    if isinstance(session, Session):
        await request.app[SESSIONS].end(session)
        set_session_cookie(request, response, None, "")
    return response
