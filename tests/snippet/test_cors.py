"""CORS on /tr: listed origins get preflights and credentialed answers, pages on any other site
are refused before anything is stored, and requests that name no site are unaffected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.config import parse_settings
from gateway.ingest.cors import add_cors, normalize_origin
from gateway.settings import Settings

from ..conftest import PIXEL_A, destination_yaml, settings_yaml, stored_rows
from ..fake_graph import FakeGraph

SHOP = "https://www.shop.example"
HIT = {"id": PIXEL_A, "ev": "PageView", "dl": f"{SHOP}/", "eid": "e-1"}
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"}


def make_settings(tmp_path: Path, graph: FakeGraph, server: str) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    graph_url: str = graph.url  # type: ignore[attr-defined]
    return parse_settings(
        settings_yaml(tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A),
                      extra=f"server: {server}\nrules: {{path: {rules}}}\n"),
        env={}, base_dir=tmp_path,
    )


def stored(settings: Settings) -> list[tuple[Any, ...]]:
    return [(row.destination, row.state) for row in stored_rows(settings)]


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    # Listed with an upper-case host and the default port: matched as the browser writes it.
    return make_settings(tmp_path, fake_graph,
                         "{allowed_origins: ['https://WWW.Shop.example:443/']}")


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient[Any, Any]:
    app = create_app(settings)
    add_cors(app, "", settings.server.allowed_origins)
    add_cors(app, "", settings.server.allowed_origins)  # idempotent
    assert len(app.middlewares) == 2  # ours, outermost, then the error middleware
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_preflight_from_a_listed_origin_is_allowed_with_credentials(
    client: TestClient[Any, Any]
) -> None:
    response = await client.options("/tr", headers={
        "Origin": SHOP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert response.headers["Vary"] == "Origin"


async def test_preflight_from_another_origin_gets_no_cors_headers(
    client: TestClient[Any, Any]
) -> None:
    response = await client.options("/tr", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_plain_options_lists_the_methods(client: TestClient[Any, Any]) -> None:
    response = await client.options("/tr")
    assert response.status == 204
    assert response.headers["Allow"] == "GET, POST, OPTIONS"


async def test_hit_from_a_listed_origin_is_stored_and_readable(
    client: TestClient[Any, Any], fake_graph: FakeGraph
) -> None:
    response = await client.post("/tr", data=HIT, headers={"Origin": SHOP, **BROWSER})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers.getall("Vary")
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_id"] == "e-1"


async def test_refusal_of_a_listed_origins_hit_is_readable(client: TestClient[Any, Any]) -> None:
    response = await client.post("/tr", data={"ev": "PageView"}, headers={"Origin": SHOP})
    assert response.status == 400  # the error middleware's answer, inside ours
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "id" in (await response.json())["error"]


async def test_other_methods_refused_for_a_listed_origin_stay_readable(
    client: TestClient[Any, Any]
) -> None:
    response = await client.put("/tr", headers={"Origin": SHOP})
    assert response.status == 405
    assert response.headers["Access-Control-Allow-Origin"] == SHOP


@pytest.mark.parametrize("origin", [
    "https://evil.example",
    "http://www.shop.example",  # another scheme is another origin
    "https://www.shop.example:8443",  # and so is another port
    "https://shop.example",
])
async def test_hit_from_an_unlisted_origin_is_refused_and_not_stored(
    client: TestClient[Any, Any], settings: Settings, origin: str
) -> None:
    response = await client.post("/tr", data=HIT, headers={"Origin": origin, **BROWSER})
    assert response.status == 403
    assert "allowed_origins" in (await response.json())["error"]
    assert "Access-Control-Allow-Origin" not in response.headers
    assert stored(settings) == []


@pytest.mark.parametrize("headers", [
    {},  # image beacons and servers name no origin
    {"Origin": "null"},  # no-referrer pages, sandboxed frames: the header says nothing
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"},  # the browser's word
    {"Origin": "{own}"},  # the gateway's own origin
])
async def test_hits_naming_no_other_site_are_accepted(
    client: TestClient[Any, Any], settings: Settings, headers: dict[str, str]
) -> None:
    own = str(client.make_url("")).rstrip("/")
    headers = {name: value.format(own=own) for name, value in headers.items()}
    response = await client.post("/tr", data=HIT, headers={**headers, **BROWSER})
    assert response.status == 204
    assert "Access-Control-Allow-Origin" not in response.headers
    assert len(stored(settings)) == 1


async def test_own_host_on_another_port_is_another_origin(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    other_port = (client.port or 0) + 1
    response = await client.post("/tr", data=HIT, headers={
        "Origin": f"http://127.0.0.1:{other_port}", **BROWSER})
    assert response.status == 403
    assert stored(settings) == []


async def test_image_get_without_origin_is_unaffected(client: TestClient[Any, Any]) -> None:
    response = await client.get("/tr", params=HIT, headers=BROWSER)
    assert response.status == 200
    assert response.content_type == "image/gif"


async def test_other_routes_are_untouched(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert response.status == 200
    assert "Vary" not in response.headers


async def test_behind_a_trusted_proxy_the_forwarded_host_is_the_own_origin(
    aiohttp_client: Any, tmp_path: Path, fake_graph: FakeGraph
) -> None:
    settings = make_settings(tmp_path, fake_graph, "{trusted_proxies: [loopback]}")
    app = create_app(settings)
    add_cors(app, "", settings.server.allowed_origins)
    client = await aiohttp_client(app)
    forwarded = {"X-Forwarded-Host": "www.shop.example", "X-Forwarded-Proto": "https", **BROWSER}
    own = await client.post("/tr", data=HIT, headers={"Origin": SHOP, **forwarded})
    assert own.status == 204
    other = await client.post("/tr", data=HIT, headers={"Origin": "https://evil.example",
                                                        **forwarded})
    assert other.status == 403


@pytest.mark.parametrize(("given", "expected"), [
    ("https://www.example.com", "https://www.example.com"),
    ("HTTPS://WWW.Example.COM:443/", "https://www.example.com"),
    ("http://example.com:80", "http://example.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("https://example.com/path", None),
    ("ftp://example.com", None),
    ("null", None),
    ("", None),
])
def test_normalize_origin(given: str, expected: str | None) -> None:
    assert normalize_origin(given) == expected
