"""`GET {prefix}/demo`: a page served by the gateway itself that fires events through gw.js.

A first try needs no page of one's own, no CORS and no pixel knowledge: the page is on the
gateway's origin, uses the same base code `serve` prints, and its buttons send PageView,
AddToCart and Purchase. `GET {prefix}/demo/landed?eid=demo-...` then says what the outbox did
with that event (its row states), so a hit that a rule dropped (a headless browser) shows as
"not stored" instead of vanishing. It answers only for the demo's own event ids (`demo-` and
32 random hex digits), never about other traffic, and gives states and validation reasons,
never the event. `{prefix}/` redirects to the page.

On by `server.demo`, by default only while the gateway listens on loopback; off, both paths
are 404 (never registered).
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import hdrs, web

from .. import appkeys
from ..settings import Settings
from .basecode import base_code, known_pixel

__all__ = ["DEMO_EVENT_ID", "DEMO_FILE", "DEMO_PIXEL", "add_demo_routes"]

DEMO_FILE = Path(__file__).resolve().parent.parent / "static" / "demo.html"
DEMO_EVENT_ID = re.compile(r"demo-[0-9a-f]{32}")
# The pixel id of the demo's events when no destination names one (every pixel is accepted).
DEMO_PIXEL = "1234567890"
# Enough to find an event the page sent seconds ago on a gateway someone is trying out.
_NEWEST_ROWS = 500
_HEADERS = {
    hdrs.CACHE_CONTROL: "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                               "style-src 'unsafe-inline'; frame-ancestors 'none'",
}


def add_demo_routes(app: web.Application, settings: Settings) -> None:
    """Register the demo page and its status answer when `server.demo` is on."""
    server = settings.server
    if not server.serves_demo:
        return
    prefix = server.path_prefix
    html = _page(settings, landed=f"{prefix}/demo/landed")

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html", headers=_HEADERS)

    async def home(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{prefix}/demo")

    app.router.add_get(f"{prefix}/demo", page)
    app.router.add_get(f"{prefix}/demo/landed", landed)
    app.router.add_get(f"{prefix}/", home)


def _page(settings: Settings, *, landed: str) -> str:
    server = settings.server
    pixel = known_pixel(settings)
    code = base_code(f"{server.path_prefix}/{server.script_name}", pixel or DEMO_PIXEL)
    text = DEMO_FILE.read_text(encoding="utf-8")
    return text.replace("{base_code}", code).replace("{landed}", landed)


async def landed(request: web.Request) -> web.Response:
    """`{"states": [...], "reasons": [...]}` of the rows stored for one demo event id."""
    event_id = request.query.get("eid", "")
    if not DEMO_EVENT_ID.fullmatch(event_id):
        return web.json_response(
            {"error": "eid must be a demo event id: demo- and 32 hex digits"}, status=400,
            headers=_HEADERS)
    rows = await request.app[appkeys.OUTBOX].rows(limit=_NEWEST_ROWS, newest_first=True)
    mine = [row for row in rows if row.event_id == event_id]
    reasons = sorted({row.last_error for row in mine if row.state == "invalid" and row.last_error})
    return web.json_response({"states": sorted({row.state for row in mine}), "reasons": reasons},
                             headers=_HEADERS)
