"""Requests aiohttp cannot parse: answered JSON without the request's bytes, logged as one
WARNING line without them (no tracebacks)."""

from __future__ import annotations

import asyncio
import gzip
import logging

import orjson
import pytest

from gateway.settings import Settings

from ..conftest import PIXEL_A, GatewayFactory, outbox_rows

EMAIL = b"who@example.com"
LONG = b"x" * 9000
CASES = [
    # a request line over aiohttp's 8 KB limit, quoting an email
    (b"GET /tr?id=1&ud%5Bem%5D=" + EMAIL + b"&x=" + LONG + b" HTTP/1.1\r\nHost: x\r\n\r\n",
     "too long"),
    (b"GET /tr HTTP/1.1\r\nHost: x\r\nX-Note: " + EMAIL * 700 + b"\r\n\r\n", "too long"),
    (b"GARBAGE /" + EMAIL + b"\r\n\r\n", "not an HTTP request"),
    (b"GET /tr HTTP/1.1\r\nHost: x\r\nNo colon " + EMAIL + b"\r\n\r\n", "malformed"),
    (b"POST /tr HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz" + EMAIL + b"\r\n",
     "malformed"),
]


async def exchange(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize(("request_bytes", "reason"), CASES)
async def test_unparsable_requests_get_json_without_their_bytes(
    request_bytes: bytes, reason: str, start_gateway: GatewayFactory,
    one_destination: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_gateway(one_destination)
    status, body = await exchange(client.host, client.port, request_bytes)
    assert status == 400
    answer = orjson.loads(body)
    assert list(answer) == ["error"] and reason in answer["error"]
    assert EMAIL not in body
    assert EMAIL.decode() not in caplog.text
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    # Not HTTP at all on a first request (TLS, scanners) is internet noise: DEBUG.
    level = "DEBUG" if reason == "not an HTTP request" else "WARNING"
    assert len(lines) == 1 and lines[0].levelname == level
    assert "Traceback" not in caplog.text and lines[0].exc_info is None
    assert outbox_rows(one_destination) == []


async def test_a_body_that_is_not_gzip_is_one_warning_line_without_a_traceback(
    start_gateway: GatewayFactory, one_destination: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_gateway(one_destination)
    for path in ("/tr", f"/capi/{PIXEL_A}/events"):
        response = await client.post(path, data=b"ud[em]=" + EMAIL, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip"})
        assert response.status in (400, 401), path
        assert EMAIL.decode() not in await response.text()
    good = gzip.compress(b"id=" + PIXEL_A.encode() + b"&ev=Lead&dl=https://shop.example.com/")
    response = await client.post("/tr", data=good, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": "gzip",
        "User-Agent": "Mozilla/5.0"})
    assert response.status == 204
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert all(r.levelno <= logging.WARNING for r in caplog.records)
    assert EMAIL.decode() not in caplog.text


async def test_unknown_routes_and_methods_are_answered_json(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get("/nowhere?ud[em]=who@example.com")
    assert response.status == 404 and await response.json() == {"error": "not found"}
    response = await client.delete("/tr")
    assert response.status == 405 and await response.json() == {"error": "method not allowed"}
    assert "GET" in response.headers["Allow"]
