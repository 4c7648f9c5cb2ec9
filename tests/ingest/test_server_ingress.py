"""Server events on /capi/{pixel}/events and /{version}/{pixel}/events: accepted events reach the
fake Graph hashed once; bad requests get a readable 4xx (Graph-shaped on the Graph route) and
leave nothing queued; access keys are checked, scoped, throttled and never echoed or logged."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer

from gateway import appkeys
from gateway.app import create_app
from gateway.config import parse_settings
from gateway.ingest.serverroutes import INGRESS, add_server_routes
from gateway.settings import Settings

from ..conftest import (
    PIXEL_A,
    PIXEL_B,
    destination_yaml,
    settings_yaml,
    stored_rows,
    wait_until,
)
from ..fake_graph import FakeGraph

KEY = "sk-test-backend-0123456789abcdef"
KEY_B = "sk-test-other-pixel-fedcba9876543210"
EMAIL = " Joe.Smith@Example.COM "
EMAIL_HASH = hashlib.sha256(b"joe.smith@example.com").hexdigest()
UA = "Mozilla/5.0 (X11; Linux x86_64) Test/1.0"
GRAPH_ERROR_KEYS = {"message", "type", "code", "error_subcode", "error_user_title",
                    "error_user_msg", "fbtrace_id"}

ServerFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


class FakeClock:
    """Real time plus a manual offset: event times stay current, throttling windows can pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def access_keys_yaml(*entries: tuple[str, str, list[str] | str]) -> str:
    lines = ["access_keys:"]
    for name, key, pixels in entries:
        scope = '"*"' if pixels == "*" else "[" + ", ".join(f'"{p}"' for p in pixels) + "]"
        lines += [f"  - name: {name}", f"    sha256: {sha256(key)}", f"    pixels: {scope}"]
    return "\n".join(lines) + "\n"


def server_settings(tmp_path: Path, graph_url: str, extra: str = "") -> Settings:
    """PIXEL_A to the fake Graph; KEY may send for PIXEL_A, KEY_B for PIXEL_B only."""
    keys_yaml = access_keys_yaml(("backend", KEY, [PIXEL_A]), ("other", KEY_B, [PIXEL_B]))
    return parse_settings(
        settings_yaml(tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A),
                      extra=keys_yaml + extra),
        env={},
    )


@pytest.fixture
def start_server(aiohttp_client: Any) -> ServerFactory:
    """A gateway with the server routes added (as create_app will once they are wired)."""

    async def start(settings: Settings, clock: Callable[[], float] = time.time,
                    on_app: Callable[[web.Application], None] | None = None,
                    **server_options: Any) -> TestClient[Any, Any]:
        app = create_app(settings, clock=clock)
        if on_app is not None:
            on_app(app)
        add_server_routes(app, settings.server.path_prefix)
        add_server_routes(app, settings.server.path_prefix)  # idempotent: no double routes
        server = TestServer(app)
        await server.start_server(**server_options)
        return await aiohttp_client(server)  # type: ignore[no-any-return]

    return start


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    return server_settings(tmp_path, fake_graph.url)


def outbox_rows(settings: Settings) -> list[tuple[str, str, str]]:
    """(state, event_id, note) of every outbox row."""
    return [(row.state, row.event_id, row.last_error or "") for row in stored_rows(settings)]


def event(name: str = "Purchase", **fields: Any) -> dict[str, Any]:
    """A valid server event (website, with what Meta requires)."""
    data: dict[str, Any] = {
        "event_name": name,
        "event_time": int(time.time()) - 60,
        "event_id": f"order-{name}-{time.monotonic_ns()}",
        "action_source": "website",
        "event_source_url": "https://shop.example.com/thanks",
        "user_data": {"em": EMAIL, "client_ip_address": "203.0.113.9",
                      "client_user_agent": UA},
        "custom_data": {"value": 42.5, "currency": "EUR"},
    }
    data.update(fields)
    return data


def capi_body(*events: dict[str, Any], key: str = KEY, **fields: Any) -> bytes:
    return orjson.dumps({"data": list(events), "accessKey": key, **fields})


