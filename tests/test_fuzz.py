"""Every route with mangled requests: a seeded, bounded corpus of methods, paths, queries,
headers and bodies (valid requests mutated field by field, and junk).

For each: never a 5xx; a refusal is JSON with a reason; what a refused request leaves behind is
only `invalid` rows kept with their reasons, never an event queued to be sent; and a marker
placed wherever personal data travels (emails, phone numbers, cookies, page URLs, user agents,
keys) never reaches the log, nor a refusal's answer.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from gateway.config import parse_settings

from .conftest import PIXEL_A, GatewayFactory, destination_yaml, settings_yaml, stored_rows

MARKER = "zqx7marker"
KEY = "fuzz-key-0123456789abcdef"
CASES = 400
SEED = 20261207


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _junk(rng: random.Random) -> Any:
    return rng.choice([
        None, True, 0, -1, 1.5, 2**62, float("inf") if rng.random() < 0.1 else "NaN", "",
        MARKER, f"{MARKER}@example.com", "\u0000", "é" * 3, "\ud800"[:0] + "\u202e",
        [], {}, [MARKER], {"x": MARKER}, "x" * 5000, "[" * 50,
    ])


def _event(rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_name": "Purchase", "event_time": int(time.time()) - 30,
        "event_id": f"fz-{rng.random()}", "action_source": "website",
        "event_source_url": f"https://shop.example.com/{MARKER}",
        "user_data": {"em": f"{MARKER}@example.com", "ph": "+1 650 555 0123",
                      "client_ip_address": "203.0.113.9", "client_user_agent": MARKER,
                      "fbp": "fb.1.1700000000000.123"},
        "custom_data": {"value": 12.5, "currency": "EUR",
                        "contents": [{"id": "a", "quantity": 1}]},
    }
    for _ in range(rng.randint(0, 3)):  # mutate a few fields, at any depth
        target = rng.choice([part for part in (event, event.get("user_data"),
                                               event.get("custom_data")) if isinstance(part, dict)])
        # Event names are logged by design (what was sent or dropped): no marker there.
        name = rng.choice([*(n for n in target if n != "event_name"), "extra"])
        if rng.random() < 0.2:
            target.pop(name, None)
        else:
            target[name] = _junk(rng)
    return event


def _server_body(rng: random.Random) -> tuple[bytes, str]:
    events = [_event(rng) for _ in range(rng.randint(0, 3))]
    key = rng.choice([KEY, KEY, f"{MARKER}-wrong", "", None])
    kind = rng.choice(["json", "json", "form", "multipart", "junk", "gzip"])
    fields: dict[str, Any] = {"data": events if rng.random() < 0.8 else _junk(rng)}
    if key is not None:
        fields[rng.choice(["accessKey", "access_token"])] = key
    if rng.random() < 0.2:
        fields[rng.choice(["strict", "test_event_code", "partner_agent"])] = _junk(rng)
    if kind == "form":
        text = "&".join(f"{name}={quote(orjson.dumps(v).decode() if not isinstance(v, str) else v)}"
                        for name, v in fields.items())
        return text.encode(), "application/x-www-form-urlencoded"
    if kind == "multipart":
        parts = b"".join(
            b"--B\r\nContent-Disposition: form-data; name=\"" + name.encode() + b"\"\r\n\r\n"
            + (v if isinstance(v, str) else orjson.dumps(v).decode()).encode() + b"\r\n"
            for name, v in fields.items())
        return parts + b"--B--\r\n", "multipart/form-data; boundary=B"
    body = orjson.dumps(fields)
    if kind == "junk":
        cut = rng.randint(0, len(body))
        body = body[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
    return body, "application/json"


def _hit_query(rng: random.Random) -> str:
    params = {"id": PIXEL_A, "ev": rng.choice(["PageView", "Purchase", "Lead", "", "x" * 300]),
              "dl": f"https://shop.example.com/{MARKER}", "ud[em]": f"{MARKER}@example.com",
              "ud[ph]": MARKER, "cd[value]": "12.5", "cd[currency]": "EUR",
              "eid": f"h{rng.random()}", "cd[contents]": '[{"id": "a", "quantity": 1}]'}
    for _ in range(rng.randint(0, 4)):
        name = rng.choice([*(n for n in params if n != "ev"), "ud[zz]", "cd[x]", "fbp", "a",
                           "%ZZ", "ud[db]"])
        junk = _junk(rng)
        params[name] = junk if isinstance(junk, str) else orjson.dumps(junk).decode()
    pairs = [f"{quote(k)}={quote(v, safe='') if rng.random() < 0.9 else v}"
             for k, v in params.items()]
    return "&".join(pairs)


def corpus(settings_prefix: str = "") -> Iterator[Request]:
    rng = random.Random(SEED)
    browser = {"User-Agent": f"Mozilla/5.0 {MARKER}", "Cookie": f"_fbp={MARKER}; sid={MARKER}"}
    for _ in range(CASES):
        route = rng.choice(["hit-get", "hit-post", "capi", "graph", "other", "operator"])
        headers = dict(browser) if rng.random() < 0.8 else {}
        if rng.random() < 0.15:
            headers[rng.choice(["Origin", "Host", "X-Forwarded-For", "Content-Encoding",
                                "Sec-Fetch-Site", "Referer"])] = rng.choice(
                [MARKER, "https://evil.example", "gzip", "::1", "", "a" * 2000])
        if route == "hit-get":
            yield Request("GET", f"/tr?{_hit_query(rng)}", headers)
        elif route == "hit-post":
            body = _hit_query(rng).encode()
            content_type = rng.choice(["application/x-www-form-urlencoded", "text/plain",
                                       "application/json", ""])
            if rng.random() < 0.2:
                body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
            yield Request("POST", "/tr", {**headers, "Content-Type": content_type}, body)
        elif route in ("capi", "graph"):
            body, content_type = _server_body(rng)
            if content_type == "application/json" and rng.random() < 0.15:
                body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
            pixel = rng.choice([PIXEL_A, PIXEL_A, "abc", "9" * 30])
            path = f"/capi/{pixel}/events" if route == "capi" else f"/v26.0/{pixel}/events"
            if rng.random() < 0.2:
                path += f"?access_token={quote(rng.choice([KEY, MARKER]))}"
            yield Request("POST", path, {**headers, "Content-Type": content_type}, body)
        elif route == "operator":
            path = rng.choice(["/status", "/metrics", "/dead-letters?limit=x",
                               f"/dead-letters?id={MARKER}", "/dead-letters/replay"])
            yield Request(rng.choice(["GET", "POST"]), path, headers)
        else:
            yield Request(rng.choice(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
                          rng.choice(["/", "/gw.js", "/demo", f"/demo/landed?eid={MARKER}",
                                      "/healthz", "/readyz", f"/{MARKER}", "/tr/x"]), headers)


@pytest.mark.timeout(300)
async def test_no_request_crashes_deceives_or_leaks(
    tmp_path: Path, aiohttp_client: Any, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway")
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", "http://127.0.0.1:9", pixel_id=PIXEL_A,
                                   access_token="", dry_run=True),
        extra=f"access_keys: [{{name: fuzz, sha256: {digest}, pixels: ['{PIXEL_A}']}}]\n"
              "admin: {listen: ''}\n"), env={})
    client = await start_gateway(settings)
    # A backend that proved its key is not throttled by its failures: without this, the
    # corpus's bad keys would soon have every server request answered 429 unread.
    response = await client.post(f"/capi/{PIXEL_A}/events?access_token={KEY}",
                                 json={"data": [_event(random.Random(1))]})
    assert response.status == 202
    seen_rows = len(stored_rows(settings))
    answers: dict[int, int] = {}
    for number, request in enumerate(corpus()):
        response = await client.request(request.method, request.path, headers=request.headers,
                                        data=io.BytesIO(request.body) if request.body else None,
                                        skip_auto_headers=["Content-Type"])
        text = await response.read()
        where = f"case {number}: {request.method} {request.path[:80]} -> {response.status}"
        answers[response.status] = answers.get(response.status, 0) + 1
        assert response.status < 500, where
        if response.status >= 400 and request.method != "HEAD":
            assert "error" in orjson.loads(text), where
            assert MARKER.encode() not in text, where  # a refusal never echoes the request
        rows = stored_rows(settings)
        if response.status >= 400:
            # A refusal leaves nothing to send: at most `invalid` rows, kept with their reasons.
            assert all(row.state == "invalid" and row.last_error
                       for row in rows[seen_rows:]), where
        seen_rows = len(rows)
    assert MARKER not in caplog.text
    # The corpus reaches the interesting answers, not just one kind of refusal.
    assert {200, 400, 401}.issubset(answers), answers
