"""Browser hits on /tr: accepted hits reach the fake Graph as correct CAPI events; bad hits get
a 4xx with a reason and leave nothing behind."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import FormData
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.settings import Settings

from ..conftest import PIXEL_A, GatewayFactory, stored_rows
from ..fake_graph import FakeGraph

GIF_MAGIC = b"GIF89a"


def outbox_rows(settings: Settings) -> list[tuple[Any, ...]]:
    return [(row.destination, row.state, row.payload) for row in stored_rows(settings)]


async def test_get_hit_arrives_upstream_as_capi_event(
    start_gateway: GatewayFactory, one_destination: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_gateway(one_destination)
    before = int(time.time())
    response = await client.get(
        "/tr",
        params={
            "id": PIXEL_A, "ev": "Purchase", "eid": "order-42",
            "dl": "https://shop.example.com/checkout?step=3", "rl": "https://www.google.com/",
            "cd[value]": "12.50", "cd[currency]": "EUR", "cd[content_ids]": '["sku-1","sku-2"]',
            "cd[contents]": '[{"id":"sku-1","quantity":2}]', "cd[num_items]": "2",
            "fbp": "fb.1.1700000000000.123456789", "ts": "1700000000123", "sw": "1280",
        },
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Test/1.0",
                 "Cookie": "_fbc=fb.1.1700000000000.IwAR-click"},
    )
    assert response.status == 200
    assert response.content_type == "image/gif"
    assert (await response.read()).startswith(GIF_MAGIC)
    assert "no-store" in response.headers["Cache-Control"]

    [event] = await fake_graph.wait_for_events(1)
    [request] = fake_graph.accepted
    assert request.pixel_id == PIXEL_A
    assert request.api_version == "v26.0"
    assert request.query == {"access_token": "TEST-TOKEN-main"}
    assert before <= event.pop("event_time") <= int(time.time())
    assert event == {
        "event_name": "Purchase",
        "event_id": "order-42",
        "action_source": "website",
        "event_source_url": "https://shop.example.com/checkout?step=3",
        "referrer_url": "https://www.google.com/",
        "user_data": {
            "client_ip_address": "127.0.0.1",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Test/1.0",
            "fbp": "fb.1.1700000000000.123456789",
            "fbc": "fb.1.1700000000000.IwAR-click",
        },
        "custom_data": {
            "value": 12.5, "currency": "EUR", "content_ids": ["sku-1", "sku-2"],
            "contents": [{"id": "sku-1", "quantity": 2}], "num_items": 2,
        },
    }


@pytest.mark.parametrize("encoding", ["text/plain", "form", "multipart"])
async def test_post_hit_bodies_are_accepted(
    encoding: str, start_gateway: GatewayFactory, one_destination: Settings,
    fake_graph: FakeGraph,
) -> None:
    client = await start_gateway(one_destination)
    fields = {"id": PIXEL_A, "ev": "Lead", "dl": "https://shop.example.com/", "cd[note]": "é ü"}
    if encoding == "text/plain":
        body = "&".join(f"{k}={v}" for k, v in fields.items()).replace("[", "%5B").replace(
            "]", "%5D").replace(" ", "+").encode()
        response = await client.post("/tr", data=body, headers={"Content-Type": "text/plain"})
    elif encoding == "form":
        response = await client.post("/tr", data=fields)
    else:
        form = FormData(fields, default_to_multipart=True)
        response = await client.post("/tr", data=form)
    assert response.status == 204
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_name"] == "Lead"
    assert event["custom_data"] == {"note": "é ü"}
    assert len(event["event_id"]) == 32  # generated when the hit carries no eid


async def test_body_parameters_win_over_query(
    start_gateway: GatewayFactory, one_destination: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_gateway(one_destination)
    response = await client.post(
        f"/tr?id={PIXEL_A}&ev=PageView&dl=https://a.example/", data={"ev": "ViewContent"}
    )
    assert response.status == 204
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_name"] == "ViewContent"


async def test_ack_only_after_commit(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    # A 2xx promises the row is on disk: read the file from another connection right away.
    one_destination = _dry_run(one_destination)
    client = await start_gateway(one_destination)
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", "eid": "e1", "dl": "https://a.example/"})
    assert response.status == 200
    [(destination, _state, payload)] = outbox_rows(one_destination)
    assert destination == "main"
    assert orjson.loads(payload)["event_id"] == "e1"


def _dry_run(settings: Settings) -> Settings:
    from dataclasses import replace

    return replace(settings, destinations=tuple(
        replace(d, options=replace(d.options, access_token="")) for d in settings.destinations
    ))


BAD_HITS = [
    ({"ev": "PageView"}, 400, "missing parameter 'id'"),
    ({"id": PIXEL_A}, 400, "missing parameter 'ev'"),
    ({"id": PIXEL_A, "ev": "   "}, 400, "missing parameter 'ev'"),
    ({"id": "not-a-pixel", "ev": "PageView"}, 400, "'id' must be a numeric pixel id"),
    ({"id": PIXEL_A, "ev": "x" * 101}, 400, "'ev' must be at most 100"),
    ({"id": PIXEL_A, "ev": "Bad\nName"}, 400, "'ev' must be at most 100 printable"),
    ({"id": PIXEL_A, "ev": "Purchase", "cd[value]": "abc"}, 400, "'cd[value]' must be a number"),
    ({"id": PIXEL_A, "ev": "Purchase", "cd[value]": "nan"}, 400, "finite number"),
    ({"id": PIXEL_A, "ev": "Purchase", "cd[num_items]": "1.5"}, 400, "whole number"),
    ({"id": PIXEL_A, "ev": "Purchase", "cd[contents]": "[{broken"}, 400, "does not parse"),
    ({"id": PIXEL_A, "ev": "Purchase", "cd[contents]": "sku"}, 400, "JSON array of objects"),
    ({"id": PIXEL_A, "ev": "PageView", "dpo": "XYZ"}, 400, "'dpo' may only be empty or LDU"),
    ({"id": PIXEL_A, "ev": "PageView", "dpo": "LDU", "dpoco": "us"}, 400, "'dpoco' must be"),
    ({"id": PIXEL_A, "ev": "PageView", "eid": "e" * 300}, 400, "'eid' must be at most 256"),
    ({"id": PIXEL_A, "ev": "PageView", "a": "a" * 129}, 400, "'a' (agent) must be at most 128"),
]


@pytest.mark.parametrize(("params", "status", "reason"), BAD_HITS)
async def test_bad_hits_get_a_reason_and_store_nothing(
    params: dict[str, str], status: int, reason: str, start_gateway: GatewayFactory,
    one_destination: Settings,
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get("/tr", params=params)
    assert response.status == status
    assert reason in (await response.json())["error"]
    assert outbox_rows(one_destination) == []


async def test_invalid_utf8_is_refused(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get(f"/tr?id={PIXEL_A}&ev=Page%FFView")
    assert response.status == 400
    assert "not valid UTF-8" in (await response.json())["error"]
    response = await client.post(
        "/tr", data=b"id=" + PIXEL_A.encode() + b"&ev=\xff\xfe",
        headers={"Content-Type": "text/plain"},
    )
    assert response.status == 400
    assert "not valid UTF-8" in (await response.json())["error"]
    assert outbox_rows(one_destination) == []


async def test_oversized_body_gets_413(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    body = f"id={PIXEL_A}&ev=PageView&cd[blob]=" + "x" * 70000
    response = await client.post("/tr", data=body, headers={"Content-Type": "text/plain"})
    assert response.status == 413
    assert "larger than 65536 bytes" in (await response.json())["error"]
    multipart = FormData({"id": PIXEL_A, "ev": "PageView", "cd[blob]": "x" * 70000},
                         default_to_multipart=True)
    response = await client.post("/tr", data=multipart)
    assert response.status == 413
    assert outbox_rows(one_destination) == []


async def test_unsupported_content_type_gets_415(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    response = await client.post(
        "/tr", data=b'{"id": 1}', headers={"Content-Type": "application/json"}
    )
    assert response.status == 415
    assert "unsupported Content-Type" in (await response.json())["error"]


async def test_too_many_parameters_is_refused(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    body = f"id={PIXEL_A}&ev=PageView&" + "&".join(f"cd[k{i}]=v" for i in range(300))
    response = await client.post("/tr", data=body, headers={"Content-Type": "text/plain"})
    assert response.status == 400
    assert "more than 200 parameters" in (await response.json())["error"]


async def test_undecodable_user_agent_bytes_are_replaced_not_fatal(
    tmp_path: Path, start_gateway: GatewayFactory, one_destination: Settings,
    fake_graph: FakeGraph,
) -> None:
    import asyncio

    client = await start_gateway(one_destination)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"GET /tr?id={PIXEL_A}&ev=PageView&dl=https://a.example/ HTTP/1.1\r\nHost: x\r\n".encode()
        + b"User-Agent: Bot\xff\xfe/1\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert b" 200 " in status_line
    [event] = await fake_graph.wait_for_events(1)
    assert event["user_data"]["client_user_agent"].startswith("Bot")


async def test_unknown_user_data_keys_are_left_out(
    start_gateway: GatewayFactory, one_destination: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "PageView", "ud[zz]": "1", "ud[external_id]": "u7",
                       "ud[em]": "  ", "dl": "https://a.example/"},
    )
    assert response.status == 200
    [event] = await fake_graph.wait_for_events(1)
    assert event["user_data"]["external_id"] == hashlib.sha256(b"u7").hexdigest()
    assert "zz" not in event["user_data"]
    assert "em" not in event["user_data"]


async def test_data_processing_options_are_mapped(
    start_gateway: GatewayFactory, one_destination: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "PageView", "dpo": "LDU", "dpoco": "1",
                       "dpost": "1000", "dl": "https://a.example/"},
    )
    assert response.status == 200
    [event] = await fake_graph.wait_for_events(1)
    assert event["data_processing_options"] == ["LDU"]
    assert event["data_processing_options_country"] == 1
    assert event["data_processing_options_state"] == 1000


@pytest.mark.parametrize("params", [
    {"cd[num_items]": "1e300"},
    {"dpo": "LDU", "dpoco": "99999999999999999999999"},
])
async def test_numbers_beyond_json_range_are_refused(
    params: dict[str, str], start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Purchase",
                                               "dl": "https://a.example/", **params})
    assert response.status == 400, await response.text()
    assert outbox_rows(one_destination) == []


def multipart(part_headers: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "XyZ"
    raw = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\n{PIXEL_A}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"ev\"\r\n{part_headers}\r\n\r\n"
    ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return raw, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize(("part_headers", "body"), [
    ("Content-Type: text/plain; charset=foo", b"PageView"),
    ("Content-Transfer-Encoding: x-foo", b"PageView"),
    ("Content-Type: text/plain; charset=utf-7", b"A+2D8-"),  # decodes to a lone surrogate
])
async def test_unreadable_multipart_parts_are_refused(
    part_headers: str, body: bytes, start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    data, headers = multipart(part_headers, body)
    response = await client.post("/tr", data=data, headers=headers)
    assert response.status == 400, await response.text()
    assert "multipart" in (await response.json())["error"]


async def test_body_with_broken_content_encoding_is_refused(
    start_gateway: GatewayFactory, one_destination: Settings
) -> None:
    client = await start_gateway(one_destination)
    response = await client.post(
        "/tr", data=b"this is not gzip",
        headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
    )
    assert response.status == 400
    assert "cannot be read" in (await response.json())["error"]


async def test_malformed_request_lines_are_logged_without_their_contents(
    start_gateway: GatewayFactory, one_destination: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    client = await start_gateway(one_destination)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /tr?id=1&ud%5Bem%5D=who@example.com&x=\x01bad HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert b" 400 " in status_line
    assert "who@example.com" not in caplog.text


async def test_noscript_image_hits_take_the_page_url_from_the_referer(
    start_gateway: GatewayFactory, one_destination: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_gateway(one_destination)
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "PageView", "noscript": "1"},
        headers={"Referer": "https://shop.example.com/no-js-page"},
    )
    assert response.status == 200
    [event] = await fake_graph.wait_for_events(1)
    assert event["event_source_url"] == "https://shop.example.com/no-js-page"


async def test_a_malformed_multipart_part_header_is_a_400_that_logs_no_request_bytes(
    start_gateway: GatewayFactory, one_destination: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    client = await start_gateway(one_destination)
    body = b"--B\r\nud[em]=a@b.c\r\n\r\nx\r\n--B--\r\n"  # a part header that is no header
    for path in ("/tr", f"/v26.0/{PIXEL_A}/events"):
        response = await client.post(path, data=body, headers={
            "Content-Type": "multipart/form-data; boundary=B"})
        assert response.status == 400, path
        answer = await response.text()
        assert "multipart body cannot be read" in answer and "a@b.c" not in answer
    assert "a@b.c" not in caplog.text
    assert outbox_rows(one_destination) == []


async def test_an_internal_error_is_logged_without_what_the_sender_sent(
    start_gateway: GatewayFactory, one_destination: Settings, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway.pipeline import Pipeline

    def broken(self: Pipeline, event: Any) -> list[str]:
        raise ValueError(f"cannot handle {event.data['user_data']}")  # a bug echoing input

    monkeypatch.setattr(Pipeline, "prepare", broken)
    client = await start_gateway(one_destination)
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "ud[em]": "a@b.c"},
                                headers={"User-Agent": "Mozilla/5.0"})
    assert response.status == 500 and await response.json() == {"error": "internal error"}
    assert "internal error handling GET /tr: ValueError" in caplog.text
    assert "in broken" in caplog.text  # where it happened is kept
    assert "a@b.c" not in caplog.text and "ud%5Bem%5D" not in caplog.text


async def test_a_host_header_that_is_no_host_name_never_reaches_set_cookie(
    start_gateway: GatewayFactory, one_destination: Settings,
) -> None:
    client = await start_gateway(one_destination)
    for host in ("evil.com; path=/x", "example.com;secure;httponly"):
        response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView",
                                                   "dl": "https://shop.example.com/"},
                                    headers={"User-Agent": "Mozilla/5.0", "Host": host})
        assert response.status == 200
        [cookie] = response.headers.getall("Set-Cookie")
        assert "Domain" not in cookie and "path=/x" not in cookie and "secure" not in cookie
        assert cookie.startswith("_fbp=fb.1.") and "; Path=/; SameSite=Lax" in cookie
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView",
                                               "dl": "https://shop.example.com/"},
                                headers={"User-Agent": "Mozilla/5.0", "Host": "www.shop.example"})
    assert "Domain=shop.example;" in response.headers["Set-Cookie"]


async def test_status_warns_about_private_peers_when_no_proxy_is_trusted(
    start_gateway: GatewayFactory, one_destination: Settings,
) -> None:
    from gateway import appkeys

    client = await start_gateway(one_destination)
    assert (await (await client.get("/status")).json())["warnings"] == []
    # Loopback peers (this test's) are fine; a Docker network's peer is what gets noticed.
    client.server.app[appkeys.PROXIES].client_ip("172.18.0.5", CIMultiDictProxy(CIMultiDict()))
    [warning] = (await (await client.get("/status")).json())["warnings"]
    assert "private address 172.18.0.5" in warning and "trusted_proxies" in warning
