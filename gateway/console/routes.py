"""The console's routes: its static page, sign-in and sign-out, and the API's guard.

Off (every route answers how to turn it on) while `admin.key_sha256` is empty. The API
accepts a session cookie (and on every state-changing request the session's CSRF token in the
`X-CSRF-Token` header, else 403) or `Authorization: Bearer <admin key>` (no CSRF: a cross-site
page cannot make a browser send it).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import hdrs, web

from .. import appkeys
from ..accesskeys import key_sha256
from ..admin import has_admin_key
from .sessions import ABSOLUTE_SECONDS, COOKIE, Session, Sessions, process_secret

__all__ = ["CSRF_HEADER", "SESSION", "SESSIONS", "add_console_routes", "console_api",
           "set_session_cookie"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).resolve().parent.parent / "static" / "admin"
CSRF_HEADER = "X-CSRF-Token"
SESSIONS = web.AppKey("console_sessions", Sessions)
SESSION: web.RequestKey[Session | None] = web.RequestKey("console_session")  # a cookie's
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
_API_HEADERS = {hdrs.CACHE_CONTROL: "no-store", "X-Content-Type-Options": "nosniff"}
TURN_ON = ("the console is off: run `tag-gateway keys admin`, put the `admin: key_sha256` line "
           "it prints into config.yaml and restart the gateway")


def add_console_routes(app: web.Application, prefix: str) -> None:
    from . import api, stream  # the API's modules use this one's guard

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
    app.on_shutdown.append(stream.end_streams)


def _static(path: Path, content_type: str) -> Handler:
    body = path.read_bytes()  # read once: the files ship with the package

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8",
                            headers=_PAGE_HEADERS)

    return serve


def _refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=_API_HEADERS)


def console_api(handler: Handler, *, write: bool = False) -> Handler:
    """Let a request through with the admin key as a bearer token, or with a valid session
    cookie (and, when `write`, its CSRF token); renew the cookie of an active session."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        app = request.app
        if SESSIONS not in app:
            return _refuse(403, TURN_ON)
        if hdrs.AUTHORIZATION in request.headers:
            if not has_admin_key(request):
                return web.json_response({"error": "that is not the admin key"}, status=401,
                                         headers={**_API_HEADERS, hdrs.WWW_AUTHENTICATE: "Bearer"})
            return _no_store(await handler(request))
        sessions = app[SESSIONS]
        session = sessions.check(request.cookies.get(COOKIE))
        if session is None:
            return _refuse(401, "sign in at the console first (or send Authorization: Bearer "
                                "<admin key>); sessions end after a while")
        if write and not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            return _refuse(403, f"the {CSRF_HEADER} header is missing or wrong: send the "
                                "csrf_token of GET admin/api/session with every change")
        request[SESSION] = session
        response = await handler(request)
        renewed = sessions.renewed(session)
        if renewed is not None and not response.prepared and request[SESSION] is session:
            set_session_cookie(request, response, *renewed)
        return _no_store(response)

    return guarded


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        response.headers.update(_API_HEADERS)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse,
                       session: Session | None, token: str) -> None:
    """Set (or, with no session, clear) the session cookie: HttpOnly, SameSite=Strict, on the
    console's path only, Secure when the browser came over https (directly or, per a trusted
    proxy, X-Forwarded-Proto / Forwarded)."""
    prefix = request.app[appkeys.SETTINGS].server.path_prefix
    if session is None:
        max_age = 0
    else:
        now = int(request.app[appkeys.CLOCK]())
        max_age = max(0, session.issued + ABSOLUTE_SECONDS - now)
    attributes = f"; Path={prefix}/admin/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    scheme = request.app[appkeys.PROXIES].scheme(request.remote, request.headers, request.scheme)
    if scheme == "https":
        attributes += "; Secure"
    response.headers.add(hdrs.SET_COOKIE, f"{COOKIE}={token}{attributes}")


async def sign_in(request: web.Request) -> web.StreamResponse:
    """The sign-in form (`key`): a session cookie and back to the page; with a wrong key back
    to the page with `?signin=failed` and no cookie."""
    app = request.app
    if SESSIONS not in app:
        return _refuse(403, TURN_ON)
    base = f"{app[appkeys.SETTINGS].server.path_prefix}/admin/"
    form = await request.post()
    key = form.get("key")
    expected = app[appkeys.SETTINGS].admin_key_sha256
    if not isinstance(key, str) or not hmac.compare_digest(key_sha256(key.strip()), expected):
        log.warning("console: a sign-in with a wrong admin key was refused")
        return web.Response(status=303, headers={hdrs.LOCATION: base + "?signin=failed",
                                                 **_API_HEADERS})
    session, token = app[SESSIONS].start()
    response = web.Response(status=303, headers={hdrs.LOCATION: base, **_API_HEADERS})
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
