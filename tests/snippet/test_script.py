"""Serving gw.js: bytes read once, CDN-friendly caching, ETag revalidation, gzip, the size
budget, and a committed minified file that matches its source."""

from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.ingest import snippet
from gateway.ingest.snippet import SNIPPET_FILE, Script, add_snippet_routes, load_script
from gateway.settings import Settings

SOURCE = SNIPPET_FILE.with_name("gw.js")
BUDGET_GZIPPED = 3 * 1024


def test_minified_script_fits_the_size_budget() -> None:
    gzipped = len(gzip.compress(SNIPPET_FILE.read_bytes(), 9))
    assert gzipped <= BUDGET_GZIPPED, f"gw.min.js is {gzipped} bytes gzipped"


def test_minified_script_was_built_from_the_current_source() -> None:
    first_line = SNIPPET_FILE.read_text(encoding="utf-8").partition("\n")[0]
    match = re.search(r"source-sha256:([0-9a-f]{64})", first_line)
    assert match is not None, "gw.min.js has no source hash: build it with `npm run build`"
    assert match.group(1) == hashlib.sha256(SOURCE.read_bytes()).hexdigest(), (
        "gateway/static/gw.js changed since gw.min.js was built: "
        "cd snippet && npm ci && npm run build"
    )


@pytest.fixture
async def client(aiohttp_client: Any, one_destination: Settings) -> TestClient[Any, Any]:
    settings = replace(one_destination,
                       server=replace(one_destination.server, path_prefix="/gw"))
    app = create_app(settings)  # registers the script under the prefix
    add_snippet_routes(app, "/gw")  # a second call is a no-op
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_script_is_served_with_cdn_friendly_headers(client: TestClient[Any, Any]) -> None:
    response = await client.get("/gw/gw.js", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == (
        "public, max-age=300, stale-while-revalidate=86400")
    assert "Content-Encoding" not in response.headers
    assert await response.read() == SNIPPET_FILE.read_bytes()
    etag = response.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)  # strong, from the file's hash
    assert etag == f'"{hashlib.sha256(SNIPPET_FILE.read_bytes()).hexdigest()[:32]}"'
    assert "Accept-Encoding" in response.headers["Vary"]


async def test_script_is_gzipped_for_clients_that_accept_it(
    client: TestClient[Any, Any]
) -> None:
    response = await client.get("/gw/gw.js", headers={"Accept-Encoding": "br, gzip"},
                                auto_decompress=False)
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == SNIPPET_FILE.read_bytes()
    plain = await client.get("/gw/gw.js", headers={"Accept-Encoding": "identity"})
    assert response.headers["ETag"] != plain.headers["ETag"]  # one per representation
    refused = await client.get("/gw/gw.js", headers={"Accept-Encoding": "gzip;q=0"},
                               auto_decompress=False)
    assert "Content-Encoding" not in refused.headers


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"old", {etag}', "*"])
async def test_matching_etag_gets_304(client: TestClient[Any, Any], if_none_match: str) -> None:
    etag = (await client.get("/gw/gw.js")).headers["ETag"]
    response = await client.get(
        "/gw/gw.js", headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert response.status == 304
    assert await response.read() == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"].startswith("public, max-age=300")


async def test_stale_etag_gets_the_script(client: TestClient[Any, Any]) -> None:
    response = await client.get("/gw/gw.js", headers={"If-None-Match": '"0123456789abcdef"'})
    assert response.status == 200
    assert len(await response.read()) > 1000


async def test_head_answers_headers_only(client: TestClient[Any, Any]) -> None:
    response = await client.head("/gw/gw.js")
    assert response.status == 200
    assert response.headers["ETag"]
    assert await response.read() == b""


async def test_script_is_read_once_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aiohttp_client: Any,
    one_destination: Settings,
) -> None:
    script_file = tmp_path / "gw.min.js"
    script_file.write_bytes(b"/* release 1 */")
    monkeypatch.setattr(snippet, "load_script", lambda: load_script(script_file))
    # server.script_name: a configurable name, away from blockers' lists
    settings = replace(one_destination,
                       server=replace(one_destination.server, script_name="a.js"))
    client = await aiohttp_client(create_app(settings))
    script_file.write_bytes(b"/* release 2 */")  # not seen until the next start
    response = await client.get("/a.js")
    assert await response.read() == b"/* release 1 */"


def test_script_etag_follows_the_content() -> None:
    one, two = Script.from_bytes(b"a"), Script.from_bytes(b"b")
    assert one.etag != two.etag
    assert Script.from_bytes(b"a") == one  # the same file always gets the same ETag
