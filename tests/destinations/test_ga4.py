"""`type: ga4`: GA4's Measurement Protocol through the real gateway (hits on /tr, server events,
real SQLite outbox) against a local fake of GA4 built from Google's documented request shape:
the wire format, the _ga cookie and client ids, user-provided data hashed Google's way, GA4's
limits checked before sending (GA4 answers 2xx to what it drops), each class of answer, dry run,
config errors and the validation server."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway import appkeys
from gateway.config import load_settings, parse_settings
from gateway.destinations import TYPES
from gateway.destinations.ga4 import GA4, Ga4
from gateway.destinations.ga4.events import EVENT_NAMES, build_event, ga4_name, validate_event
from gateway.destinations.ga4.identity import client_id, session_id
from gateway.destinations.ga4.sender import classify
from gateway.errors import ConfigError, Permanent, RateLimited, Retryable, TokenRejected
from gateway.storage import ClaimedRow

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
from .fake_ga4 import FakeGa4

SECRET = "Mp-SeCrEt_123"
MEASUREMENT_ID = "G-TEST12345"
UA = {"User-Agent": "Mozilla/5.0"}
KEY = "sk-test-backend-0123456789abcdef"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def fake_ga4(aiohttp_server: Any) -> FakeGa4:
    fake = FakeGa4()
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


def ga4_yaml(name: str, url: str, **fields: Any) -> str:
    return type_yaml(name, **{"type": "ga4", "measurement_id": MEASUREMENT_ID,
                              "api_secret": SECRET, "api_url": url, **fields})


def keys_yaml() -> str:
    return (f"access_keys:\n  - name: backend\n    sha256: {sha256(KEY)}\n"
            f"    pixels: [\"{PIXEL_A}\"]\n")


def ga4_settings(tmp_path: Path, url: str, *more: str, **fields: Any) -> Any:
    return parse_settings(settings_yaml(tmp_path, ga4_yaml("ga", url, **fields), *more,
                                        extra=keys_yaml()), env={})


async def hit(client: Any, cookie: str = "", **params: str) -> Any:
    headers = {**UA, "Host": "www.shop.example"}
    if cookie:
        headers["Cookie"] = cookie
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": "PageView", **params},
                                headers=headers)
    assert response.status == 200, await response.text()
    return response


def server_event(name: str = "Purchase", **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_name": name, "event_time": int(time.time()) - 60,
        "event_id": f"order-{time.monotonic_ns()}", "action_source": "website",
        "event_source_url": "https://shop.example.com/thanks",
        "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "UA/1.0"},
        "custom_data": {"value": 42.5, "currency": "EUR"},
    }
    data.update(fields)
    return data


async def post_events(client: Any, *events: dict[str, Any], **fields: Any) -> Any:
    body = orjson.dumps({"data": list(events), "accessKey": KEY, **fields})
    response = await client.post(f"/capi/{PIXEL_A}/events", data=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 202, await response.text()
    assert (await response.json())["events_rejected"] == []
    return response


# -- config --------------------------------------------------------------------------------

def test_options_are_read_with_located_errors_and_the_secret_hidden(tmp_path: Path) -> None:
    [destination] = ga4_settings(tmp_path, "https://www.google-analytics.com/").destinations
    assert destination.type == "ga4" and destination.batch_size == 25
    assert destination.options.api_url == "https://www.google-analytics.com"
    assert destination.options.measurement_id == MEASUREMENT_ID
    assert not destination.options.debug_mode
    assert SECRET not in repr(destination)
    bad = settings_yaml(tmp_path, ga4_yaml("ga", "ftp://x", measurement_id="UA-1234-1",
                                           api_secret="no way!", batch_size=26,
                                           pixel_id="1", debug_mode="maybe"))
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, filename="config.yaml", env={})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "destinations[0].measurement_id: must be a web stream's measurement ID such as " \
           "G-ABC123XYZ (Admin > Data streams), got 'UA-1234-1'" in problems
    assert "destinations[0].api_secret: must be a Measurement Protocol API secret" in problems
    assert "got (hidden)" in problems and "no way" not in problems
    assert "destinations[0].api_url: must be an http(s) base URL" in problems
    assert "destinations[0].batch_size: must be a whole number between 1 and 25 events " \
           "(Google's limit is 25), got 26" in problems
    assert "destinations[0].debug_mode: must be true or false" in problems
    assert "destinations[0].pixel_id: unknown key" in problems
    missing = settings_yaml(tmp_path, "  - name: ga\n    type: ga4")
    with pytest.raises(ConfigError) as caught:
        parse_settings(missing, filename="config.yaml", env={})
    assert "destinations[0].measurement_id: is required" in str(caught.value)


# -- wire format ---------------------------------------------------------------------------

async def test_a_page_view_goes_to_mp_collect_with_the_ga_cookies_client_id(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    response = await hit(client, cookie="other=1; _ga=GA1.1.1234567890.1700000000",
                         eid="pv-1", dl="https://shop.example/p?q=1",
                         rl="https://search.example/")
    assert response.cookies["_ga"].value == "GA1.1.1234567890.1700000000"  # renewed
    assert response.cookies["_ga"]["domain"] == "shop.example"
    [request] = await fake_ga4.wait_for_requests(1)
    assert request.problems == []
    assert request.path == "/mp/collect"
    assert request.query == {"measurement_id": MEASUREMENT_ID, "api_secret": SECRET}
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["client_id"] == "1234567890.1700000000"
    assert "user_data" not in request.body and "user_id" not in request.body
    [event] = request.events
    assert event["name"] == "page_view"
    micros = event["timestamp_micros"]
    assert abs(micros / 1e6 - time.time()) < 30
    assert event["params"] == {
        "page_location": "https://shop.example/p?q=1",
        "page_referrer": "https://search.example/",
        "session_id": str(int(micros // 1_000_000) // 1800 * 1800),
        "engagement_time_msec": 1,
    }
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    [row] = rows(settings)
    assert row["pixel_id"] == MEASUREMENT_ID


async def test_a_visitor_without_ga_gets_one_minted_and_its_client_id_is_sent(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    before = int(time.time())
    response = await hit(client, cookie="_ga=not-a-ga-cookie", dl="https://shop.example/")
    minted = response.cookies["_ga"].value
    match = re.fullmatch(r"GA1\.1\.([0-9]+)\.([0-9]+)", minted)
    assert match, minted
    assert 1 <= int(match.group(1)) < 2**31
    assert before <= int(match.group(2)) <= int(time.time())
    [request] = await fake_ga4.wait_for_requests(1)
    assert request.body["client_id"] == f"{match.group(1)}.{match.group(2)}"
    # The next hit with it keeps it.
    again = await hit(client, cookie=f"_ga={minted}", dl="https://shop.example/2")
    assert again.cookies["_ga"].value == minted
    requests = await fake_ga4.wait_for_requests(2)
    assert requests[1].body["client_id"] == request.body["client_id"]


async def test_a_purchase_maps_to_gas_recommended_event_with_items(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    contents = orjson.dumps([{"id": "sku-1", "quantity": 2, "item_price": 10.5},
                             {"id": 42, "quantity": 1}]).decode()
    await hit(client, cookie="_ga=GA1.1.1.2", ev="Purchase", eid="p-1",
              dl="https://shop.example/thanks", **{
                  "cd[value]": "31.5", "cd[currency]": "eur", "cd[order_id]": "ORDER-7",
                  "cd[contents]": contents, "cd[content_type]": "product"})
    await hit(client, cookie="_ga=GA1.1.1.2", ev="Purchase", eid="p-2",
              dl="https://shop.example/thanks", **{
                  "cd[value]": "5", "cd[currency]": "USD", "cd[content_ids]": '["a", "b"]'})
    events = await fake_ga4.wait_for_events(2)
    first, second = sorted(events, key=lambda e: e["params"]["transaction_id"])
    assert first["name"] == "purchase"
    params = first["params"]
    assert (params["value"], params["currency"], params["transaction_id"]) == (
        31.5, "EUR", "ORDER-7")
    assert params["items"] == [{"item_id": "sku-1", "quantity": 2, "price": 10.5},
                               {"item_id": "42", "quantity": 1}]
    assert params["content_type"] == "product"
    assert "contents" not in params and "order_id" not in params
    # No order id: the event id is the transaction id (GA4 dedups purchases by it).
    assert second["params"]["transaction_id"] == "p-2"
    assert second["params"]["items"] == [{"item_id": "a"}, {"item_id": "b"}]


def test_metas_standard_events_map_to_gas_recommended_ones() -> None:
    expected = {"PageView": "page_view", "ViewContent": "view_item",
                "AddToCart": "add_to_cart", "AddToWishlist": "add_to_wishlist",
                "InitiateCheckout": "begin_checkout", "AddPaymentInfo": "add_payment_info",
                "Purchase": "purchase", "Lead": "generate_lead",
                "CompleteRegistration": "sign_up", "Search": "search"}
    for meta, ga4 in expected.items():
        assert ga4_name(meta) == (ga4, "")
    assert all(re.fullmatch(r"[a-z][a-z_]*", name) for name in EVENT_NAMES.values())
    # Custom names are cleaned to GA4's characters, keeping their case ...
    assert ga4_name("Video Played-50%") == ("Video_Played_50", "")
    assert ga4_name("newsletter.signup") == ("newsletter_signup", "")
    # ... or refused with the reason.
    assert ga4_name("1st_visit")[1] == "event_name must start with a letter (A-Z) for GA4"
    assert ga4_name("x" * 41)[1] == "event_name is longer than 40 characters for GA4"
    assert ga4_name("session_start")[1] == "event_name is one GA4 reserves for its own events"
    assert ga4_name("google_thing")[1].startswith("event_name starts with a prefix GA4")
    search = build_event({"event_name": "Search", "event_time": 1,
                          "custom_data": {"search_string": "red shoes"}}).event
    assert search["name"] == "search" and search["params"]["search_term"] == "red shoes"
    view = build_event({"event_name": "ViewContent", "custom_data": {
        "content_ids": ["sku-9"], "content_name": "Red shoe", "content_category": "Shoes",
        "value": 3, "currency": "EUR"}}).event
    assert view["params"]["items"] == [{"item_id": "sku-9", "item_name": "Red shoe",
                                        "item_category": "Shoes"}]


async def test_user_data_is_hashed_googles_way_and_never_stored_raw(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    await hit(client, cookie="_ga=GA1.1.5.6", ev="Lead", dl="https://shop.example/", **{
        "ud[em]": " John.Doe@GoogleMail.com ", "ud[ph]": "+1 (650) 555-1234",
        "ud[fn]": " Mary-Ann ", "ud[ln]": "O'Neil2", "ud[ct]": "San Francisco 1",
        "ud[st]": "California", "ud[zp]": "94016.~", "ud[country]": "United States"})
    [request] = await fake_ga4.wait_for_requests(1)
    assert request.events[0]["name"] == "generate_lead"
    assert request.body["user_data"] == {
        # gmail/googlemail: the dots before the @ go (GA4's rule, not Meta's)
        "sha256_email_address": [sha256("johndoe@googlemail.com")],
        # E.164 with its '+' (Meta hashes the digits alone)
        "sha256_phone_number": [sha256("+16505551234")],
        "address": [{"sha256_first_name": sha256("maryann"),
                     "sha256_last_name": sha256("oneil"),
                     "city": "san francisco", "region": "california",
                     "postal_code": "94016", "country": "US"}],
    }
    stored = " ".join(str(r["context"]) + str(r["payload"]) for r in rows(settings))
    for raw in ("John.Doe", "john.doe", "johndoe@", "555-1234", "Mary", "O'Neil"):
        assert raw not in stored


def test_identities_from_values_sent_hashed_and_phones_without_a_country_code() -> None:
    meta_email = sha256("joe@example.com")
    meta_phone = sha256("16505551234")  # Meta's form: no '+'
    found = GA4.identities({"em": [meta_email, "Second@Example.com"], "ph": meta_phone,
                            "fn": sha256("joe")}, None)
    assert found == {"sha256_email_address": [meta_email, sha256("second@example.com")],
                     "address": [{"sha256_first_name": sha256("joe")}]}
    # A national number takes the country's calling code (the event's, else geo/config).
    assert GA4.identities({"ph": "030 1234567"}, "de") == {
        "sha256_phone_number": [sha256("+49301234567")]}
    # Places alone identify no one: no address without a name.
    assert GA4.identities({"ct": "Berlin", "zp": "10115"}, "de") == {}
    assert GA4.identities({"em": "not an email"}, None) == {}


async def test_server_events_get_a_stable_client_id_from_what_they_carry(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    fbp = "fb.1.1700000000123.987654321"
    user = {"client_ip_address": "203.0.113.9", "client_user_agent": "UA/1.0"}
    await post_events(
        client,
        server_event(event_id="a", user_data={**user, "fbp": fbp}),
        server_event(event_id="b", user_data={**user, "fbp": fbp}),
        server_event(event_id="c", user_data={**user, "external_id": "user-77"}),
        server_event(event_id="d", user_data={**user, "em": "x@example.com"}))
    events = await fake_ga4.wait_for_events(4)
    by_transaction = {event["params"]["transaction_id"]: request.body["client_id"]
                      for request in fake_ga4.accepted for event in request.events}
    assert by_transaction["a"] == by_transaction["b"] == "987654321.1700000000"
    assert len(events) == 4 and len(fake_ga4.accepted) == 3  # a and b share a request
    assert by_transaction["c"] == client_id({}, {"external_id": sha256("user-77")}, "c")
    assert by_transaction["d"] == client_id({}, {}, "d") != client_id({}, {}, "e")
    assert all(re.fullmatch(r"[0-9]+\.[0-9]+", cid) for cid in by_transaction.values())


async def test_a_request_holds_one_client_and_at_most_25_events(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url, linger_ms=200)
    client = await start_gateway(settings)
    fbp = "fb.1.1700000000123.11111"
    user = {"client_user_agent": "UA/1.0", "fbp": fbp}
    events = [server_event("AddToCart", event_id=f"e{i}", user_data=user) for i in range(30)]
    other = server_event("AddToCart", event_id="other",
                         user_data={"client_user_agent": "UA/1.0",
                                    "fbp": "fb.1.1700000000123.22222"})
    await post_events(client, *events, other)
    await fake_ga4.wait_for_events(31)
    sizes = sorted((request.body["client_id"], len(request.events))
                   for request in fake_ga4.accepted)
    assert sizes == [("11111.1700000000", 5), ("11111.1700000000", 25),
                     ("22222.1700000000", 1)]
    assert all(request.problems == [] for request in fake_ga4.requests)


async def test_debug_mode_marks_events_and_a_test_of_metas_setup_is_not_sent(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    # GA4 records debug_mode events too: a server event sent with Meta's test_event_code is
    # withheld from GA4, never counted as a real purchase.
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    await post_events(client, server_event(event_id="t1"), test_event_code="TEST123")
    await post_events(client, server_event(event_id="t2"))
    events = await fake_ga4.wait_for_events(1)
    assert [(e["params"]["transaction_id"], e["params"].get("debug_mode")) for e in events] == [
        ("t2", None)]
    debugging = ga4_settings(tmp_path, fake_ga4.url, debug_mode=True)
    debug_client = await start_gateway(debugging)
    await post_events(debug_client, server_event(event_id="t3"))
    events = await fake_ga4.wait_for_events(2)
    assert events[-1]["params"]["transaction_id"] == "t3"
    assert events[-1]["params"]["debug_mode"] == 1


# -- GA4's limits, checked before it can drop anything silently ------------------------------

def test_validate_refuses_what_ga4_would_drop_naming_fields() -> None:
    now = 1_800_000_000.0
    good = {"event_name": "Purchase", "event_time": now - 60, "event_id": "e1",
            "custom_data": {"value": 1, "currency": "EUR"}}
    assert validate_event(good, now) == []
    assert GA4.expires(good) == now - 60 + 72 * 3600

    def reasons(**changes: Any) -> list[str]:
        return validate_event({**good, **changes}, now)

    assert reasons(event_time=now - 73 * 3600) == [
        "event_time is more than 72 hours old (GA4's backdating limit)"]
    assert reasons(event_name="Bad Name That Is Far Too Long For Google Analytics") == [
        "event_name is longer than 40 characters for GA4"]
    assert reasons(custom_data={"value": 1}) == [
        "custom_data.currency is required by GA4 when there is a value"]
    assert reasons(custom_data={"value": 1, "currency": "EUR", "note": "x" * 101}) == [
        "custom_data.note is longer than 100 characters for GA4's note"]
    assert reasons(custom_data={"value": 1, "currency": "EUR", "bad-key": 1,
                                "ga_thing": 2, "nested": {"a": 1}}) == [
        "custom_data.bad-key: GA4 parameter names are letters, digits and '_' (starting with "
        "a letter), at most 40 characters",
        "custom_data.ga_thing: the parameter name is reserved by GA4",
        "custom_data.nested: GA4 parameters must be text or numbers"]
    many = {f"p{i}": i for i in range(22)}
    assert reasons(custom_data={"value": 1, "currency": "EUR", **many}) == [
        "GA4 takes at most 25 parameters per event, this one would have 27 (custom_data has "
        "too many keys)"]
    assert reasons(event_source_url="https://shop.example/" + "x" * 1000) == [
        "event_source_url is longer than 1000 characters for GA4's page_location"]
    assert reasons(custom_data={"value": 1, "currency": "EUR",
                                "content_ids": [str(i) for i in range(201)]}) == [
        "GA4 takes at most 200 items per event (custom_data.contents / content_ids)"]
    assert reasons(event_name="Lead", custom_data={"transaction_id": "x"}) == [
        "custom_data.transaction_id: the gateway sets GA4's transaction_id itself; use the "
        "Conversions API's field for it"]


async def test_the_same_hit_reaches_meta_and_ga4_with_one_event_id_and_ga4s_refusal_is_stored(
    tmp_path: Path, fake_ga4: FakeGa4, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url,
                            destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A))
    client = await start_gateway(settings)
    await hit(client, cookie="_ga=GA1.1.7.8", ev="AddToCart", eid="same-id",
              dl="https://shop.example/cart")
    [meta_event] = await fake_graph.wait_for_events(1)
    [ga4_event] = await fake_ga4.wait_for_events(1)
    assert meta_event["event_id"] == "same-id" and meta_event["event_name"] == "AddToCart"
    assert ga4_event["name"] == "add_to_cart"
    assert meta_event["event_time"] * 1_000_000 == ga4_event["timestamp_micros"]
    # An event only GA4 refuses: Meta still gets it, GA4's row says why.
    await hit(client, cookie="_ga=GA1.1.7.8", ev="AddToCart", eid="long",
              dl="https://shop.example/cart", **{"cd[note]": "n" * 150})
    await fake_graph.wait_for_events(2)
    await wait_until(lambda: sorted((r["event_id"], r["destination"], r["state"])
                                    for r in rows(settings)) == [
        ("long", "ga", "invalid"), ("long", "meta", "delivered"),
        ("same-id", "ga", "delivered"), ("same-id", "meta", "delivered")])
    [refused] = [r for r in rows(settings) if r["state"] == "invalid"]
    assert "custom_data.note is longer than 100 characters for GA4's note" \
        in refused["last_error"]
    assert len(fake_ga4.events) == 1


# -- answers -------------------------------------------------------------------------------

def test_answers_are_classified_without_the_secret() -> None:
    assert isinstance(classify(500, b"oops"), Retryable)
    assert not isinstance(classify(503, b""), RateLimited)
    limited = classify(429, b"", "7")
    assert isinstance(limited, RateLimited) and limited.min_delay == 7
    assert classify(429, b"").min_delay == 60  # type: ignore[attr-defined]
    assert isinstance(classify(401, b""), TokenRejected)
    assert isinstance(classify(403, b""), TokenRejected)
    assert isinstance(classify(413, b""), Permanent)
    wrong = classify(404, f"no such page /mp/collect?api_secret={SECRET}".encode(),
                     api_secret=SECRET)
    assert isinstance(wrong, Retryable) and wrong.min_delay == 300
    assert SECRET not in wrong.reason and "api_secret=***" in wrong.reason
    assert "check api_url" in wrong.reason


async def test_a_5xx_is_retried_and_a_rate_limit_holds_the_destination(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    fake_ga4.script(500, 502)
    await hit(client, cookie="_ga=GA1.1.1.1", eid="retried", dl="https://shop.example/")
    await fake_ga4.wait_for_requests(3)
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r.body for r in fake_ga4.requests[:2]] == [fake_ga4.requests[2].body] * 2

    fake_ga4.script((429, {"Retry-After": "120"}))
    await hit(client, cookie="_ga=GA1.1.1.1", eid="limited", dl="https://shop.example/")
    await fake_ga4.wait_for_requests(4)
    await hit(client, cookie="_ga=GA1.1.1.1", eid="waiting", dl="https://shop.example/")
    await wait_until(lambda: {r["event_id"]: r["state"] for r in rows(settings)}["limited"]
                     == "pending")
    status = await (await client.get("/status")).json()
    [ga] = status["destinations"]
    assert ga["state"] == "backoff" and "HTTP 429" in ga["last_error"]
    assert ga["type"] == "ga4" and SECRET not in str(status)
    assert len(fake_ga4.requests) == 4  # nothing more while the destination waits


async def test_a_refused_secret_pauses_until_it_changes(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, ga4_yaml("ga", fake_ga4.url))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    fake_ga4.script(403)
    await hit(client, cookie="_ga=GA1.1.1.1", dl="https://shop.example/")
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    config.write_text(text.replace(SECRET, "New-Secret"))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r.query["api_secret"] for r in fake_ga4.requests] == [SECRET, "New-Secret"]


async def test_a_refused_event_is_bisected_out_and_dead_lettered(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    settings = ga4_settings(tmp_path, fake_ga4.url)
    client = await start_gateway(settings)
    fake_ga4.refuse_transaction = "bad"
    fbp = "fb.1.1700000000123.5"
    user = {"client_user_agent": "UA/1.0", "fbp": fbp}
    events = [server_event(event_id=eid, user_data=user) for eid in ("ok1", "bad", "ok2")]
    await post_events(client, *events)
    await wait_until(lambda: sorted((r["event_id"], r["state"]) for r in rows(settings)) == [
        ("bad", "dead"), ("ok1", "delivered"), ("ok2", "delivered")])
    [dead] = [r for r in rows(settings) if r["state"] == "dead"]
    assert "HTTP 413" in dead["last_error"] and SECRET not in dead["last_error"]
    assert sorted(e["params"]["transaction_id"] for e in fake_ga4.events) == ["ok1", "ok2"]


def test_a_body_over_gas_size_limit_is_refused_before_it_is_sent(tmp_path: Path) -> None:
    [destination] = parse_settings(settings_yaml(
        tmp_path, ga4_yaml("ga", "http://127.0.0.1:9")), env={}).destinations
    ga = GA4.build(destination)
    assert isinstance(ga, Ga4)
    items = [str(i).rjust(90, "0") for i in range(200)]
    payload = orjson.dumps(server_event(event_id="big", custom_data={
        "value": 1, "currency": "EUR", "content_ids": items}))
    row = ClaimedRow(1, MEASUREMENT_ID, "", "Purchase", "big", 0, 0.0, payload=payload)
    assert len(ga.body([row] * 7)) > 130_000

    async def send() -> None:
        async with aiohttp.ClientSession() as session:
            await ga.send(session, [row] * 7)

    with pytest.raises(Permanent, match="GA4 takes less than 130000 bytes"):
        asyncio.run(send())


async def test_without_an_api_secret_it_runs_dry(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = ga4_settings(tmp_path, fake_ga4.url, api_secret="")
    client = await start_gateway(settings)
    await hit(client, cookie="_ga=GA1.1.1.1", dl="https://shop.example/")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    assert (f"dry run (no api_secret): destination ga would POST 1 events (PageView x1) to "
            f"{fake_ga4.url}/mp/collect for measurement_id {MEASUREMENT_ID}") in caplog.text
    assert fake_ga4.requests == []


# -- the validation server -------------------------------------------------------------------

async def test_validate_remotely_asks_the_validation_server_and_reads_its_messages(
    tmp_path: Path, fake_ga4: FakeGa4,
) -> None:
    [destination] = ga4_settings(tmp_path, fake_ga4.url).destinations
    ga = GA4.build(destination)
    assert isinstance(ga, Ga4)

    def row(eid: str, name: str = "Purchase", fbp: str = "fb.1.1700000000123.5") -> ClaimedRow:
        payload = orjson.dumps(server_event(name, event_id=eid, user_data={"fbp": fbp}))
        return ClaimedRow(1, MEASUREMENT_ID, "", name, eid, 0, 0.0, payload=payload)

    async with aiohttp.ClientSession() as session:
        assert await ga.validate_remotely(session, [row("v1"), row("v2")]) == []
        [request] = fake_ga4.validations
        assert request.path == "/debug/mp/collect" and request.problems == []
        assert request.body["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
        assert request.query["api_secret"] == SECRET
        assert len(request.events) == 2
        fake_ga4.messages = [{"fieldPath": "events.params.items",
                              "description": "Item at index [0] is missing item_name.",
                              "validationCode": "VALUE_REQUIRED"}]
        messages = await ga.validate_remotely(session, [row("v3"), row("v4", "1st")])
    assert messages == [
        "events v4: GA4 would drop this event: event_name must start with a letter (A-Z) for "
        "GA4",
        "events v3: VALUE_REQUIRED at events.params.items: Item at index [0] is missing "
        "item_name."]
    assert len(fake_ga4.validations[1].events) == 1  # v4 was not sent
    assert fake_ga4.requests == []  # nothing was recorded for real


def test_session_ids_are_30_minute_windows() -> None:
    assert session_id(1_800_000_000) == session_id(1_800_000_000 + 1799) == "1800000000"
    assert session_id(1_800_001_800) == "1800001800"
    assert session_id(None) == "0"


def test_the_type_is_registered() -> None:
    assert TYPES["ga4"] is GA4 and GA4.max_batch_size == 25
    assert GA4.cookie_names == frozenset({"_ga"})


async def test_check_validate_asks_ga4_about_the_newest_stored_events(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from gateway.__main__ import main

    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(tmp_path, ga4_yaml("ga", fake_ga4.url, api_secret=""),
                                    extra=keys_yaml()))  # dry run: stored, not sent
    assert await asyncio.to_thread(main, ["check", "--config", str(config), "--validate"]) == 0
    assert "no outbox yet" in capsys.readouterr().out
    client = await start_gateway(load_settings(config, env={}))
    visitor = "_ga=GA1.1.123456789.1700000000"  # one client: one validation request
    await hit(client, visitor, eid="first")
    await hit(client, visitor, eid="second", ev="Purchase",
              **{"cd[value]": "5", "cd[currency]": "EUR"})
    await wait_until(lambda: [r["state"] for r in rows(load_settings(config, env={}))] == [
        "dry_run", "dry_run"])
    fake_ga4.messages = [{"fieldPath": "events.params.items", "validationCode": "VALUE_REQUIRED",
                          "description": "Item at index [0] is missing item_name."}]
    assert await asyncio.to_thread(main, ["check", "--config", str(config), "--validate"]) == 1
    out = capsys.readouterr().out
    assert "destination ga: 2 events validated, 1 problem" in out
    assert "VALUE_REQUIRED at events.params.items" in out
    assert [len(v.events) for v in fake_ga4.validations] == [2] and fake_ga4.requests == []
    fake_ga4.messages = []
    assert await asyncio.to_thread(main, ["check", "--config", str(config), "--validate"]) == 0
    assert "destination ga: 2 events validated, no problems" in capsys.readouterr().out


async def test_user_provided_data_is_not_sent_when_ad_user_data_is_denied(
    tmp_path: Path, fake_ga4: FakeGa4, start_gateway: GatewayFactory,
) -> None:
    client = await start_gateway(ga4_settings(tmp_path, fake_ga4.url))
    await hit(client, eid="granted", **{"ud[em]": "joe@example.com", "cs": "-11-"})
    await hit(client, eid="denied", **{"ud[em]": "joe@example.com", "cs": "-10-"})
    await fake_ga4.wait_for_events(2)
    assert ["user_data" in r.body for r in fake_ga4.accepted] == [True, False]
