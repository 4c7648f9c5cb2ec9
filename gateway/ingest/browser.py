"""`GET|POST /tr`: browser hits in the Meta pixel's parameter format.

GET answers a 1x1 GIF (image beacons), POST answers 204 (sendBeacon, fetch, forms); both only
after the event is committed to the outbox. A bad hit gets a 4xx naming the parameter.
"""

from __future__ import annotations

import base64

from aiohttp import hdrs, web

from .. import keys
from ..errors import HitError
from .hitevent import build_hit_event
from .hitparams import read_hit_params

__all__ = ["handle_hit"]

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {hdrs.CACHE_CONTROL: "no-store, no-cache, must-revalidate, max-age=0"}


def clean_text(value: str | None) -> str | None:
    """Header and cookie text as valid UTF-8 (undecodable bytes become U+FFFD)."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


async def handle_hit(request: web.Request) -> web.StreamResponse:
    app = request.app
    metrics = app[keys.METRICS]
    try:
        params = await read_hit_params(request)
        event = build_hit_event(
            params,
            ip=request.remote,
            user_agent=clean_text(request.headers.get(hdrs.USER_AGENT)),
            cookies={name: clean_text(value) or "" for name, value in request.cookies.items()},
            now=app[keys.CLOCK](),
        )
    except HitError:
        metrics.inc("gateway_hits_total", result="rejected")
        raise
    await app[keys.PIPELINE].submit(event)
    metrics.inc("gateway_hits_total", result="accepted")
    if request.method == "GET":
        return web.Response(body=PIXEL_GIF, content_type="image/gif", headers=NO_STORE)
    return web.Response(status=204, headers=NO_STORE)
