"""Who may use the console's API: a signed-in browser (its session cookie, and on every
state-changing request the session's CSRF token in `X-CSRF-Token`, else 403) or a script with
`Authorization: Bearer <admin key>` (no CSRF token: a cross-site page cannot make a browser send
that header). While no admin key is configured the console is off and says how to turn it on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from .. import appkeys
from ..accesskeys import bearer_token
from ..admin import has_admin_key
from .sessions import ABSOLUTE_SECONDS, COOKIE, Session, Sessions

__all__ = [
    "API_HEADERS",
    "CSRF_HEADER",
    "SESSION",
    "SESSIONS",
    "TURN_ON",
    "Handler",
    "console_api",
    "refuse",
    "set_session_cookie",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_HEADER = "X-CSRF-Token"
SESSIONS = web.AppKey("console_sessions", Sessions)  # only while the console is on
SESSION: web.RequestKey[Session | None] = web.RequestKey("console_session")  # a cookie's
API_HEADERS = {hdrs.CACHE_CONTROL: "no-store", "X-Content-Type-Options": "nosniff"}
TURN_ON = ("the console is off: run `tag-gateway keys admin`, put the `admin: key_sha256` line "
           "it prints into config.yaml and restart the gateway")


def refuse(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status, headers=API_HEADERS)


def console_api(handler: Handler, *, write: bool = False) -> Handler:
    """Let a request through with the admin key as a bearer token, or with the cookie of a
    stored session (and, when `write`, its CSRF token); note that the session was seen."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        app = request.app
        if SESSIONS not in app:
            return refuse(403, TURN_ON)
        if bearer_token(request.headers):  # other schemes (a proxy's Basic auth): the cookie
            if not has_admin_key(request):
                return web.json_response({"error": "that is not the admin key"}, status=401,
                                         headers={**API_HEADERS, hdrs.WWW_AUTHENTICATE: "Bearer"})
            return _no_store(await handler(request))
        sessions = app[SESSIONS]
        session = await sessions.check(request.cookies.get(COOKIE))
        if session is None:
            return refuse(401, "sign in at the console first (or send Authorization: Bearer "
                               "<admin key>); sessions end after a while")
        if write and not sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
            return refuse(403, f"the {CSRF_HEADER} header is missing or wrong: send the "
                               "csrf_token of GET admin/api/session with every change")
        request[SESSION] = await sessions.seen(session)
        return _no_store(await handler(request))

    return guarded


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:
        response.headers.update(API_HEADERS)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse,
                       session: Session | None, token: str) -> None:
    """Set (or, with no session, clear) the session cookie until the session's absolute end:
    HttpOnly, SameSite=Strict, on the console's path only, Secure when the browser came over
    https (directly or, per a trusted proxy, X-Forwarded-Proto / Forwarded)."""
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
