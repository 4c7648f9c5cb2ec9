"""`type: tiktok` end to end: hits and server events through a real gateway and SQLite outbox to a
local fake of TikTok's Events API 2.0 (fake_tiktok.py); plus the type's pieces on their own
(TikTok's hashes, the `_ttp` cookie, the event-name table, the answer classification)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import appkeys
from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.destinations.tiktok import TIKTOK, TikTokOptions
from gateway.destinations.tiktok.identity import identities, mint_ttp, valid_ttp
from gateway.destinations.tiktok.sender import classify
from gateway.destinations.tiktok.wire import EVENT_NAMES, tiktok_event
from gateway.errors import ConfigError, Permanent, RateLimited, Retryable, TokenRejected

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
from .fake_tiktok import TRACK_PATH, FakeTikTok

PIXEL_CODE = "CTESTPIXEL0123456789"
TOKEN = "TT-TOKEN-tiktok"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
TTP = "01K0T8BYGJH63785W68YS5NN1R_.tt.1"
MINTED = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}_\.tt\.1")
BACKEND_KEY = "sk-test-backend-0123456789abcdef"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def fake_tiktok(aiohttp_server: Any) -> FakeTikTok:
    fake = FakeTikTok(TOKEN)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def tiktok_yaml(name: str, api_url: str, **fields: Any) -> str:
    return type_yaml(name, **{"type": "tiktok", "pixel_code": PIXEL_CODE,
                              "access_token": TOKEN, "api_url": api_url, **fields})


def backend_key_yaml() -> str:
    return ("access_keys:\n  - name: backend\n"
            f"    sha256: {sha256(BACKEND_KEY)}\n    pixels: [\"{PIXEL_A}\"]\n")


async def hit(client: Any, name: str = "PageView", *, cookie: str = "",
              **params: str) -> Any:
    params.setdefault("dl", "https://shop.example.com/")
    headers = {"User-Agent": UA, "Host": "www.shop.example.com"}
    if cookie:
        headers["Cookie"] = cookie
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": name, **params},
                                headers=headers)
    assert response.status == 200, await response.text()
    return response


# -- the wire format ---------------------------------------------------------------------------
async def test_a_purchase_hit_reaches_tiktok_in_its_events_api_shape(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml(
        "tt", fake_tiktok.url, test_event_code="TEST12345")), env={})
    client = await start_gateway(settings)
    response = await hit(
        client, "Purchase", cookie=f"session=x; _ttp={TTP}", eid="order-1",
        dl="https://shop.example.com/thanks?utm_source=tt&ttclid=E.C.P.abc123",
        rl="https://www.tiktok.com/",
        **{"ud[em]": " Joe@Example.com ", "ud[ph]": "+1 (213) 373-4253",
           "ud[external_id]": " User-7 ", "cd[value]": "42.5", "cd[currency]": "eur",
           "cd[content_type]": "product", "cd[order_id]": "A-1",
           "cd[contents]": '[{"id": "sku-1", "quantity": 2, "item_price": 21.25}]'})
    assert response.cookies["_ttp"].value == TTP  # set again: its lifetime renewed
    assert response.cookies["_ttp"]["domain"] == "example.com"
    [request] = await fake_tiktok.wait_for_requests(1)
    assert request.path == TRACK_PATH
    assert request.headers["Access-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert request.query == {}  # the token travels in the header only
    [event] = request.events
    assert request.body == {"event_source": "web", "event_source_id": PIXEL_CODE,
                            "test_event_code": "TEST12345", "data": [event]}
    assert event.pop("event_time") == pytest.approx(time.time(), abs=60)
    assert event == {
        "event": "Purchase",
        "event_id": "order-1",
        "user": {
            # TikTok's normalization: trimmed lowercase e-mail; E.164 phone WITH its '+'
            # (TikTok's documented example number +12133734253); external_id trimmed, lowered.
            "email": sha256("joe@example.com"),
            "phone": sha256("+12133734253"),
            "external_id": sha256("user-7"),
            "ttclid": "E.C.P.abc123",
            "ttp": TTP,
            "ip": "127.0.0.1",
            "user_agent": UA,
        },
        "page": {"url": "https://shop.example.com/thanks?utm_source=tt&ttclid=E.C.P.abc123",
                 "referrer": "https://www.tiktok.com/"},
        "properties": {"value": 42.5, "currency": "EUR", "content_type": "product",
                       "order_id": "A-1",
                       "contents": [{"content_id": "sku-1", "quantity": 2, "price": 21.25}]},
    }
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    stored = " ".join(str(r["context"]) + str(r["payload"]) for r in rows(settings))
    assert "oe@example" not in stored.lower() and "2133734253" not in stored  # never raw


async def test_metas_event_names_become_tiktoks_and_custom_ones_pass_through(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml("tt", fake_tiktok.url)),
                              env={})
    client = await start_gateway(settings)
    for name in ("PageView", "AddToCart", "CompleteRegistration", "SpinTheWheel"):
        await hit(client, name, eid=name)
    events = await fake_tiktok.wait_for_events(4)
    assert sorted((e["event_id"], e["event"]) for e in events) == [
        ("AddToCart", "AddToCart"), ("CompleteRegistration", "CompleteRegistration"),
        ("PageView", "Pageview"), ("SpinTheWheel", "SpinTheWheel")]


def test_the_event_name_table_covers_metas_standard_events() -> None:
    assert EVENT_NAMES["PageView"] == "Pageview"
    for name in ("Purchase", "AddToCart", "ViewContent", "Lead", "CompleteRegistration",
                 "InitiateCheckout", "Search", "AddPaymentInfo", "AddToWishlist", "Contact",
                 "Subscribe", "StartTrial"):
        assert EVENT_NAMES[name] == name  # TikTok's standard events carry Meta's names
    event = tiktok_event({"event_name": "Donate", "event_time": 1_800_000_000}, {})
    assert event == {"event": "Donate", "event_time": 1_800_000_000}


def test_properties_from_content_ids_and_search() -> None:
    event = tiktok_event({
        "event_name": "Search", "event_time": 1_800_000_000, "event_id": "s1",
        "custom_data": {"content_ids": ["a", 7], "search_string": "red shoes",
                        "value": "12", "currency": "usd"},
    }, {})
    assert event["properties"] == {"currency": "USD", "query": "red shoes",
                                   "content_type": "product",
                                   "contents": [{"content_id": "a"}, {"content_id": "7"}]}
    one = tiktok_event({"event_name": "ViewContent", "event_time": 1, "custom_data": {
        "content_ids": ["sku"], "content_name": "Shirt", "content_category": "Tops",
        "content_type": "product_group"}}, {})
    assert one["properties"] == {"content_type": "product_group", "contents": [
        {"content_id": "sku", "content_name": "Shirt", "content_category": "Tops"}]}


# -- identity: TikTok's hashes and the _ttp cookie -----------------------------------------------
def test_identities_are_hashed_tiktoks_way_and_never_raw() -> None:
    found = identities({"em": ["A@B.co ", "a@b.co"], "ph": "(213) 373-4253",
                        "external_id": 12345, "fn": "Joe"}, "us")
    assert found == {"email": [sha256("a@b.co")], "phone": sha256("+12133734253"),
                     "external_id": sha256("12345")}
    # the event's own country decides a national number's calling code
    assert identities({"ph": "06 12 34 56 78", "country": "France"}, "us") == {
        "phone": sha256("+33612345678")}
    # an international number keeps its country; no '+' is ever lost or doubled
    assert identities({"ph": "0044 20 7946 0018"}, None) == {"phone": sha256("+442079460018")}
    # already hashed by the sender: passed through (lowercased), not hashed again
    hashed = sha256("+16505551212").upper()
    assert identities({"ph": hashed, "em": "not an email"}, None) == {"phone": hashed.lower()}
    assert identities({"ph": hashed + ".AbC_1"}, None) == {"phone": hashed.lower()}
    assert identities({}, None) == {}


def test_ttp_values_kept_or_minted_in_the_pixels_form() -> None:
    now = 1_800_000_000.123
    minted = mint_ttp(now, 1)
    assert MINTED.fullmatch(minted) and minted != mint_ttp(now, 1)
    # the ULID's first 10 characters are the creation time in milliseconds
    ms = 0
    for char in minted[:10]:
        ms = ms * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".index(char)
    assert ms == int(now * 1000)
    assert mint_ttp(now, 2).endswith("_.tt.2")
    assert valid_ttp(TTP) and valid_ttp("2F7h37YkS1j57AYSKTI7IHhJPYH")  # today's, older form
    assert not valid_ttp("short") and not valid_ttp("x" * 20 + ";evil") and not valid_ttp("")
    kept = TIKTOK.first_party_cookies({"_ttp": TTP}, now=now, labels=1, click_ids={})
    assert kept == {"_ttp": TTP}
    fresh = TIKTOK.first_party_cookies({"_ttp": "bad value"}, now=now, labels=1,
                                       click_ids={"ttclid": "E.C.P.x"})
    assert MINTED.fullmatch(fresh["_ttp"])
    assert TIKTOK.cookie_names == frozenset({"_ttp"})
    assert TIKTOK.default_consent == "ads"


async def test_a_visitor_without_ttp_gets_one_minted_and_sent(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml("tt", fake_tiktok.url)),
                              env={})
    client = await start_gateway(settings)
    first = await hit(client, eid="new")
    minted = first.cookies["_ttp"].value
    assert MINTED.fullmatch(minted)
    assert int(first.cookies["_ttp"]["max-age"]) > 0
    replaced = await hit(client, eid="forged", cookie='_ttp="a b;c"')
    assert MINTED.fullmatch(replaced.cookies["_ttp"].value)
    events = await fake_tiktok.wait_for_events(2)
    assert {e["event_id"]: e["user"]["ttp"] for e in events} == {
        "new": minted, "forged": replaced.cookies["_ttp"].value}


# -- with Meta, and server events --------------------------------------------------------------
async def test_the_same_hit_reaches_meta_and_tiktok_with_one_event_id(
    tmp_path: Path, fake_tiktok: FakeTikTok, fake_graph: FakeGraph,
    start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        tiktok_yaml("tt", fake_tiktok.url)), env={})
    client = await start_gateway(settings)
    await hit(client, "Lead", eid="lead-1",
              **{"ud[em]": "Joe@Example.com", "ud[ph]": "+1 213 373 4253"})
    [meta_event] = await fake_graph.wait_for_events(1)
    [tiktok_event_] = await fake_tiktok.wait_for_events(1)
    assert meta_event["event_id"] == tiktok_event_["event_id"] == "lead-1"
    assert meta_event["event_name"] == tiktok_event_["event"] == "Lead"
    # the e-mail is normalized alike; the phone is not (Meta: digits; TikTok: E.164 with '+')
    assert meta_event["user_data"]["em"] == tiktok_event_["user"]["email"]
    assert meta_event["user_data"]["ph"] == sha256("12133734253")
    assert tiktok_event_["user"]["phone"] == sha256("+12133734253")
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings))
                     == [("meta", "delivered"), ("tt", "delivered")])


async def test_a_server_event_already_hashed_passes_its_hashes_through(
    tmp_path: Path, fake_tiktok: FakeTikTok, fake_graph: FakeGraph,
    start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        tiktok_yaml("tt", fake_tiktok.url), extra=backend_key_yaml()), env={})
    client = await start_gateway(settings)
    event = {"event_name": "Purchase", "event_time": int(time.time()) - 60,
             "event_id": "srv-1", "action_source": "website",
             "event_source_url": "https://shop.example.com/thanks",
             "user_data": {"em": sha256("joe@example.com"), "ph": sha256("+12133734253"),
                           "external_id": sha256("user-7"),
                           "client_ip_address": "203.0.113.9", "client_user_agent": UA},
             "custom_data": {"value": 10, "currency": "USD"}}
    response = await client.post(f"/capi/{PIXEL_A}/events", data=orjson.dumps(
        {"data": [event], "accessKey": BACKEND_KEY}),
        headers={"Content-Type": "application/json"})
    assert response.status == 202, await response.text()
    [sent] = await fake_tiktok.wait_for_events(1)
    assert sent["user"] == {"email": sha256("joe@example.com"),
                            "phone": sha256("+12133734253"),
                            "external_id": sha256("user-7"),
                            "ip": "203.0.113.9", "user_agent": UA}
    assert sent["page"] == {"url": "https://shop.example.com/thanks"}


async def test_a_test_of_metas_setup_never_becomes_a_tiktok_conversion(
    tmp_path: Path, fake_tiktok: FakeTikTok, fake_graph: FakeGraph,
    start_gateway: GatewayFactory,
) -> None:
    # Meta's test_event_code means nothing to TikTok, which would record a real conversion:
    # the event goes to Meta only, and TikTok's share is counted as withheld.
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        tiktok_yaml("tt", fake_tiktok.url), extra=backend_key_yaml()), env={})
    client = await start_gateway(settings)
    event = {"event_name": "Purchase", "event_time": int(time.time()) - 60,
             "event_id": "srv-test", "action_source": "website",
             "event_source_url": "https://shop.example.com/thanks",
             "user_data": {"em": sha256("joe@example.com"), "client_ip_address": "203.0.113.9",
                           "client_user_agent": UA},
             "custom_data": {"value": 10, "currency": "USD"}}
    response = await client.post(f"/capi/{PIXEL_A}/events", data=orjson.dumps(
        {"data": [event], "accessKey": BACKEND_KEY, "test_event_code": "TEST_META"}),
        headers={"Content-Type": "application/json"})
    assert response.status == 202, await response.text()
    [meta] = await fake_graph.wait_for_requests(1)
    assert meta.body["test_event_code"] == "TEST_META"
    assert fake_tiktok.requests == []
    assert [r["destination"] for r in rows(settings)] == ["meta"]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_events_withheld_total{destination="tt"} 1.0' in metrics


async def test_an_event_tiktok_cannot_take_still_reaches_meta(
    tmp_path: Path, fake_tiktok: FakeTikTok, fake_graph: FakeGraph,
    start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        tiktok_yaml("tt", fake_tiktok.url), extra=backend_key_yaml()), env={})
    client = await start_gateway(settings)
    store = {"event_name": "Purchase", "event_time": int(time.time()) - 20 * 86400,
             "event_id": "store-1", "action_source": "physical_store",
             "user_data": {"em": sha256("joe@example.com")},
             "custom_data": {"value": 10, "currency": "USD"}}
    response = await client.post(f"/capi/{PIXEL_A}/events", data=orjson.dumps(
        {"data": [store], "accessKey": BACKEND_KEY}),
        headers={"Content-Type": "application/json"})
    assert response.status == 202, await response.text()
    await fake_graph.wait_for_events(1)
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings))
                     == [("meta", "delivered"), ("tt", "invalid")])
    [tt] = [r for r in rows(settings) if r["destination"] == "tt"]
    assert "action_source app or physical_store" in tt["last_error"]
    assert "more than 7 days old" in tt["last_error"]
    assert fake_tiktok.requests == []


def test_validation_names_fields_not_values() -> None:
    now = 1_800_000_000.0
    good = {"event_name": "Purchase", "event_time": now - 10, "action_source": "website",
            "custom_data": {"value": 1.5, "currency": "EUR"}}
    assert TIKTOK.validate(good, now) == []
    assert TIKTOK.validate({"event_name": "Lead", "event_time": now}, now) == []  # minimal
    bad = {"event_name": "", "event_time": now + 3600,
           "custom_data": {"value": "lots", "currency": "euro"}}
    assert TIKTOK.validate(bad, now) == [
        "event_name is required", "event_time is in the future",
        "custom_data.value must be a number for TikTok",
        "custom_data.currency must be a 3-letter ISO 4217 code for TikTok"]
    assert TIKTOK.expires(good) == now - 10 + 7 * 86400


# -- TikTok's answers ---------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "body", "kind"), [
    (200, {"code": 0, "message": "OK"}, None),
    (200, {"code": 40105, "message": "Access token is incorrect or has been revoked"},
     TokenRejected),
    (200, {"code": 40104, "message": "The access token is empty"}, TokenRejected),
    (200, {"code": 40001, "message": "No permission to operate"}, TokenRejected),
    (200, {"code": 40100, "message": "Requests made too frequently"}, RateLimited),
    (200, {"code": 40016, "message": "App level rate limit"}, RateLimited),
    (200, {"code": 40002, "message": "Invalid parameter"}, Permanent),
    (200, {"code": 41234, "message": "Something about the event"}, Permanent),
    (200, {"code": 50000, "message": "System error"}, Retryable),
    (200, {"code": 50002, "message": "Error processing request"}, Retryable),
    (200, {"code": 60001, "message": "The system is in maintenance"}, Retryable),
    (429, b"", RateLimited),
    (503, b"<html>busy</html>", Retryable),
    (302, b"", Retryable),
    (404, b"<html>not found</html>", Retryable),
    (200, b"<html>a proxy page</html>", Retryable),
])
def test_tiktoks_answers_are_classified(status: int, body: dict[str, Any] | bytes,
                                        kind: type[Exception] | None) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    error = classify(status, raw, TOKEN)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    if isinstance(body, dict):
        assert f"code {body['code']}" in str(error)
    if kind is RateLimited:
        assert isinstance(error, RateLimited) and error.min_delay >= 60
    if status in (302, 404) or (isinstance(body, bytes) and status == 200):
        assert isinstance(error, Retryable) and error.min_delay >= 300 and "api_url" in str(error)


def test_reasons_carry_no_token_email_or_phone() -> None:
    raw = orjson.dumps({"code": 40002, "request_id": "R1", "message":
                        f"bad token {TOKEN}; user joe@example.com; phone +1 213 373 4253"})
    reason = str(classify(200, raw, TOKEN))
    assert reason.startswith("HTTP 200, code 40002: ") and "(request_id R1)" in reason
    assert TOKEN not in reason and "joe@" not in reason and "373" not in reason


async def test_transient_errors_are_retried_until_delivered(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml("tt", fake_tiktok.url)),
                              env={})
    fake_tiktok.answer(50000, "System error")
    fake_tiktok.script((502, b"<html>bad gateway</html>"))
    client = await start_gateway(settings)
    await hit(client, "Purchase", eid="retry-me")
    await fake_tiktok.wait_for_events(1)
    assert [r.events[0]["event_id"] for r in fake_tiktok.requests] == ["retry-me"] * 3
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


async def test_a_rate_limit_backs_off_the_whole_destination(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml("tt", fake_tiktok.url)),
                              env={})
    fake_tiktok.answer(40100, "Requests made too frequently")
    client = await start_gateway(settings)
    await hit(client, eid="first")
    await fake_tiktok.wait_for_requests(1)
    await wait_until(lambda: rows(settings)[0]["state"] == "pending")
    await hit(client, eid="second")
    status = await (await client.get("/status")).json()
    [tt] = status["destinations"]
    assert tt["state"] == "backoff" and "code 40100" in tt["last_error"]
    assert tt["type"] == "tiktok" and PIXEL_CODE in tt["sends_to"]
    assert TOKEN not in str(status)
    await asyncio.sleep(0.2)  # time enough for a relay ignoring the backoff to send again
    assert len(fake_tiktok.requests) == 1


async def test_a_refused_token_pauses_until_a_new_one_is_configured(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, tiktok_yaml("tt", fake_tiktok.url,
                                               access_token="OLD-TOKEN"))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    await hit(client, "Purchase", eid="waits")
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    # Kept, untried: given back right after the pause.
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["pending"])
    assert "TikTok refused the access token (HTTP 200, code 40105" in caplog.text
    assert "OLD-TOKEN" not in caplog.text
    config.write_text(text.replace("OLD-TOKEN", TOKEN))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: worker.state == "active" and len(fake_tiktok.accepted) == 1)
    assert [r.headers["Access-Token"] for r in fake_tiktok.requests] == ["OLD-TOKEN", TOKEN]
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


async def test_a_refused_event_is_bisected_out_and_dead_lettered_with_tiktoks_message(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml(
        "tt", fake_tiktok.url, linger_ms=200, retry_base_seconds=60,
        retry_max_seconds=60)), env={})
    fake_tiktok.refuse = {"poison"}
    client = await start_gateway(settings)
    await asyncio.gather(*(hit(client, "AddToCart", eid=eid)
                           for eid in ("g1", "g2", "poison", "g3")))
    await wait_until(lambda: sorted(e["event_id"] for e in fake_tiktok.events)
                     == ["g1", "g2", "g3"])
    await wait_until(lambda: sorted(r["state"] for r in rows(settings))
                     == ["dead", "delivered", "delivered", "delivered"])
    [dead] = [r for r in rows(settings) if r["state"] == "dead"]
    assert (dead["event_id"], dead["reason"]) == ("poison", "invalid")
    assert "code 40002" in dead["last_error"] and "currency: invalid value" in dead["last_error"]
    assert "joe@example.com" not in dead["last_error"] and "(email)" in dead["last_error"]


async def test_without_an_access_token_it_runs_dry(
    tmp_path: Path, fake_tiktok: FakeTikTok, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = parse_settings(settings_yaml(tmp_path, tiktok_yaml(
        "tt", fake_tiktok.url, access_token="")), env={})
    client = await start_gateway(settings)
    await hit(client, "Purchase")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    assert (f"dry run (no access_token): destination tt would POST 1 events (Purchase x1) "
            f"to {fake_tiktok.url}{TRACK_PATH} for pixel {PIXEL_CODE}") in caplog.text
    assert fake_tiktok.requests == []


# -- configuration ------------------------------------------------------------------------------
def test_options_are_read_with_located_errors_and_the_token_hidden(tmp_path: Path) -> None:
    good = settings_yaml(tmp_path, tiktok_yaml("tt", "https://business-api.tiktok.com/"))
    [destination] = parse_settings(good, env={}).destinations
    assert destination.options == TikTokOptions(pixel_code=PIXEL_CODE, access_token=TOKEN,
                                                api_url="https://business-api.tiktok.com")
    assert destination.batch_size == 1000 and destination.accepts is None
    assert TOKEN not in repr(destination)
    built = TYPES["tiktok"].build(destination)
    assert built.endpoint == "https://business-api.tiktok.com/open_api/v1.3/event/track/"
    assert built.target == f"pixel {PIXEL_CODE}"
    assert TikTokOptions().api_url == "https://business-api.tiktok.com"
    bad = settings_yaml(tmp_path, tiktok_yaml(
        "tt", "https://business-api.tiktok.com/open_api", pixel_code="no way",
        access_token="secret token!", test_event_code="TEST 1", batch_size=1001, pixel_id="1"))
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, filename="config.yaml", env={})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "destinations[0].pixel_code: must be the pixel code from TikTok Events Manager" \
        in problems and "got 'no way'" in problems
    assert "destinations[0].access_token: must be an Events API access token" in problems
    assert "destinations[0].api_url: must be an http(s) base URL without a path" in problems
    assert "destinations[0].test_event_code: must be a code from" in problems
    assert ("destinations[0].batch_size: must be a whole number between 1 and 1000 events "
            "(TikTok's limit is 1000), got 1001") in problems
    assert "destinations[0].pixel_id: unknown key" in problems
    assert "secret token" not in problems
    missing = settings_yaml(tmp_path, "  - name: tt\n    type: tiktok")
    with pytest.raises(ConfigError) as caught:
        parse_settings(missing, filename="config.yaml", env={})
    assert [str(p) for p in caught.value.problems] == [
        "config.yaml:5:5: destinations[0].pixel_code: is required"]


def test_metas_hashes_fill_in_where_tiktok_normalizes_alike() -> None:
    digest = sha256("joe@example.com")
    event = tiktok_event({"event_name": "Lead", "event_time": 1, "user_data": {
        "em": [digest + ".AbC_1", "not-a-hash"], "external_id": sha256("u1"),
        "ph": sha256("12133734253")}}, {"identities": {"tiktok": {"external_id": "own"}}})
    # e-mail from Meta (appendix dropped); the type's own external_id wins; Meta's phone hash
    # (digits without '+') is not TikTok's, so it is never sent as TikTok's phone
    assert event["user"] == {"email": [digest], "external_id": "own"}


@pytest.mark.parametrize("source", [["app"], {"a": 1}, 5, None])
def test_an_action_source_that_is_no_text_never_breaks_validation(source: Any) -> None:
    """A rule may set action_source to anything; TikTok's check must not raise on it."""
    from gateway.destinations.tiktok.validate import validate_event

    now = time.time()
    assert validate_event({"event_name": "Lead", "event_time": now, "action_source": source},
                          now) == []
