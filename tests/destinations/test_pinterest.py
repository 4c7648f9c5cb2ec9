"""`type: pinterest` end to end: hits and server events through the real gateway and outbox to a
local Pinterest Conversions API (fake_pinterest.py): the wire format, the `_epik` cookie, test
mode, each class of answer, dry run, and the options' located errors."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway import appkeys
from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.destinations.pinterest import (
    EVENT_NAMES,
    PINTEREST,
    classify,
    event_name,
    validate_event,
    wire_event,
)
from gateway.errors import ConfigError, Permanent, RateLimited, Retryable, TokenRejected
from gateway.storage import ClaimedRow

from ..conftest import (
    PIXEL_A,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    stored_rows,
    type_yaml,
    wait_until,
)
from ..conftest import outbox_rows as rows
from ..fake_graph import FakeGraph
from .fake_pinterest import FakePinterest

TOKEN = "pina_TEST-TOKEN"
ACCOUNT = "549755885175"
UA = "Mozilla/5.0 (X11; Linux x86_64)"
PAGE = "https://shop.example.com/p/1"
EPIK = "dj0yJnU9b2JDcFFHekV4SHJNcmVrbFBkUEdqakh0akdUT1VjVVUmcD0yJm49cnNBQ3F2Q2dOVDBXWWhkWklr"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def fake(aiohttp_server: Any) -> FakePinterest:
    fake = FakePinterest(TOKEN)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def pinterest_yaml(name: str, url: str, **fields: Any) -> str:
    return type_yaml(name, **{"type": "pinterest", "ad_account_id": ACCOUNT,
                              "access_token": TOKEN, "api_url": url, **fields})


def settings_for(tmp_path: Path, url: str, **fields: Any) -> Any:
    return parse_settings(settings_yaml(tmp_path, pinterest_yaml("pin", url, **fields)), env={})


async def hit(client: Any, **params: str) -> Any:
    cookie = params.pop("cookie", "")
    headers = {"User-Agent": UA, "Host": "www.shop.example"}
    if cookie:
        headers["Cookie"] = cookie
    response = await client.get("/tr", params={"id": PIXEL_A, "dl": PAGE, **params},
                                headers=headers)
    assert response.status == 200, await response.text()
    return response


# -- options ---------------------------------------------------------------------------------

def test_the_type_is_registered_with_pinterests_limits() -> None:
    assert TYPES["pinterest"] is PINTEREST
    assert PINTEREST.max_batch_size == 1000 and PINTEREST.default_consent == "ads"
    assert PINTEREST.cookie_names == frozenset({"_epik"})


def test_options_are_read_with_defaults_and_the_token_hidden(tmp_path: Path) -> None:
    settings = parse_settings(settings_yaml(tmp_path, "\n".join([
        "  - name: pin", "    type: pinterest", f"    ad_account_id: '{ACCOUNT}'",
        f"    access_token: {TOKEN}"])), env={})
    [destination] = settings.destinations
    options = destination.options
    assert (options.ad_account_id, options.test, options.api_url) == (
        ACCOUNT, False, "https://api.pinterest.com")
    assert destination.batch_size == 1000
    assert TOKEN not in repr(destination)
    assert options.missing_credentials == ""
    built = PINTEREST.build(destination)
    assert built.endpoint == f"https://api.pinterest.com/v5/ad_accounts/{ACCOUNT}/events"
    assert built.target == f"ad account {ACCOUNT}"


def test_bad_options_are_located_errors_without_the_secret(tmp_path: Path) -> None:
    text = settings_yaml(tmp_path, "\n".join([
        "  - name: pin", "    type: pinterest", "    ad_account_id: 'act_12'",
        "    access_token: 'secret token!'", "    test: maybe", "    api_url: ftp://x",
        "    batch_size: 1001", "    pixel_id: '1'"]))
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env={})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "config.yaml:7:" in problems and "destinations[0].ad_account_id: must be the ad " \
        "account's numeric id (Ads Manager), got 'act_12'" in problems
    assert "destinations[0].access_token: must be a conversion access token from Ads " \
        "Manager, got (hidden)" in problems
    assert "destinations[0].test: must be true or false, got 'maybe'" in problems
    assert "destinations[0].api_url: must be an http(s) base URL" in problems
    assert "destinations[0].batch_size: must be a whole number between 1 and 1000 events " \
        "(Pinterest's limit is 1000)" in problems
    assert "destinations[0].pixel_id: unknown key" in problems
    assert "secret token" not in problems
    missing = settings_yaml(tmp_path, "  - name: pin\n    type: pinterest")
    with pytest.raises(ConfigError) as caught:
        parse_settings(missing, filename="config.yaml", env={})
    assert any("destinations[0].ad_account_id: is required" in str(p)
               for p in caught.value.problems)


# -- the wire format -------------------------------------------------------------------------

async def test_a_purchase_hit_reaches_pinterest_in_its_wire_format(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url)
    client = await start_gateway(settings)
    before = int(time.time())
    await hit(client, ev="Purchase", eid="order-1", **{
        "dl": f"{PAGE}?utm_source=pinterest&epik={EPIK}",
        "ud[em]": " Joe@Example.COM ", "ud[ph]": "+1 (650) 555-1234", "ud[zp]": "94025-1234",
        "cd[value]": "72.39", "cd[currency]": "usd", "cd[num_items]": "2",
        "cd[content_ids]": '["sku-1", 42]', "cd[order_id]": "A-17",
        "cd[content_type]": "product",
        "cd[contents]": '[{"id": "sku-1", "quantity": 2, "item_price": 36.195, '
                        '"title": "Mug"}]'})
    await wait_until(lambda: len(fake.received()) == 1)
    [request] = fake.requests
    assert request["path"] == f"/v5/ad_accounts/{ACCOUNT}/events"
    assert request["authorization"] == f"Bearer {TOKEN}"
    assert request["query"] == {}  # not a test
    [event] = request["body"]["data"]
    assert before <= event.pop("event_time") <= time.time()
    assert event == {
        "event_name": "checkout",
        "action_source": "web",
        "event_id": "order-1",
        "event_source_url": f"{PAGE}?utm_source=pinterest&epik={EPIK}",
        "user_data": {
            "em": [sha256("joe@example.com")],
            "ph": [sha256("16505551234")],
            "zp": [sha256("94025")],
            "client_ip_address": "127.0.0.1",
            "client_user_agent": UA,
            "click_id": EPIK,
        },
        "custom_data": {
            "currency": "USD", "value": "72.39", "num_items": 2,
            "content_ids": ["sku-1", "42"], "order_id": "A-17",
            # content_type is Meta's: Pinterest refuses properties it does not define.
            "contents": [{"id": "sku-1", "quantity": 2, "item_price": "36.195",
                          "item_name": "Mug"}],
        },
    }
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])


def test_meta_names_map_to_pinterests_and_the_rest_are_custom() -> None:
    assert {name: event_name(name) for name in (
        "PageView", "ViewContent", "AddToCart", "Purchase", "Lead", "CompleteRegistration",
        "Search", "InitiateCheckout", "AddPaymentInfo", "AddToWishlist", "Subscribe",
        "Contact", "StartTrial", "Donate", "MyOwnEvent", "watch_video")} == {
        "PageView": "page_visit", "ViewContent": "view_content", "AddToCart": "add_to_cart",
        "Purchase": "checkout", "Lead": "lead", "CompleteRegistration": "signup",
        "Search": "search", "InitiateCheckout": "initiate_checkout",
        "AddPaymentInfo": "add_payment_info", "AddToWishlist": "add_to_wishlist",
        "Subscribe": "subscribe", "Contact": "custom", "StartTrial": "custom",
        "Donate": "custom", "MyOwnEvent": "custom", "watch_video": "watch_video"}
    assert set(EVENT_NAMES.values()) <= {
        "add_payment_info", "add_to_cart", "add_to_wishlist", "checkout", "initiate_checkout",
        "lead", "page_visit", "search", "signup", "subscribe", "view_category",
        "view_content", "watch_video"}


async def test_several_events_share_one_request_with_mapped_names(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url, linger_ms=200)
    client = await start_gateway(settings)
    for name in ("PageView", "AddToCart", "Search", "MyOwnEvent"):
        await hit(client, ev=name, eid=name, **({"cd[search_string]": "mugs"}
                                                 if name == "Search" else {}))
    await wait_until(lambda: len(fake.received()) == 4)
    events = {e["event_id"]: e for e in fake.received()}
    assert {k: e["event_name"] for k, e in events.items()} == {
        "PageView": "page_visit", "AddToCart": "add_to_cart", "Search": "search",
        "MyOwnEvent": "custom"}
    assert events["Search"]["custom_data"] == {"search_string": "mugs"}
    assert "custom_data" not in events["PageView"]
    assert len(fake.requests) < 4  # batched


def test_a_server_events_fields_are_converted_to_pinterests_types() -> None:
    md5 = "0" * 32
    event = wire_event({
        "event_name": "Lead", "event_time": 1_700_000_000.0, "event_id": 17,
        "action_source": "physical_store",
        "user_data": {"em": [sha256("a@b.co"), sha256("a@b.co") + ".AbC1", md5],
                      "external_id": sha256("u1"), "fbp": "fb.1.1.1", "madid": "x"},
        "custom_data": {"value": 10, "currency": "EUR", "num_items": 3.0,
                        "content_name": "Form", "delivery_category": "home_delivery"},
    }, {"click_ids": {"epik": "abc%2Bd"}, "identities": {"pinterest": {"zp": []}}})
    assert event == {
        "event_name": "lead", "action_source": "offline", "event_time": 1_700_000_000,
        "event_id": "17",
        "user_data": {"em": [sha256("a@b.co")], "external_id": [sha256("u1")],
                      "click_id": "abc+d"},
        "custom_data": {"currency": "EUR", "value": "10", "num_items": 3,
                        "content_name": "Form"},
    }


def test_pinterests_own_zip_rule_is_kept_apart_from_metas() -> None:
    assert PINTEREST.identities({"em": "a@b.co"}, None) == {}
    assert PINTEREST.identities({"zp": "94025"}, None) == {}  # same as Meta's: not stored
    assert PINTEREST.identities({"zp": "94025-1234"}, None) == {}
    assert PINTEREST.identities({"zp": "D-10115"}, None) == {"zp": []}  # letters: none
    assert PINTEREST.identities({"zp": "10 115"}, None) == {}  # Meta's digits too
    assert PINTEREST.identities({"zp": ["SW1A 1AA", "10-115", sha256("x")]}, None) == {
        "zp": [sha256("10115"), sha256("x")]}


def test_validate_names_the_fields_pinterest_requires() -> None:
    now = 1_700_000_000.0
    good = {"event_name": "Lead", "event_time": now - 60, "event_id": "e1",
            "action_source": "website",
            "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": UA}}
    assert validate_event(good, now) == []
    assert validate_event({**good, "user_data": {"em": sha256("a@b.co")}}, now) == []
    assert validate_event({"event_time": now - 8 * 86400, "action_source": "app",
                           "user_data": {"client_ip_address": "203.0.113.9"},
                           "custom_data": {"value": "lots", "currency": "EURO"}}, now) == [
        "event_name is required",
        "action_source app: Pinterest needs app_android or app_ios",
        "event_time is more than 7 days old",
        "event_id is required",
        "user_data needs em, or client_ip_address with client_user_agent",
        "custom_data.value must be a number",
        "custom_data.currency must be a 3-letter ISO 4217 code"]
    assert validate_event({**good, "event_time": now + 3600}, now) == [
        "event_time is in the future"]
    assert PINTEREST.expires(good) == now - 60 + 7 * 86400


# -- the _epik cookie ----------------------------------------------------------------------------

async def test_epik_click_id_sets_the_cookie_which_later_hits_carry(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url)
    client = await start_gateway(settings)
    landing = await hit(client, ev="PageView", eid="p1", dl=f"{PAGE}?epik={EPIK}")
    assert landing.cookies["_epik"].value == EPIK
    assert landing.cookies["_epik"]["domain"] == "shop.example"
    later = await hit(client, ev="AddToCart", eid="c1", cookie=f"_epik={EPIK}; other=1")
    assert later.cookies["_epik"].value == EPIK  # kept and renewed
    broken = await hit(client, ev="AddToCart", eid="c2", cookie="_epik=bad!value")
    assert "_epik" not in broken.cookies  # nothing minted: only Pinterest issues epik values
    newer = await hit(client, ev="PageView", eid="p2", dl=f"{PAGE}?epik=NEW-click_2",
                      cookie=f"_epik={EPIK}")
    assert newer.cookies["_epik"].value == "NEW-click_2"  # a new click wins
    await wait_until(lambda: len(fake.received()) == 4)
    click_ids = {e["event_id"]: e["user_data"].get("click_id") for e in fake.received()}
    assert click_ids == {"p1": EPIK, "c1": EPIK, "c2": None, "p2": "NEW-click_2"}


def test_first_party_cookies_rules() -> None:
    cookies = PINTEREST.first_party_cookies
    assert cookies({}, now=0, labels=1, click_ids={}) == {}
    assert cookies({"_epik": "abc"}, now=0, labels=1, click_ids={}) == {"_epik": "abc"}
    assert cookies({"_epik": "abc"}, now=0, labels=1, click_ids={"epik": "xyz"}) == {
        "_epik": "xyz"}
    assert cookies({"_epik": "a b"}, now=0, labels=1, click_ids={"epik": "x" * 501}) == {}
    # The URL's percent-escapes are decoded (the value Pinterest's tag keeps).
    assert cookies({}, now=0, labels=1, click_ids={"epik": "dj0y%3D%3D"}) == {"_epik": "dj0y=="}
    assert cookies({"_epik": "old"}, now=0, labels=1, click_ids={"epik": "a%3Bb"}) == {
        "_epik": "old"}  # `;` cannot be a cookie value


# -- test mode ---------------------------------------------------------------------------------

async def test_test_mode_sends_test_true(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url, test=True)
    client = await start_gateway(settings)
    await hit(client, ev="Lead", eid="t1")
    await wait_until(lambda: len(fake.received()) == 1)
    assert fake.requests[0]["query"] == {"test": "true"}


async def test_a_server_event_with_a_test_event_code_is_a_pinterest_test(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    key = "sk-test-backend-0123456789abcdef"
    settings = parse_settings(settings_yaml(
        tmp_path, pinterest_yaml("pin", fake.url),
        extra=f"access_keys:\n  - name: backend\n    sha256: {sha256(key)}\n"
              f"    pixels: [\"{PIXEL_A}\"]\n"), env={})
    client = await start_gateway(settings)
    event = {"event_name": "Purchase", "event_time": int(time.time()) - 60,
             "event_id": "srv-1", "action_source": "website",
             "event_source_url": PAGE,
             "user_data": {"em": "joe@example.com", "client_user_agent": UA,
                           "client_ip_address": "203.0.113.9"},
             "custom_data": {"value": 42.5, "currency": "EUR"}}
    for code, event_id in (("TEST123", "srv-test"), (None, "srv-live")):
        body: dict[str, Any] = {"data": [{**event, "event_id": event_id}], "accessKey": key}
        if code:
            body["test_event_code"] = code
        response = await client.post(f"/capi/{PIXEL_A}/events", data=orjson.dumps(body))
        assert response.status in (200, 202), await response.text()
    await wait_until(lambda: len(fake.received()) == 2)
    queries = {r["body"]["data"][0]["event_id"]: r["query"] for r in fake.requests}
    assert queries == {"srv-test": {"test": "true"}, "srv-live": {}}
    [live] = [e for e in fake.received() if e["event_id"] == "srv-live"]
    assert live["user_data"]["em"] == [sha256("joe@example.com")]
    assert live["custom_data"] == {"currency": "EUR", "value": "42.5"}


# -- answers -------------------------------------------------------------------------------------

async def test_a_transient_failure_is_retried(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url)
    client = await start_gateway(settings)
    fake.answers = [(503, {"code": 4197, "message": "The endpoint has been ramped down"}),
                    (500, {})]
    await hit(client, ev="Lead", eid="r1")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r["status"] for r in fake.requests] == [503, 500, 200]


async def test_a_rate_limit_holds_the_whole_destination(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url)
    client = await start_gateway(settings)
    fake.answers = [(429, {"code": 8, "message": "This request exceeded a rate limit."})]
    await hit(client, ev="Lead", eid="rl1")
    [worker] = client.server.app[appkeys.RELAYS]
    # The worker shows "backoff" as soon as the answer is read, before the retry is written.
    await wait_until(lambda: worker.state == "backoff"
                     and rows(settings)[0]["state"] == "pending")
    [row] = rows(settings)
    assert "HTTP 429, code 8" in row["last_error"]
    assert len(fake.requests) == 1


async def test_refused_credentials_pause_until_a_new_token(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, pinterest_yaml("pin", fake.url, access_token="pina_OLD"))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    await hit(client, ev="Lead", eid="a1")
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    assert fake.requests[0]["authorization"] == "Bearer pina_OLD"
    assert "pina_OLD" not in str(worker.paused_reason)
    config.write_text(text.replace("pina_OLD", TOKEN))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert fake.requests[-1]["authorization"] == f"Bearer {TOKEN}"


async def test_a_refused_event_is_found_by_bisecting_and_dead_lettered(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url, linger_ms=200)
    client = await start_gateway(settings)
    fake.failing = {"bad"}
    for event_id in ("g1", "bad", "g2", "g3"):
        await hit(client, ev="Lead", eid=event_id)
    await wait_until(lambda: sorted(r["state"] for r in rows(settings)) == [
        "dead", "delivered", "delivered", "delivered"])
    [dead] = [r for r in rows(settings) if r["state"] == "dead"]
    assert dead["event_id"] == "bad"
    assert "HTTP 422" in dead["last_error"] and "event_time is too old" in dead["last_error"]
    assert 422 in [r["status"] for r in fake.requests]


async def test_a_200_reporting_failed_events_is_bisected_too(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url)
    client = await start_gateway(settings)
    fake.failing, fake.partial_in_200 = {"bad"}, True
    await hit(client, ev="Lead", eid="bad")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dead"])
    assert "1 of 1 events failed; event 0: event_time is too old" in rows(settings)[0][
        "last_error"]


def test_answers_are_classified_and_the_token_never_shows() -> None:
    assert classify(200, b'{"num_events_received":1,"num_events_processed":1,'
                         b'"events":[{"status":"processed"}]}') is None
    assert classify(200, b"") is None
    counts_only = classify(200, b'{"num_events_received":3,"num_events_processed":2}')
    assert isinstance(counts_only, Permanent)
    assert counts_only.reason == "1 not processed of 3 events"
    cases = {
        400: (Permanent, b'{"code":4196,"message":"The request was invalid."}'),
        401: (TokenRejected, b'{"code":2,"message":"Authentication failed."}'),
        403: (TokenRejected, b'{"code":29,"message":"You are not permitted"}'),
        429: (RateLimited, b'{"code":8,"message":"rate limit"}'),
        500: (Retryable, b"oops"), 503: (Retryable, b'{"code":4197,"message":"ramped down"}'),
        404: (Retryable, b"not found"), 302: (Retryable, b""),
    }
    for status, (kind, body) in cases.items():
        error = classify(status, body)
        assert type(error) is kind, status
    rate = classify(429, b"{}", "120")
    assert isinstance(rate, RateLimited) and rate.min_delay == 120
    assert classify(429, b"{}").min_delay == 60  # type: ignore[union-attr]
    assert classify(400, b'{"code":1,"message":"bad"}').reason == "HTTP 400, code 1: bad"  # type: ignore[union-attr]
    echoed = classify(401, b'{"code":2,"message":"token pina_SECRET is invalid"}',
                      token="pina_SECRET")
    assert echoed is not None and "pina_SECRET" not in echoed.reason


# -- dry run, and beside Meta --------------------------------------------------------------------

async def test_without_a_token_it_runs_dry(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(tmp_path, fake.url, access_token="")
    client = await start_gateway(settings)
    await hit(client, ev="Purchase", eid="d1", **{"cd[value]": "1", "cd[currency]": "EUR"})
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    assert ("dry run (no access_token): destination pin would POST 1 events (Purchase x1) to "
            f"{fake.url}/v5/ad_accounts/{ACCOUNT}/events") in caplog.text
    assert fake.requests == []


async def test_the_same_hit_reaches_meta_and_pinterest_with_one_event_id(
    tmp_path: Path, fake: FakePinterest, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        pinterest_yaml("pin", fake.url)), env={})
    client = await start_gateway(settings)
    await hit(client, ev="AddToCart", **{"ud[em]": "joe@example.com"})
    await fake_graph.wait_for_events(1)
    await wait_until(lambda: len(fake.received()) == 1)
    [meta_event] = fake_graph.events
    [pin_event] = fake.received()
    assert meta_event["event_id"] == pin_event["event_id"] and pin_event["event_id"]
    assert (meta_event["event_name"], pin_event["event_name"]) == ("AddToCart", "add_to_cart")
    assert pin_event["user_data"]["em"] == [meta_event["user_data"]["em"]]


# -- check --validate (remotecheck's optional hook) ------------------------------------------------

async def test_stored_events_can_be_validated_with_test_mode(
    tmp_path: Path, fake: FakePinterest, start_gateway: GatewayFactory,
) -> None:
    settings = settings_for(tmp_path, fake.url, access_token="")  # dry: rows kept, none sent
    client = await start_gateway(settings)
    for event_id in ("v1", "v2", "v3"):
        await hit(client, ev="Lead", eid=event_id)
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"] * 3)
    claimed = [ClaimedRow(r.id, r.pixel_id, r.test_event_code, r.event_name, r.event_id,
                          r.attempts, 0.0, r.expires_at, r.request_fields, r.payload or b"",
                          r.context) for r in stored_rows(settings)]
    [destination_settings] = settings_for(tmp_path, fake.url).destinations
    destination = PINTEREST.build(destination_settings)
    fake.failing = {"v2"}
    async with aiohttp.ClientSession() as session:
        assert await destination.validate_remotely(session, claimed) == [
            "event v2 (Lead): event_time is too old"]
        assert fake.requests[-1]["query"] == {"test": "true"}
        fake.answers = [(400, {"code": 4196, "message": "The request was invalid."})]
        assert await destination.validate_remotely(session, claimed) == [
            "events v1 .. v3 (3): HTTP 400, code 4196: The request was invalid."]
        fake.tokens = set()
        with pytest.raises(TokenRejected):
            await destination.validate_remotely(session, claimed)
        dry = PINTEREST.build(settings.destinations[0])
        with pytest.raises(Retryable, match="no access_token"):
            await dry.validate_remotely(session, claimed)
