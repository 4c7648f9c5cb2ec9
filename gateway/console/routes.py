"""The console's routes: its static page, sign-in and sign-out, and the API (each route through
the guard, guard.py). While `admin.key_sha256` is empty the page says how to turn the console
on and every other route refuses.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from aiohttp import hdrs, web

from .. import appkeys
from ..accesskeys import key_sha256
from . import api, stream
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
from .sessions import Session, Sessions, process_secret

__all__ = ["add_console_routes"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"
_FILES = {"": ("index.html", "text/html"), "console.js": ("console.js", "text/javascript"),
          "console.css": ("console.css", "text/css")}
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
        app[SESSIONS] = Sessions(settings.admin_key_sha256, process_secret(), app[appkeys.CLOCK])
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
    app.router.add_get(f"{base}/api/dead-letters", console_api(api.dead_letters))
    app.router.add_post(f"{base}/api/dead-letters/replay", console_api(api.replay, write=True))
    app.router.add_get(f"{base}/api/rules", console_api(api.rules))
    app.router.add_get(f"{base}/api/events/stream", console_api(stream.events))
    app.router.add_get(f"{base}/api/traffic", console_api(api.traffic))
    app.on_shutdown.append(stream.end_streams)


def _static(path: Path, content_type: str) -> Handler:
    body = path.read_bytes()  # read once: the files ship with the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=_PAGE_HEADERS)

    return serve


async def sign_in(request: web.Request) -> web.StreamResponse:
    """The sign-in form (`key`): a session cookie and back to the page; with a wrong key back
    to the page with `?signin=failed` and no cookie."""
    app = request.app
    if SESSIONS not in app:
        return refuse(403, TURN_ON)
    base = f"{app[appkeys.SETTINGS].server.path_prefix}/admin/"
    form = await request.post()
    key = form.get("key")
    expected = app[appkeys.SETTINGS].admin_key_sha256
    if not isinstance(key, str) or not hmac.compare_digest(key_sha256(key.strip()), expected):
        log.warning("console: a sign-in with a wrong admin key was refused")
        return web.Response(status=303, headers={hdrs.LOCATION: base + "?signin=failed",
                                                 **API_HEADERS})
    session, token = app[SESSIONS].start()
    response = web.Response(status=303, headers={hdrs.LOCATION: base, **API_HEADERS})
    set_session_cookie(request, response, session, token)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    """End the session: the cookie is cleared and its token refused from now on."""
    response = web.Response(status=204)
    session = request.get(SESSION)
    if isinstance(session, Session):
        request.app[SESSIONS].revoke(session)
        request[SESSION] = None  # not renewed on the way out
        set_session_cookie(request, response, None, "")
    return response
