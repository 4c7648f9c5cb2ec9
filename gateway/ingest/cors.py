"""CORS for `/tr`: pages on sibling hosts listed in `server.allowed_origins` may send hits.

Cross-subdomain setups put the snippet on `https://www.example.com` and the gateway on
`https://gw.example.com`. For those origins only (exact scheme, host and port), `/tr` answers
preflights and adds `Access-Control-Allow-Origin: <origin>` and
`Access-Control-Allow-Credentials: true`, so `fetch(..., {credentials: "include"})` works and
the first-party cookies travel.

A hit whose `Origin` names a page that is neither the gateway's own host nor listed is refused
with 403 and nothing is stored: another site that copied the snippet cannot write into this
gateway's events. Browsers send `Origin` on every POST, so beacons are covered. Hits without
`Origin` (image beacons, `<noscript>` pixels, servers) and with `Origin: null` (pages under
`Referrer-Policy: no-referrer`, sandboxed frames) are let through: the header says nothing there.

"Own host" is decided by the browser's `Sec-Fetch-Site: same-origin` when present, else by
comparing the `Origin` host with the host the visitor asked for (believing forwarding headers
only from `server.trusted_proxies`) and, when the request names a port, the port too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from .. import appkeys

__all__ = ["add_cors", "cors_middleware", "normalize_origin"]

PREFLIGHT_MAX_AGE = "7200"  # Chromium's cap, in seconds
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ADDED = web.AppKey("cors_added", bool)


@lru_cache(maxsize=1024)  # browsers send Origin on every beacon; a site has a handful
def normalize_origin(origin: str) -> str | None:
    """`HTTPS://WWW.Example.com:443/` -> `https://www.example.com`; None if not an origin."""
    try:
        url = URL(origin.strip())
    except ValueError:
        return None
    if url.scheme not in _DEFAULT_PORTS or not url.host or url.path not in ("", "/"):
        return None
    port = url.explicit_port
    suffix = "" if port is None or port == _DEFAULT_PORTS[url.scheme] else f":{port}"
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host.lower()}{suffix}"


@lru_cache(maxsize=8)
def _allowlist(allowed_origins: tuple[str, ...]) -> frozenset[str]:
    return frozenset(o for o in map(normalize_origin, allowed_origins) if o is not None)


def cors_middleware(tr_path: str, allowed_origins: Callable[[], tuple[str, ...]]
                    ) -> Middleware:
    """An aiohttp middleware applying the allowlist to requests for `tr_path` only;
    `allowed_origins` gives the list in force (a config reload changes it)."""

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != tr_path:
            return await handler(request)
        origin = request.headers.get(hdrs.ORIGIN)
        listed = origin is not None and normalize_origin(origin) in _allowlist(allowed_origins())
        if request.method == hdrs.METH_OPTIONS:
            return _preflight(origin, listed)
        if origin and not listed and origin != "null" and not _same_origin(request, origin):
            metrics = request.app[appkeys.METRICS]
            metrics.count(metrics.hits, "rejected")
            return web.json_response(
                {"error": "this gateway does not take hits from pages on that origin; list it "
                          "in server.allowed_origins"},
                status=403, headers={hdrs.VARY: "Origin"},
            )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _allow(exc, origin if listed else None)
            raise
        _allow(response, origin if listed else None)
        return response

    return cors


def add_cors(app: web.Application, prefix: str,
             allowed_origins: Iterable[str] | None = None) -> None:
    """Install `cors_middleware` for `{prefix}/tr` as the outermost middleware (once), with the
    live settings' `server.allowed_origins` (or a fixed list, for an app without them).

    Outermost, so refusals turned into JSON by the inner error middleware carry the CORS
    headers too and a listed page can read why its hit was refused. Call before the app starts.
    """
    if app.get(_ADDED):
        return
    if allowed_origins is None:
        live = app[appkeys.LIVE]

        def in_force() -> tuple[str, ...]:
            return live.current.settings.server.allowed_origins
    else:
        fixed = tuple(allowed_origins)

        def in_force() -> tuple[str, ...]:
            return fixed
    app.middlewares.insert(0, cors_middleware(f"{prefix}/tr", in_force))
    app[_ADDED] = True


def _allow(response: web.StreamResponse, origin: str | None) -> None:
    response.headers.add(hdrs.VARY, "Origin")
    if origin is not None:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"


def _preflight(origin: str | None, listed: bool) -> web.Response:
    if origin is None:  # not a CORS preflight: a plain OPTIONS
        return web.Response(status=204, headers={hdrs.ALLOW: "GET, POST, OPTIONS"})
    if not listed:
        return web.json_response(
            {"error": "origin not allowed; list it in server.allowed_origins"},
            status=403, headers={hdrs.VARY: "Origin"},
        )
    response = web.Response(status=204, headers={
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: "GET, POST",
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: "Content-Type",
        hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE,
    })
    _allow(response, origin)
    return response


def _same_origin(request: web.Request, origin: str) -> bool:
    """Whether the page that sent this request is on the gateway's own host."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    try:
        page = URL(origin)
    except ValueError:
        return False
    if not page.host:
        return False
    proxies, peer, headers = request.app[appkeys.PROXIES], request.remote, request.headers
    own_host = proxies.host(peer, headers, request.host)
    if page.host.lower() != own_host:
        return False
    if proxies.trusts(peer):
        return True  # the edge's port is not ours to know; the host decides
    try:
        own_port = URL(f"http://{request.host}").explicit_port
    except ValueError:
        return False
    # No port in Host: whatever proxy stood in front used its scheme's default port.
    return own_port is None or page.port == own_port