async def post_raw(client: TestClient[Any, Any], path: str, body: bytes,
                   content_type: str | None = None) -> Any:
    """POST bytes exactly, with the given Content-Type or none at all."""
    data = io.BytesIO(body)  # aiohttp warns of large bytes bodies
    if content_type is None:
        return await client.post(path, data=data, skip_auto_headers=["Content-Type"])
    return await client.post(path, data=data, headers={"Content-Type": content_type})


# -- what the SDKs and CAPI Gateway clients send ---------------------------------------------------
async def test_capi_gateway_wire_format_without_content_type_gets_202(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    """CAPIGatewayIngressRequest (PHP/Java): JSON with accessKey, no Content-Type, 202 only."""
    client = await start_server(settings)
    sent = event(user_data={"em": EMAIL_HASH, "ph": sha256("16505551212"),
                            "client_ip_address": "203.0.113.9", "client_user_agent": UA,
                            "fbp": "fb.1.1700000000000.123456789"})
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(sent))
    assert "Content-Type" not in response.request_info.headers
    assert response.status == 202
    assert await response.json() == {"events_received": 1, "events_rejected": []}

    [arrived] = await fake_graph.wait_for_events(1)
    assert arrived == sent  # relayed as received: nothing added, hashes untouched
    [request] = fake_graph.accepted
    assert request.pixel_id == PIXEL_A
    assert request.query == {"access_token": "TEST-TOKEN-main"}


async def test_raw_email_from_a_backend_arrives_hashed(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_server(settings)
    prehashed = EMAIL_HASH.upper() + ".AQYBAAAA"  # newer SDKs' appendix: kept, not re-hashed
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(
        event("Lead", user_data={"em": EMAIL, "fn": "Valéry", "client_user_agent": UA}),
        event("Lead", user_data={"em": prehashed, "client_user_agent": UA}),
    ), "application/json; charset=utf-8")
    assert response.status == 202
    first, second = await fake_graph.wait_for_events(2)
    assert first["user_data"]["em"] == EMAIL_HASH
    assert first["user_data"]["fn"] == sha256("valéry")
    assert second["user_data"]["em"] == EMAIL_HASH + ".AQYBAAAA"
    assert EMAIL.strip() not in orjson.dumps(fake_graph.requests[0].body).decode()


