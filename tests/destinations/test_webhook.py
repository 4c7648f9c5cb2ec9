"""`type: webhook`: signed JSON batches of the neutral event to any HTTP endpoint, through the
real gateway (hits on /tr, a real SQLite outbox, relay workers) against a local receiver that
verifies signatures with the snippet the docs publish."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway import appkeys
from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.destinations.webhook import WEBHOOK, WebhookOptions
from gateway.destinations.webhook.sender import classify, excerpt, retry_after, sign
from gateway.errors import ConfigError, Permanent, RateLimited, Retryable, TokenRejected
from gateway.settings import Settings
from gateway.storage import OutboxEntry, open_outbox

from ..conftest import (
    PIXEL_A,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    type_yaml,
    wait_until,
)
from ..conftest import outbox_rows as rows
from ..fake_graph import FakeGraph
from .fake_webhook import FakeReceiver, published_verify

SECRET = "whsec-0123456789abcdef"
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}


def webhook_yaml(name: str, url: str, *, headers: dict[str, str] | None = None,
                 **fields: Any) -> str:
    extra = {"headers": headers} if headers is not None else {}
    return type_yaml(name, **{"type": "webhook", "url": url, "secret": SECRET, **fields,
                              **extra})


@pytest.fixture
async def receiver(aiohttp_server: Any) -> FakeReceiver:
    fake = FakeReceiver(SECRET)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("/hook"))
    return fake


def one_webhook(tmp_path: Path, url: str, env: dict[str, str] | None = None,
                **fields: Any) -> Settings:
    return parse_settings(settings_yaml(tmp_path, webhook_yaml("hook", url, **fields)),
                          env=env or {})


async def hit(client: Any, event_id: str = "e1", **params: str) -> None:
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "Lead", "eid": event_id,
                                               **params}, headers=UA)
    assert response.status == 200


def problems_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env=env or {})
    return [str(problem) for problem in caught.value.problems]


# -- options ----------------------------------------------------------------------------------

def test_options_are_read_with_the_types_defaults_and_secrets_hidden(tmp_path: Path) -> None:
    assert TYPES["webhook"] is WEBHOOK
    settings = one_webhook(tmp_path, "https://collect.example.com/in?key=QUERYTOKEN",
                           env={"HOOK_TOKEN": "tok-123"},
                           headers={"Authorization": "Bearer ${HOOK_TOKEN}", "X-Tenant": "7"})
    [destination] = settings.destinations
    options = destination.options
    assert isinstance(options, WebhookOptions)
    assert options.url == "https://collect.example.com/in?key=QUERYTOKEN"
    assert options.headers == (("Authorization", "Bearer tok-123"), ("X-Tenant", "7"))
    assert options.credentials == (SECRET, "Bearer tok-123", "7")
    assert destination.batch_size == 1000 and destination.accepts is None
    assert SECRET not in repr(destination) and "tok-123" not in repr(destination)
    built = WEBHOOK.build(destination)
    # The path and the query may hold a token (Slack's, Discord's, Zapier's hooks do).
    assert built.endpoint == "https://collect.example.com/..."
    assert "QUERYTOKEN" not in repr(destination)
    assert built.target == "the webhook at collect.example.com"
    assert WEBHOOK.default_consent == "none"
    assert WEBHOOK.cookie_names == frozenset() and WEBHOOK.identities({"em": "a@b.c"}, None) == {}
    assert WEBHOOK.validate({"event_name": "Anything"}, time.time()) == []
    assert WEBHOOK.expires({"event_time": 1_800_000_000}) == 1_800_000_000 + 7 * 86400


def test_config_mistakes_are_located_and_never_show_secrets(tmp_path: Path) -> None:
    text = settings_yaml(
        tmp_path,
        webhook_yaml("a", "ftp://collect.example.com/in?key=QUERYTOKEN", secret="has space s3"),
        webhook_yaml("b", "https://user:PASSWORD1@collect.example.com/in", headers={
            "Connection": "close", "X-Gateway-Signature": "sha256=forged",
            "Bad Name": "HEADERVALUE1", "content-type": "text/plain",
            "Authorization": "Bearer one", "AUTHORIZATION": "Bearer two",
            "X-Multi": "line1\nHEADERVALUE2", "X-Unset": "${NOT_SET_HERE}"}),
        webhook_yaml("c", "https://collect.example.com/in#part", batch_size=1001),
        "  - name: d\n    type: webhook\n    headers: [Authorization]",
    )
    problems = problems_of(text)
    joined = "\n".join(problems)
    for expected in [
        "config.yaml:7:10: destinations[0].url: must be an http(s) URL such as "
        "https://collect.example.com/events, got 'ftp://collect.example.com/...'",
        "destinations[0].secret: must be printable ASCII without spaces (e.g. from `openssl "
        "rand -hex 32`), got (hidden)",
        "destinations[1].url: must not carry a user or password; send credentials in headers",
        "destinations[1].headers.Connection: Connection is a hop-by-hop header",
        "destinations[1].headers.X-Gateway-Signature: X-Gateway-Signature: X-Gateway-* "
        "headers are the gateway's own",
        "destinations[1].headers.Bad Name: must be a header name",
        "destinations[1].headers.content-type: content-type is set by the gateway",
        "destinations[1].headers.AUTHORIZATION: AUTHORIZATION is given twice",
        "destinations[1].headers.X-Multi: must be printable ASCII text on one line, not empty, "
        "got (hidden)",
        "destinations[1].headers.X-Unset: environment variable NOT_SET_HERE is not set",
        "destinations[2].url: must be an http(s) URL such as https://collect.example.com/events "
        "without a #fragment",
        "destinations[2].batch_size: must be a whole number between 1 and 1000 events",
        "destinations[3].url: is required",
        "destinations[3].headers: must be a mapping of header names to values",
    ]:
        assert any(expected in problem for problem in problems), (expected, joined)
    for secret in ("QUERYTOKEN", "has space", "PASSWORD1", "HEADERVALUE", "forged",
                   "Bearer one", "Bearer two", "close", "text/plain"):
        assert secret not in joined
    # The header-name problems point at the names (their line and column).
    [connection] = [p for p in problems if "headers.Connection" in p]
    line = text.splitlines().index('      Connection: "close"') + 1
    assert connection.startswith(f"config.yaml:{line}:7: ")


# -- the request ------------------------------------------------------------------------------

async def test_the_wire_format_is_the_stored_event_signed_with_context_under_gateway(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory
) -> None:
    settings = one_webhook(tmp_path, receiver.url, env={"HOOK_TOKEN": "tok-123"},
                           headers={"Authorization": "Bearer ${HOOK_TOKEN}", "X-Tenant": "7"})
    client = await start_gateway(settings)
    page = "https://shop.example.com/p?gclid=Cj0-x_1&ttclid=E.C.P.abc"
    await hit(client, "lead-1", dl=page, **{"ud[em]": " Joe@Example.com", "cd[value]": "5"})
    await wait_until(lambda: len(receiver.accepted) == 1)
    [request] = receiver.requests
    assert request.verified
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert headers["X-Gateway-Signature"] == expected
    assert abs(int(headers["X-Gateway-Timestamp"]) - time.time()) < 60
    assert headers["Authorization"] == "Bearer tok-123" and headers["X-Tenant"] == "7"
    assert headers["User-Agent"] == "tag-gateway-webhook/1"
    assert list(request.json) == ["events"]
    [event] = request.events
    assert event["event_name"] == "Lead" and event["event_id"] == "lead-1"
    assert event["event_source_url"] == page and event["action_source"] == "website"
    assert event["user_data"]["em"] in (
        hashlib.sha256(b"joe@example.com").hexdigest(),
        [hashlib.sha256(b"joe@example.com").hexdigest()])
    assert event["user_data"]["client_user_agent"] == UA["User-Agent"]
    assert event["_gateway"] == {"destination": "hook", "pixel_id": PIXEL_A,
                                 "test_event_code": "",
                                 "click_ids": {"gclid": "Cj0-x_1", "ttclid": "E.C.P.abc"},
                                 "cookies": {}, "consent": {}}
    # The element is the stored event itself, plus `_gateway` and nothing else.
    [row] = rows(settings)
    stored = orjson.loads(row["payload"])
    assert {k: v for k, v in event.items() if k != "_gateway"} == stored
    assert b"Joe@Example" not in request.body and b"joe@example" not in request.body
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


async def test_one_request_carries_events_of_several_pixels_each_saying_its_own(
    tmp_path: Path, receiver: FakeReceiver,
) -> None:
    settings = one_webhook(tmp_path, receiver.url, max_in_flight=1)
    outbox = await open_outbox(settings.storage, clock=time.time)
    now = time.time()
    # The context as the pipeline stores it (the engine never reads it): other types' cookies,
    # the visitor's consent signals.
    context = orjson.dumps({"cookies": {"_ga": "GA1.1.1.2"},
                            "consent": {"ad_storage": "denied"},
                            "identities": {"ga4": {"user_id": "abc"}}})
    await outbox.enqueue([
        OutboxEntry("hook", pixel, code, "Lead", f"e{n}", int(now),
                    orjson.dumps({"event_name": "Lead", "event_id": f"e{n}"}),
                    expires_at=now + 3600, context=context if n == 1 else b"")
        for n, (pixel, code) in enumerate([(PIXEL_A, ""), ("2", "TEST1"), ("3", "")])])
    await outbox.close()
    [destination] = settings.destinations
    rows_ = await _claim_all(settings)
    async with aiohttp.ClientSession() as session:
        await WEBHOOK.build(destination).send(session, rows_)
    [request] = receiver.requests
    assert [(e["_gateway"]["pixel_id"], e["_gateway"]["test_event_code"])
            for e in request.events] == [(PIXEL_A, ""), ("2", "TEST1"), ("3", "")]
    second = request.events[1]["_gateway"]
    assert (second["cookies"], second["consent"]) == ({"_ga": "GA1.1.1.2"},
                                                      {"ad_storage": "denied"})
    assert "identities" not in second  # other types' identifiers are theirs
    assert {WEBHOOK.build(destination).batch_key(row) for row in rows_} == {()}


async def _claim_all(settings: Settings) -> list[Any]:
    outbox = await open_outbox(settings.storage, clock=time.time)
    try:
        return list((await outbox.claim("hook", 1000)).rows)
    finally:
        await outbox.close()


def test_the_published_snippet_accepts_our_signature_and_refuses_anything_else() -> None:
    verify = published_verify()
    body = b'{"events":[{"event_name":"Lead","event_id":"e1"}]}'
    now = str(int(time.time()))
    assert sign(SECRET, body) == "sha256=" + hmac.new(SECRET.encode(), body,
                                                      hashlib.sha256).hexdigest()
    assert verify(SECRET, body, sign(SECRET, body), now)
    assert not verify("another-secret", body, sign(SECRET, body), now)
    assert not verify(SECRET, body.replace(b"e1", b"e2"), sign(SECRET, body), now)
    assert not verify(SECRET, body, sign(SECRET, body).upper(), now)
    assert not verify(SECRET, body, "", now)
    assert not verify(SECRET, body, sign(SECRET, body), str(int(time.time()) - 3600))
    assert not verify(SECRET, body, sign(SECRET, body), "soon")
    assert not verify(SECRET, body, sign(SECRET, body), "\u00b2")  # a digit, not ASCII


# -- answers ----------------------------------------------------------------------------------

async def test_a_wrong_secret_fails_verification_pauses_and_a_new_secret_resumes(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, webhook_yaml("hook", receiver.url, secret="not-the-secret"))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    await hit(client)
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    assert [r.verified for r in receiver.requests] == [False]
    assert worker.last_error == "HTTP 401: invalid signature"
    assert "not-the-secret" not in str(client.server.app[appkeys.ALERTS].__dict__)
    config.write_text(text.replace("not-the-secret", SECRET))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r.verified for r in receiver.requests] == [False, True]
    assert receiver.event_ids == ["e1"]


async def test_a_403_pauses_until_a_header_value_changes(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, webhook_yaml("hook", receiver.url,
                                                headers={"Authorization": "Bearer old"}))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    receiver.script((403, {"error": "forbidden"}, {}))
    await hit(client)
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["pending"])
    config.write_text(text.replace("Bearer old", "Bearer new"))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r.headers["Authorization"] for r in receiver.requests] == ["Bearer old",
                                                                       "Bearer new"]


async def test_server_errors_are_retried_until_delivered(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url)
    receiver.script((500, {"error": "oops"}, {}), (503, b"", {}), (408, b"", {}))
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert len(receiver.requests) == 4 and receiver.event_ids == ["e1"]
    assert [r["attempts"] for r in rows(settings)] == [4]


async def test_a_timeout_is_retried(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url, timeout=0.2)
    receiver.hold = asyncio.Event()
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: "no answer within 0.2s" in str(rows(settings)[0]["last_error"]))
    assert rows(settings)[0]["state"] in ("pending", "inflight")
    receiver.hold.set()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


async def test_a_connection_failure_is_retried_and_says_so_without_the_query(
    tmp_path: Path, start_gateway: GatewayFactory,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = one_webhook(tmp_path, f"http://127.0.0.1:{port}/hook?token=QUERYTOKEN")
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: rows(settings)[0]["attempts"] >= 2)
    [row] = rows(settings)
    assert row["state"] in ("pending", "inflight")
    assert "connection failed" in row["last_error"] and "QUERYTOKEN" not in row["last_error"]


async def test_a_rate_limit_holds_the_destination_back_for_retry_after(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url)
    receiver.script((429, {"error": "slow down"}, {"Retry-After": "120"}))
    client = await start_gateway(settings)
    before = time.time()
    await hit(client)
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "backoff")
    await wait_until(lambda: rows(settings)[0]["state"] == "pending")
    [row] = rows(settings)
    assert row["last_error"] == "HTTP 429: slow down"
    assert before + 119 <= row["available_at"] <= time.time() + 121
    assert worker.state == "backoff" and len(receiver.requests) == 1


def test_retry_after_is_honoured_within_bounds() -> None:
    now = 1_800_000_000.0
    assert retry_after("30", now) == 30
    assert retry_after("999999", now) == 3600  # bounded
    assert retry_after(None, now) is None and retry_after("soon", now) is None
    date = "Fri, 15 Jan 2027 08:00:45 GMT"
    from email.utils import parsedate_to_datetime
    assert retry_after(date, parsedate_to_datetime(date).timestamp() - 45) == 45
    assert retry_after(date, parsedate_to_datetime(date).timestamp() + 45) == 0
    limited = classify(429, "", None)
    assert isinstance(limited, RateLimited) and limited.min_delay == 60
    assert classify(429, "", 5).min_delay == 5  # type: ignore[attr-defined]
    assert classify(503, "", 90).min_delay == 90  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "kind"), [
    (400, Permanent), (409, Permanent), (413, Permanent), (422, Permanent),
    (401, TokenRejected), (403, TokenRejected), (429, RateLimited),
    (500, Retryable), (502, Retryable), (503, Retryable), (408, Retryable),
    (404, Retryable), (405, Retryable), (410, Retryable), (301, Retryable), (307, Retryable),
])
def test_each_answer_is_classified(status: int, kind: type[Exception]) -> None:
    error = classify(status, "why", None)
    assert type(error) is kind
    assert error.reason.startswith(f"HTTP {status}")
    if status in (404, 405, 410) or status < 400:
        assert error.min_delay == 300 and "check url" in error.reason  # type: ignore[attr-defined]


async def test_a_refused_event_is_bisected_out_and_dead_lettered_with_the_answer(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url, max_in_flight=1)
    outbox = await open_outbox(settings.storage, clock=time.time)
    now = time.time()
    await outbox.enqueue([
        OutboxEntry("hook", PIXEL_A, "", "Purchase", f"e{n}", int(now),
                    orjson.dumps({"event_name": "Purchase", "event_id": f"e{n}",
                                  "user_data": {"client_ip_address": "203.0.113.7"}}),
                    expires_at=now + 3600)
        for n in range(8)])
    await outbox.close()
    receiver.refuse = {"e5"}
    await start_gateway(settings)
    await wait_until(lambda: sorted(receiver.event_ids) == [f"e{n}" for n in range(8)
                                                            if n != 5])
    await wait_until(lambda: sorted({r["state"] for r in rows(settings)}) == ["dead",
                                                                               "delivered"])
    assert len(receiver.requests[0].events) == 8  # one request first, then halves
    assert len(receiver.requests) <= 1 + 2 * 3
    [dead] = [r for r in rows(settings) if r["state"] == "dead"]
    assert (dead["event_id"], dead["reason"]) == ("e5", "invalid")
    assert dead["last_error"] == "HTTP 422: event e5 refused: custom_data.value must be a number"


async def test_the_answer_excerpt_is_short_and_scrubbed_of_secrets_and_personal_data(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = one_webhook(tmp_path, receiver.url + "?k=QUERYTOKEN",
                           headers={"Authorization": "Bearer HEADERTOKEN"})
    client = await start_gateway(settings)
    echoed = (f"bad request\n\tsecret={SECRET} auth=Bearer HEADERTOKEN q=k=QUERYTOKEN "
              f"ua={UA['User-Agent']} ip=127.0.0.1 " + "x" * 500)
    receiver.script((400, echoed.encode(), {"Content-Type": "text/plain"}))
    await hit(client)
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dead"])
    [row] = rows(settings)
    reason = row["last_error"]
    assert reason.startswith("HTTP 400: bad request secret=*** auth=*** q=*** ua=*** "
                             "ip=*** xxx")
    assert len(reason) <= len("HTTP 400: ") + 200 and reason.endswith("...")
    assert "\n" not in reason and "\t" not in reason
    for leaked in (SECRET, "HEADERTOKEN", "QUERYTOKEN", "Mozilla", "127.0.0.1"):
        assert leaked not in reason and leaked not in caplog.text.replace("127.0.0.1:", "")


def test_an_excerpt_prefers_a_json_message_and_names_binary_answers_by_size() -> None:
    assert excerpt(b'{"error": {"message": "value must be a number"}}',
                   "application/json", []) == "value must be a number"
    assert excerpt(b'{"detail": "nope", "message": ""}', "application/problem+json", []) \
        == "nope"
    assert excerpt(b"\x89PNG....", "image/png", []) == "(8 bytes of image/png)"
    assert excerpt(b"  ", "text/plain", []) == ""


async def test_a_redirect_is_not_followed_and_waited_out(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url.replace("/hook", "/moved"))
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: rows(settings)[0]["state"] == "pending"
                     and rows(settings)[0]["attempts"] == 1)
    [row] = rows(settings)
    assert "redirect, which is not followed; check url" in row["last_error"]
    assert row["available_at"] >= time.time() + 290
    assert [r.verified for r in receiver.requests] == [False]  # only /moved, never /hook


async def test_a_wrong_path_is_waited_out_not_dead_lettered(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
) -> None:
    settings = one_webhook(tmp_path, receiver.url.replace("/hook", "/nowhere"))
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: rows(settings)[0]["attempts"] == 1
                     and rows(settings)[0]["state"] == "pending")
    [row] = rows(settings)
    assert row["last_error"].startswith("HTTP 404") and "check url" in row["last_error"]


# -- dry run, and one hit to two types ---------------------------------------------------------

async def test_without_a_secret_it_runs_dry(
    tmp_path: Path, receiver: FakeReceiver, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = one_webhook(tmp_path, receiver.url + "?k=QUERYTOKEN", secret="")
    client = await start_gateway(settings)
    await hit(client)
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    host = receiver.url.rsplit("/", 1)[0]
    assert (f"dry run (no secret): destination hook would POST 1 events (Lead x1) to "
            f"{host}/..., signed") in caplog.text
    assert "QUERYTOKEN" not in caplog.text
    assert receiver.requests == []


async def test_one_hit_reaches_meta_and_the_webhook_with_the_same_event_id(
    tmp_path: Path, receiver: FakeReceiver, fake_graph: FakeGraph,
    start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        webhook_yaml("hook", receiver.url)), env={})
    client = await start_gateway(settings)
    await hit(client, "purchase-77", dl="https://shop.example.com/done",
              ev="Purchase", **{"cd[value]": "12.5", "cd[currency]": "EUR",
                                "ud[em]": "joe@example.com"})
    [meta_event] = await fake_graph.wait_for_events(1)
    await wait_until(lambda: len(receiver.accepted) == 1)
    [hook_event] = receiver.accepted[0].events
    assert meta_event["event_id"] == hook_event["event_id"] == "purchase-77"
    assert meta_event["event_name"] == hook_event["event_name"] == "Purchase"
    assert meta_event["user_data"]["em"] == hook_event["user_data"]["em"]
    assert "_gateway" not in meta_event
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings))
                     == [("hook", "delivered"), ("meta", "delivered")])
