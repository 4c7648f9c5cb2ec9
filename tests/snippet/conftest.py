"""Fixtures for the snippet: one Chromium per module, and a site whose pages use the gateway.

The site is a gateway (prefix `/gw`, so the script is `/gw/gw.js` and hits go to `/gw/tr`)
that also serves the shop's pages at `/shop/{name}` (same origin, the recommended set-up), plus
two sibling origins on other ports serving the same pages: one listed in
`server.allowed_origins`, one not.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.ingest.cors import add_cors
from gateway.ingest.snippet import add_snippet_routes
from gateway.settings import Settings

from ..conftest import PIXEL_A, PIXEL_B, destination_yaml, settings_yaml
from ..fake_graph import FakeGraph
from .browser import BrowserThread

PREFIX = "/gw"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "snippet.md"
_BASE_CODE = re.compile(
    r"<!-- tag-gateway base code -->\n(.*?)<!-- End tag-gateway base code -->\n", re.S
)


def base_code() -> str:
    """The base code exactly as docs/snippet.md tells site owners to paste it."""
    match = _BASE_CODE.search(DOCS.read_text(encoding="utf-8"))
    assert match is not None, "docs/snippet.md lost its base code block"
    return match.group(1)


def page_html(script_url: str, *, before: str = "", after: str = "", body: str = "",
              pixel: str = PIXEL_A, init_extra: str = "") -> str:
    """A shop page with the documented base code; `before` runs ahead of its init line.

    `init_extra` adds arguments to the base code's init call (user data, options).
    """
    code = base_code().replace("'/gw.js'", f"'{script_url}'")
    code = code.replace("'YOUR_PIXEL_ID'", f"'{pixel}'{init_extra}")
    init = code.index("fbq('init'")
    code = code[:init] + before + code[init:]
    end = code.index("</script>")
    code = code[:end] + after + code[end:]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Shop</title>\n"
        f"{code}</head><body style='font-family:sans-serif'>{body}</body></html>"
    )


def pages_app(pages: dict[str, str], app: web.Application | None = None) -> web.Application:
    """Serve `pages[name]` at /shop/{name} (on the gateway's app, or a bare one)."""

    async def page(request: web.Request) -> web.Response:
        html = pages.get(request.match_info["name"])
        if html is None:
            raise web.HTTPNotFound()
        return web.Response(text=html, content_type="text/html")

    app = app if app is not None else web.Application()
    app.router.add_get("/shop/{name}", page)
    return app


@dataclass
class Site:
    gateway: TestServer
    listed: TestServer
    unlisted: TestServer
    settings: Settings
    graph: FakeGraph
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return str(self.gateway.make_url("")).rstrip("/")

    @property
    def script_url(self) -> str:
        return f"{self.origin}{PREFIX}/gw.js"

    def page(self, name: str, html: str, server: TestServer | None = None) -> str:
        """Publish a page; its URL on `server` (default: the gateway's own origin)."""
        self.pages[name] = html
        return str((server or self.gateway).make_url(f"/shop/{name}"))


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    browser = BrowserThread()
    browser.start()
    yield browser
    browser.stop()


@pytest.fixture
async def context(chromium: BrowserThread) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile for one test."""
    ctx = await chromium.run(chromium.new_context())
    yield ctx
    await chromium.run(ctx.close())


@pytest.fixture
async def site(tmp_path: Path, fake_graph: FakeGraph, aiohttp_server: Any) -> Site:
    pages: dict[str, str] = {}
    listed = await aiohttp_server(pages_app(pages))
    unlisted = await aiohttp_server(pages_app(pages))
    listed_origin = str(listed.make_url("")).rstrip("/")
    rules = tmp_path / "rules"  # no rules: the example rules must not drop loopback tests
    rules.mkdir()
    graph_url: str = fake_graph.url  # type: ignore[attr-defined]
    settings = parse_settings(
        settings_yaml(
            tmp_path,
            destination_yaml("main", graph_url, pixel_id=PIXEL_A),
            destination_yaml("second", graph_url, pixel_id=PIXEL_B),
            extra=(f"server: {{path_prefix: {PREFIX}, allowed_origins: [{listed_origin}]}}\n"
                   f"rules: {{path: {rules}}}\n"),
        ),
        env={}, base_dir=tmp_path,
    )
    app = create_app(settings)
    add_snippet_routes(app, PREFIX)
    add_cors(app, PREFIX, settings.server.allowed_origins)
    pages_app(pages, app)
    gateway = await aiohttp_server(app)
    return Site(gateway=gateway, listed=listed, unlisted=unlisted, settings=settings,
                graph=fake_graph, pages=pages)