async def test_graph_route_takes_a_node_style_json_body_and_answers_like_graph(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    """Node SDK: JSON body with access_token (also in the query), null-valued keys."""
    client = await start_server(settings)
    body = {"data": [event()], "access_token": KEY, "test_event_code": "TEST123",
            "partner_agent": "acme-shop", "namespace_id": None, "upload_tag": "nightly"}
    response = await client.post(f"/v26.0/{PIXEL_A}/events", json=body,
                                 params={"access_token": KEY})
    assert response.status == 200
    answer = await response.json()
    assert set(answer) == {"events_received", "messages", "fbtrace_id"}
    assert answer["events_received"] == 1 and answer["messages"] == []
    assert answer["fbtrace_id"] and response.headers["X-FB-Trace-ID"] == answer["fbtrace_id"]

    await fake_graph.wait_for_events(1)
    [request] = fake_graph.accepted
    assert request.body["test_event_code"] == "TEST123"
    assert request.body["partner_agent"] == "acme-shop"
    assert request.body["upload_tag"] == "nightly"
    assert "namespace_id" not in request.body


async def test_graph_route_takes_form_bodies_with_double_encoded_events(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    """The Python SDK's sync form: data = JSON array of JSON strings; key in the query."""
    client = await start_server(settings)
    data = orjson.dumps([orjson.dumps(event()).decode()]).decode()
    response = await client.post(f"/v26.0/{PIXEL_A}/events?access_token={KEY}",
                                 data={"data": data, "test_event_code": "TEST9"})
    assert response.status == 200, await response.text()
    assert (await response.json())["events_received"] == 1
    [arrived] = await fake_graph.wait_for_events(1)
    assert arrived["user_data"]["em"] == EMAIL_HASH
    assert fake_graph.accepted[0].body["test_event_code"] == "TEST9"


async def test_graph_route_takes_multipart_bodies(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_server(settings)
    form = FormData({"data": orjson.dumps([event()]).decode(), "access_token": KEY},
                    default_to_multipart=True)
    response = await client.post(f"/v26.0/{PIXEL_A}/events", data=form)
    assert response.status == 200, await response.text()
    assert (await fake_graph.wait_for_events(1))[0]["event_name"] == "Purchase"


async def test_other_action_sources_follow_their_own_rules(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    """physical_store: 62 days back is fine, no URL or user agent needed; website: 7 days."""
    client = await start_server(settings)
    thirty_days_ago = int(time.time()) - 30 * 86400
    store = {"event_name": "Purchase", "event_time": thirty_days_ago,
             "action_source": "physical_store", "user_data": {"ph": "+1 650 555 1212"},
             "custom_data": {"value": 10, "currency": "USD"}}
    system = {"event_name": "Subscribe", "event_time": int(time.time()),
              "action_source": "system_generated", "user_data": {"external_id": "crm-7"}}
    website = event(event_time=thirty_days_ago)
    response = await post_raw(client, f"/capi/{PIXEL_A}/events",
                              capi_body(store, system, website))
    assert response.status == 202
    assert await response.json() == {
        "events_received": 2,
        "events_rejected": [{"index": 2, "reasons": ["event_time is more than 7 days old"]}],
    }
    arrived = await fake_graph.wait_for_events(2)
    assert [e["action_source"] for e in arrived] == ["physical_store", "system_generated"]
    assert arrived[0]["user_data"]["ph"] == sha256("16505551212")
    assert all(len(e["event_id"]) == 32 for e in arrived)  # generated when absent


# -- access keys ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "problem"), [("", "required"), ("wrong-key", "not valid")])
async def test_missing_or_wrong_key_gets_190_and_stores_nothing(
    key: str, problem: str, start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    response = await client.post(f"/v26.0/{PIXEL_A}/events",
                                 json={"data": [event()], "access_token": key})
    assert response.status == 401
    error = (await response.json())["error"]
    assert set(error) == GRAPH_ERROR_KEYS
    assert error["code"] == 190 and error["type"] == "OAuthException"
    assert problem in error["error_user_msg"]

    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(event(), key=key))
    assert response.status == 401
    assert problem in (await response.json())["error"]
    assert outbox_rows(settings) == []


async def test_key_used_outside_its_pixels_gets_403(
    start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    response = await client.post(f"/v26.0/{PIXEL_A}/events",
                                 json={"data": [event()], "access_token": KEY_B})
    assert response.status == 403
    error = (await response.json())["error"]
    assert error["code"] == 200
    assert f"may not send events for pixel {PIXEL_A}" in error["error_user_msg"]
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(event(), key=KEY_B))
    assert response.status == 403
    assert outbox_rows(settings) == []


async def test_repeated_failures_from_one_ip_are_throttled(
    start_server: ServerFactory, tmp_path: Path, fake_graph: FakeGraph,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Five bad keys in a minute: that IP gets 429 with Retry-After (even with the right key);
    another IP is unaffected; once the window passes the good key works again."""
    proxied = "server: {trusted_proxies: [loopback]}\n"
    settings = server_settings(tmp_path, fake_graph.url, extra=proxied)
    clock = FakeClock()
    client = await start_server(settings, clock=clock)
    attacker = {"X-Forwarded-For": "198.51.100.7"}
    path = f"/v26.0/{PIXEL_A}/events"
    for attempt in range(5):
        response = await client.post(path, json={"data": [event()], "access_token":
                                                  f"guess-{attempt}"}, headers=attacker)
        assert response.status == 401
    for _ in range(2):
        response = await client.post(path, json={"data": [event()], "access_token": KEY},
                                     headers=attacker)
        assert response.status == 429
        assert response.headers["Retry-After"] == "60"
        assert (await response.json())["error"]["code"] == 4
    # Each failure is logged, the block once; requests refused while blocked are only counted.
    assert caplog.text.count("refused a request from 198.51.100.7") == 5
    assert caplog.text.count("198.51.100.7 is throttled for 60 s") == 1

    other = {"X-Forwarded-For": "198.51.100.8"}
    response = await client.post(path, json={"data": [event()], "access_token": KEY},
                                 headers=other)
    assert response.status == 200

    clock.offset = 61
    response = await client.post(path, json={"data": [event()], "access_token": KEY},
                                 headers=attacker)
    assert response.status == 200

    registry = client.server.app[appkeys.METRICS].registry

    def denied(reason: str) -> float | None:
        return registry.get_sample_value("gateway_access_denied_total", {"reason": reason})

    assert denied("invalid_key") == 5
    assert denied("throttled") == 2


async def test_keys_never_reach_logs_or_answers(
    start_server: ServerFactory, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # As `tag-gateway serve` runs it: no access log (request lines carry query strings).
    client = await start_server(settings, access_log=None)
    answers = []
    for key in (KEY, KEY_B, "wrong-secret-key-value"):
        for path in (f"/v26.0/{PIXEL_A}/events?access_token={key}", f"/capi/{PIXEL_A}/events"):
            response = await post_raw(client, path, capi_body(event(), key=key))
            answers.append(await response.text())
    response = await post_raw(client, f"/capi/{PIXEL_A}/events",
                              capi_body(event(), {"oops": 1}, key=KEY))
    answers.append(await response.text())
    assert "refused a request from 127.0.0.1" in caplog.text  # failures are logged ...
    for secret in (KEY, KEY_B, "wrong-secret-key-value", EMAIL.strip()):
        assert secret not in caplog.text  # ... without the key or personal data
        assert not any(secret in answer for answer in answers)


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "problem"), [
    (b'{"data": [', "the body is not valid JSON"),
    (b'{"data": "\xff\xfe"}', "not valid JSON (str is not valid UTF-8"),
    (b"", "the body is empty"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"events": []}', "missing parameter 'data'"),
    (b'{"data": 5}', "'data' must be an array of events"),
    (b'{"data": {"event_name": "Lead"}}', "'data' must be an array of events"),
    (b'{"data": "not json"}', "parameter 'data' is not valid JSON"),
    (b'{"data": []}', "at least one event"),
    (b'{"data": [1]}', "data[0] must be an event object"),
    (b'{"data": [{"event_name": "Lead"}, "[1]"]}', "data[1] must be an event object"),
    (b'{"data": [{"event_name": "Lead"}, "{oops"]}', "data[1] is not valid JSON"),
    (b'{"data": [{}], "strict": "maybe"}', "'strict' must be true or false"),
    (b'{"data": [{}], "test_event_code": {"a": 1}}', "'test_event_code' must be text"),
    (b'{"data": [{"x": ' + b"[" * 20 + b"]" * 20 + b"}]}", "nested more than 16 levels"),
    (b'{"data": [{"x": ' + b"[" * 2000 + b"]" * 2000 + b"}]}", "not valid JSON"),
])
async def test_malformed_bodies_get_400_with_the_reason(
    body: bytes, problem: str, start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    # With the key in the query: a body is parsed only once a key is proved.
    for path in (f"/capi/{PIXEL_A}/events?access_token={KEY}",
                 f"/v26.0/{PIXEL_A}/events?access_token={KEY}"):
        response = await post_raw(client, path, body, "application/json")
        assert response.status == 400, path
        answer = await response.json()
        message = answer["error"] if path.startswith("/capi") else \
            answer["error"]["error_user_msg"]
        assert problem in message, path
    assert outbox_rows(settings) == []


async def test_form_body_with_invalid_utf8_and_unknown_types_are_refused(
    start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    path = f"/v26.0/{PIXEL_A}/events?access_token={KEY}"
    response = await post_raw(client, path, b"data=%FF%FE", "application/x-www-form-urlencoded")
    assert response.status == 400
    assert "not valid UTF-8" in (await response.json())["error"]["error_user_msg"]
    response = await post_raw(client, path, b"<xml/>", "application/xml")
    assert response.status == 415
    assert (await response.json())["error"]["code"] == 100
    response = await post_raw(client, f"/v26.0/not-a-pixel/events?access_token={KEY}",
                              capi_body(event()), "application/json")
    assert response.status == 400
    assert outbox_rows(settings) == []


async def test_more_than_1000_events_are_refused_and_1000_accepted(
    start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    events = [event("Lead", event_id=f"lead-{i}") for i in range(1001)]
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(*events))
    assert response.status == 400
    assert (await response.json())["error"] == (
        "parameter 'data' holds 1001 events; at most 1000 are accepted per request")
    assert outbox_rows(settings) == []

    # The largest request Meta allows fits the server routes' body limit, even double-encoded.
    data = orjson.dumps([orjson.dumps(e).decode() for e in events[:1000]]).decode()
    response = await client.post(f"/v26.0/{PIXEL_A}/events?access_token={KEY}",
                                 data={"data": data})
    assert response.status == 200, await response.text()
    assert (await response.json())["events_received"] == 1000
    assert len(outbox_rows(settings)) == 1000


async def test_bodies_over_the_limit_get_413(
    start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    limit = client.server.app[INGRESS].max_body_bytes
    assert limit == 8 * 2**20  # not the browser hits' 64 KiB
    padding = "x" * limit
    huge = capi_body(event(custom_data={"value": 1, "currency": "EUR", "blob": padding}))
    response = await client.post(f"/capi/{PIXEL_A}/events", data=io.BytesIO(huge))
    assert response.request_info.headers["Content-Length"] == str(len(huge))
    assert response.status == 413
    assert f"larger than {limit} bytes" in (await response.json())["error"]

    async def chunked() -> Any:  # no Content-Length: the limit holds while reading
        for start in range(0, len(huge), 2**20):
            yield huge[start:start + 2**20]

    response = await client.post(f"/v26.0/{PIXEL_A}/events?access_token={KEY}",
                                 data=chunked(), headers={"Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == 100
    form = FormData({"access_token": KEY})
    form.add_field("data", io.BytesIO(padding.encode()), content_type="application/json")
    response = await client.post(f"/v26.0/{PIXEL_A}/events", data=form)
    assert response.status == 413
    assert outbox_rows(settings) == []


# -- batch semantics -------------------------------------------------------------------------------
async def test_valid_events_are_accepted_and_refused_ones_listed_by_index(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_server(settings)
    good = event(event_id="good-1")
    too_old = event(event_id="old-1", event_time=int(time.time()) - 8 * 86400)
    nameless = event(event_id="nameless-1", event_name=None)
    no_value = event(event_id="novalue-1", custom_data={"currency": "EUR"})
    response = await client.post(
        f"/v26.0/{PIXEL_A}/events",
        json={"data": [too_old, good, nameless, no_value], "access_token": KEY},
    )
    assert response.status == 200
    answer = await response.json()
    assert answer["events_received"] == 1
    assert answer["messages"] == [
        "data[0]: event_time is more than 7 days old (not accepted)",
        "data[2]: event_name is required (text) (not accepted)",
        "data[3]: Purchase events need custom_data.value as a number (not accepted)",
    ]
    [arrived] = await fake_graph.wait_for_events(1)
    assert arrived["event_id"] == "good-1"
    # Refused events that can be stored are kept as `invalid` rows; a nameless one cannot be.
    rows = {event_id: state for state, event_id, _ in outbox_rows(settings)}
    assert rows.pop("good-1") in {"pending", "inflight", "delivered"}
    assert rows == {"old-1": "invalid", "novalue-1": "invalid"}

    response = await post_raw(client, f"/capi/{PIXEL_A}/events",
                              capi_body(event(), event(event_time="yesterday"),
                                        event(action_source=["website"])))
    assert response.status == 202
    assert await response.json() == {"events_received": 1, "events_rejected": [
        {"index": 1, "reasons": ["event_time must be a Unix timestamp in seconds"]},
        {"index": 2, "reasons": ["action_source must be text"]}]}


@pytest.mark.parametrize("where", ["query", "body"])
async def test_strict_mode_is_all_or_nothing(
    where: str, start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    events = [event(), event(event_time=int(time.time()) - 8 * 86400), event()]
    body: dict[str, Any] = {"data": events, "access_token": KEY}
    params = {"strict": "true"} if where == "query" else {}
    if where == "body":
        body["strict"] = True
    response = await client.post(f"/v26.0/{PIXEL_A}/events", json=body, params=params)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == 100
    assert error["error_user_msg"] == ("data[1]: event_time is more than 7 days old; with "
                                       "strict=true no event of this request was accepted")
    response = await post_raw(client, f"/capi/{PIXEL_A}/events?strict=1", capi_body(*events))
    assert response.status == 400
    assert (await response.json())["events_rejected"] == [
        {"index": 1, "reasons": ["event_time is more than 7 days old"]}]
    assert outbox_rows(settings) == []  # not even the invalid row


async def test_a_request_whose_events_are_all_refused_is_an_error(
    start_server: ServerFactory, settings: Settings
) -> None:
    client = await start_server(settings)
    response = await client.post(
        f"/v26.0/{PIXEL_A}/events",
        json={"data": [event(event_source_url=None)], "access_token": KEY},
    )
    assert response.status == 400
    assert (await response.json())["error"]["error_user_msg"] == (
        "no event was accepted: data[0]: website events need event_source_url")
    assert [state for state, _, _ in outbox_rows(settings)] == ["invalid"]


async def test_backpressure_is_a_graph_shaped_503(
    start_server: ServerFactory, settings: Settings
) -> None:
    # A bound of zero rows: the start-up check, and every later one, says "full".
    client = await start_server(replace(settings, storage=replace(settings.storage,
                                                                  max_queue_rows=0)))
    response = await client.post(f"/v26.0/{PIXEL_A}/events",
                                 json={"data": [event()], "access_token": KEY})
    assert response.status == 503
    assert response.headers["Retry-After"] == "30"
    assert (await response.json())["error"]["code"] == 2
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(event()))
    assert response.status == 503
    assert outbox_rows(settings) == []


# -- routing ---------------------------------------------------------------------------------------
async def test_server_routes_do_not_shadow_other_routes_and_honour_the_prefix(
    start_server: ServerFactory, tmp_path: Path, fake_graph: FakeGraph
) -> None:
    settings = server_settings(tmp_path, fake_graph.url, extra="server: {path_prefix: /gw}\n")
    client = await start_server(settings)
    response = await client.get("/gw/tr", params={"id": PIXEL_A, "ev": "PageView",
                                                  "dl": "https://shop.example.com/"},
                                headers={"User-Agent": UA})
    assert response.status == 200
    assert (await client.get("/gw/healthz")).status == 200
    assert (await client.get(f"/gw/v26.0/{PIXEL_A}/events")).status == 405
    assert (await client.post(f"/gw/latest/{PIXEL_A}/events")).status == 404
    response = await post_raw(client, f"/gw/capi/{PIXEL_A}/events", capi_body(event()))
    assert response.status == 202
    response = await client.post(f"/gw/v25.0/{PIXEL_A}/events",
                                 json={"data": [event()], "access_token": KEY})
    assert response.status == 200
    await fake_graph.wait_for_events(3)


# -- unauthenticated bodies: refused before they are parsed, and throttled ------------------------
def big_body(size: int, key: str | None = None) -> bytes:
    """A JSON body of about `size` bytes (up to 1000 events), with `key` as accessKey if given."""
    count = min(1000, max(1, size // 600))
    one = orjson.dumps(event(custom_data={"value": 1.0, "currency": "EUR",
                                          "note": "x" * max(0, size // count - 500)}))
    head = b'{"accessKey": ' + orjson.dumps(key) + b", " if key is not None else b"{"
    return head + b'"data": [' + b",".join([one] * count) + b"]}"


async def test_a_body_without_a_valid_key_is_refused_without_being_parsed(
    start_server: ServerFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.ingest import serverroutes

    parsed: list[int] = []
    real = serverroutes.parse_server_body
    monkeypatch.setattr(serverroutes, "parse_server_body",
                        lambda raw: parsed.append(len(raw)) or real(raw))
    client = await start_server(settings)
    for key, label in ((None, "required"), ("wrong-key", "not valid")):
        for path in (f"/capi/{PIXEL_A}/events", f"/v26.0/{PIXEL_A}/events"):
            response = await post_raw(client, path, big_body(2 * 2**20, key), "application/json")
            assert response.status == 401, (path, key)
            assert label in (await response.text())
    assert parsed == []
    # The right key, in the body or the header, and the same body is parsed and accepted.
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", big_body(300_000, KEY),
                              "application/json")
    assert response.status == 202
    response = await client.post(f"/v26.0/{PIXEL_A}/events", data=big_body(1000),
                                 headers={"Authorization": f"Bearer {KEY}",
                                          "Content-Type": "application/json"})
    assert response.status == 200
    assert len(parsed) == 2


async def test_a_key_outside_the_body_is_checked_before_the_body_is_read(
    start_server: ServerFactory, settings: Settings
) -> None:
    """A valid header key skips the unproven budget; a wrong one there does not hide a valid
    key in the body (a proxy may add its own Authorization header)."""
    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    response = await client.post(path, data=capi_body(event(), key=KEY), headers={
        "Authorization": "Bearer a-proxys-own-token", "Content-Type": "application/json"})
    assert response.status == 202
    response = await client.post(f"/v26.0/{PIXEL_A}/events?access_token=nope",
                                 data=capi_body(event(), key=KEY),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 200
    response = await client.post(path, data=orjson.dumps({"data": [event()]}), headers={
        "Authorization": "Bearer nope", "Content-Type": "application/json"})
    assert response.status == 401
    too_big = settings.server.max_server_body_bytes + 1
    response = await client.post(path, data=io.BytesIO(b"x" * too_big),
                                 headers={"Authorization": f"Bearer {KEY}"})
    assert response.status == 413


async def test_events_that_mention_the_key_names_in_their_values_are_accepted(
    start_server: ServerFactory, settings: Settings
) -> None:
    """Page URLs with `&access_token=` in them (OAuth callbacks) are values, not keys."""
    client = await start_server(settings)
    url = "https://shop.example.com/callback?code=1&access_token=abc&accessKey=x"
    events = [event(event_source_url=url) for _ in range(40)]
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(*events, key=KEY))
    assert response.status == 202


async def test_a_compressed_body_without_a_proved_key_is_reserved_at_full_size(
    start_server: ServerFactory, settings: Settings
) -> None:
    """A small gzip body may inflate to the limit: it takes a full-size share of the budget."""
    import gzip

    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    uploads = [await start_upload(client, path, settings.server.max_server_body_bytes)
               for _ in range(2)]
    await wait_until(lambda: client.server.app[INGRESS].unproven.in_memory > 0)
    response = await client.post(path, data=gzip.compress(capi_body(event(), key=KEY)),
                                 headers={"Content-Type": "application/json",
                                          "Content-Encoding": "gzip"})
    assert response.status == 503
    for _, writer in uploads:
        writer.close()


async def test_an_upload_without_a_proved_key_has_a_deadline(
    start_server: ServerFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client trickling its body cannot hold the budget for ever: 408, and its share back."""
    from gateway.ingest import serverroutes

    monkeypatch.setattr(serverroutes, "UPLOAD_GRACE_SECONDS", 0.2)
    monkeypatch.setattr(serverroutes, "MIN_UPLOAD_BYTES_PER_SECOND", 2**40)
    client = await start_server(settings)
    reader, writer = await start_upload(client, f"/capi/{PIXEL_A}/events", 2**20)
    async with asyncio.timeout(5):
        head = await reader.readline()
    assert b" 408 " in head
    writer.close()
    assert client.server.app[INGRESS].unproven.in_memory == 0


async def test_any_refusal_before_a_key_is_proved_counts_towards_the_throttle(
    start_server: ServerFactory, settings: Settings
) -> None:
    """Unparsable, oversized or keyless bodies: five, then 429 before the body is read."""
    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    limit = settings.server.max_server_body_bytes
    for body in (b'{"data": [', b"[1]", b"x" * (limit + 1), b"{}", b'{"accessKey": "x"}'):
        response = await post_raw(client, path, body, "application/json")
        assert response.status in (400, 401, 413)
    response = await post_raw(client, path, capi_body(event(), key=KEY))
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    registry = client.server.app[appkeys.METRICS].registry
    assert registry.get_sample_value("gateway_access_denied_total",
                                     {"reason": "bad_request"}) == 1


async def test_a_backend_that_proved_its_key_is_not_locked_out_by_a_neighbour(
    start_server: ServerFactory, settings: Settings
) -> None:
    """Behind one NAT, one misconfigured backend's failures do not block the others."""
    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    response = await post_raw(client, path, capi_body(event(), key=KEY))
    assert response.status == 202
    for _ in range(10):
        response = await post_raw(client, path, capi_body(event(), key="forgotten-key"))
        assert response.status == 401
    response = await post_raw(client, path, capi_body(event(), key=KEY))
    assert response.status == 202


async def start_upload(client: TestClient[Any, Any], path: str, size: int
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST that declares `size` bytes and sends only its first few: a slow upload."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {size}\r\n\r\n".encode() + b'{"data": [')
    await writer.drain()
    return reader, writer


async def test_large_bodies_without_a_proved_key_are_read_two_at_a_time(
    start_server: ServerFactory, settings: Settings
) -> None:
    """Memory for unauthenticated bodies is bounded: a third large one waits its turn (503 with
    Retry-After, before a byte of it is read); small ones and proved keys are not held up."""
    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    full = settings.server.max_server_body_bytes
    uploads = [await start_upload(client, path, full) for _ in range(2)]
    await asyncio.sleep(0.2)  # both are being read
    response = await client.post(path, data=io.BytesIO(big_body(full // 2)),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert "retry shortly" in (await response.json())["error"]
    response = await post_raw(client, path, capi_body(event(), key=KEY))  # small: not held up
    assert response.status == 202
    response = await client.post(f"{path}?access_token={KEY}",
                                 data=io.BytesIO(big_body(full // 2)),
                                 headers={"Content-Type": "application/json"})
    assert response.status == 202  # a proved key needs no reservation
    for _, writer in uploads:
        writer.close()
    await wait_until(lambda: client.server.app[INGRESS].unproven.in_memory == 0)
    await asyncio.sleep(1)  # the byte budget refills (two full-size bodies a second)
    response = await post_raw(client, path, big_body(full // 2, KEY), "application/json")
    assert response.status == 202


async def test_an_upload_cut_off_midway_is_a_failure_not_a_server_error(
    start_server: ServerFactory, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_server(settings)
    path = f"/capi/{PIXEL_A}/events"
    for _ in range(5):
        _, writer = await start_upload(client, path, 2**20)
        await wait_until(lambda: client.server.app[INGRESS].unproven.in_memory > 0)  # being read
        writer.transport.abort()  # reset, as a client that gives up
    await wait_until(lambda: client.server.app[INGRESS].unproven.in_memory == 0)
    await asyncio.sleep(0.1)
    response = await post_raw(client, path, capi_body(event(), key="wrong"))
    assert response.status == 429  # five cut-off uploads counted as failures
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text


async def test_bytes_read_without_a_proved_key_are_limited_per_second(
    start_server: ServerFactory, settings: Settings
) -> None:
    """Two full-size bodies a second at most: beyond, 503 before reading, until it refills."""
    clock = FakeClock()
    client = await start_server(settings, clock=clock)
    path = f"/capi/{PIXEL_A}/events"
    full = settings.server.max_server_body_bytes
    body = big_body(full - 1000, "wrong-key")
    for _ in range(2):
        response = await post_raw(client, path, body, "application/json")
        assert response.status == 401
    response = await post_raw(client, path, body, "application/json")
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    clock.offset += 1
    response = await post_raw(client, path, body, "application/json")
    assert response.status == 401


@pytest.mark.parametrize(("fields", "reason"), [
    ({"event_name": "Lead\u0000"}, "event_name must be at most 100 printable characters"),
    ({"event_name": "x" * 101}, "event_name must be at most 100 printable characters"),
    ({"event_id": "id\u0000"}, "event_id must be at most 256 printable characters"),
])
async def test_names_and_ids_no_store_could_keep_are_refused(
    fields: dict[str, Any], reason: str, start_server: ServerFactory, settings: Settings
) -> None:
    """A NUL or an endless name would fail every commit (or claim) of a database that keeps
    them: refused at the door, with the others of the batch accepted."""
    client = await start_server(settings)
    response = await post_raw(client, f"/capi/{PIXEL_A}/events",
                              capi_body(event(**fields), event(), key=KEY))
    assert response.status == 202
    answer = await response.json()
    assert reason in str(answer)
