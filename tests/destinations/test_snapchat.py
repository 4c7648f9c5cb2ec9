"""`type: snapchat`: Snap's Conversions API v3 through the real gateway (hits on /tr, a real
SQLite outbox, the relay) against a local fake of Snap's API: the wire format, the `_scid`
cookie, test mode, each class of answer, dry run and the options' located errors."""

from __future__ import annotations

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
from gateway.destinations.snapchat import SNAPCHAT, SnapchatOptions
from gateway.destinations.snapchat.events import snap_event, validate_event
from gateway.destinations.snapchat.sender import classify
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
from .fake_snapchat import FakeSnap

SNAP_PIXEL = "0b3e6e5c-1f2a-4c3d-9e8f-0123456789ab"
UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
async def fake_snap(aiohttp_server: Any) -> FakeSnap:
    snap = FakeSnap()
    server = await aiohttp_server(snap.app)
    snap.url = str(server.make_url("")).rstrip("/")
    return snap


def snap_yaml(name: str, api_url: str, **fields: Any) -> str:
    return type_yaml(name, **{"type": "snapchat", "pixel_id": SNAP_PIXEL,
                              "access_token": "SNAP-TOKEN", "api_url": api_url, **fields})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def hit(client: Any, name: str = "PageView", cookie: str = "", **params: str) -> Any:
    params.setdefault("dl", "https://shop.example.com/")
    headers = {**UA, "Host": "www.shop.example.com", **({"Cookie": cookie} if cookie else {})}
    response = await client.get("/tr", params={"id": PIXEL_A, "ev": name, **params},
                                headers=headers)
    assert response.status == 200, await response.text()
    return response


# The wire format


async def test_a_hit_reaches_snap_in_its_v3_shape_and_meta_with_the_same_event_id(
    tmp_path: Path, fake_snap: FakeSnap, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        snap_yaml("snap", fake_snap.url)), env={})
    client = await start_gateway(settings)
    scid = "5f2a1c3e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"
    page = "https://shop.example.com/thanks?ScCid=7b3a7917-a82a-47e8-9728-e1b3b045abb2"
    await hit(client, "Purchase", cookie=f"_scid={scid}", eid="order-1", dl=page,
              **{"ud[em]": " Person@Example.com", "ud[ph]": "+44 844 412 4653",
                 "cd[value]": "142.52", "cd[currency]": "USD",
                 "cd[content_ids]": '["sku-1", 42]', "cd[content_name]": "Shoes",
                 "cd[contents]": '[{"id": "sku-1", "quantity": 2, "item_price": 71.26}]'})
    await wait_until(lambda: len(fake_snap.accepted) == 1)
    [request] = fake_snap.requests
    assert request.pixel_id == SNAP_PIXEL and not request.validate
    assert request.query == {"access_token": "SNAP-TOKEN"}
    assert request.headers["Content-Type"] == "application/json"
    [event] = request.events
    assert set(request.body) == {"data"}
    assert event["event_name"] == "PURCHASE"
    assert event["event_id"] == "order-1"
    assert event["action_source"] == "WEB"
    assert event["event_source_url"] == page
    assert isinstance(event["event_time"], int) and abs(event["event_time"] - time.time()) < 60
    user = event["user_data"]
    # Snap's own examples: Person@Example.com and +44 844 412 4653 (Parameters page).
    assert user["em"] == ["542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"]
    assert user["ph"] == ["dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383"]
    assert user["client_user_agent"] == UA["User-Agent"]
    assert user["client_ip_address"]
    assert user["sc_click_id"] == "7b3a7917-a82a-47e8-9728-e1b3b045abb2"
    assert user["sc_cookie1"] == scid
    assert event["custom_data"] == {
        "value": 142.52, "currency": "USD", "content_ids": ["sku-1", "42"],
        "contents": [{"id": "sku-1", "quantity": "2", "item_price": "71.26"}]}
    [meta_event] = await fake_graph.wait_for_events(1)
    assert meta_event["event_id"] == "order-1" and meta_event["event_name"] == "Purchase"
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings)) == [
        ("meta", "delivered"), ("snap", "delivered")])


@pytest.mark.parametrize(("meta_name", "snap_name"), [
    ("PageView", "PAGE_VIEW"), ("ViewContent", "VIEW_CONTENT"), ("AddToCart", "ADD_CART"),
    ("AddToWishlist", "ADD_TO_WISHLIST"), ("InitiateCheckout", "START_CHECKOUT"),
    ("AddPaymentInfo", "ADD_BILLING"), ("Lead", "SIGN_UP"),
    ("CompleteRegistration", "SIGN_UP"), ("Search", "SEARCH"), ("Subscribe", "SUBSCRIBE"),
    ("StartTrial", "START_TRIAL"), ("Schedule", "RESERVE"), ("CUSTOM_EVENT_2", "CUSTOM_EVENT_2"),
])
def test_metas_standard_names_become_snaps(meta_name: str, snap_name: str) -> None:
    data = {"event_name": meta_name, "event_time": 1_700_000_000, "action_source": "website",
            "event_source_url": "https://shop.example/", "user_data": {
                "client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0"}}
    assert validate_event(data, 1_700_000_000) == []
    assert snap_event(data, {})["event_name"] == snap_name


def test_snap_event_shape_from_a_stored_event() -> None:
    data = {"event_name": "AddToCart", "event_time": 1_700_000_000, "action_source": "email",
            "event_id": "e1", "user_data": {"em": "a" * 64, "ph": ["b" * 64], "fn": "c" * 64,
                                            "fbp": "fb.1.1.1", "client_user_agent": "UA"},
            "custom_data": {"value": 3, "currency": "EUR", "brands": ["x", "y"],
                            "content_name": "kept out"}}
    event = snap_event(data, {"click_ids": {"gclid": "g"}, "cookies": {}})
    assert event == {
        "event_name": "ADD_CART", "event_time": 1_700_000_000, "action_source": "OFFLINE",
        "event_id": "e1",
        "user_data": {"em": ["a" * 64], "ph": ["b" * 64], "fn": ["c" * 64],
                      "client_user_agent": "UA"},
        "custom_data": {"value": 3, "currency": "EUR", "brands": "x,y"}}


def test_snaps_rules_name_fields() -> None:
    now = 1_700_000_000
    good = {"event_name": "Purchase", "event_time": now - 36 * 86400, "action_source": "website",
            "event_source_url": "https://shop.example/", "user_data": {"em": "a" * 64},
            "custom_data": {"value": 1.5, "currency": "EUR"}}
    assert validate_event(good, now) == []
    assert validate_event({**good, "event_time": now - 38 * 86400}, now) == [
        "event_time is more than 37 days old"]
    assert validate_event({**good, "event_name": "Contact", "custom_data": {}}, now) == [
        "event_name has no Snapchat equivalent (use a Meta standard name Snap maps, or one of "
        "Snap's names such as CUSTOM_EVENT_1)"]
    assert validate_event({**good, "custom_data": {"currency": "EURO"}}, now) == [
        "Purchase events need custom_data.value as a number",
        "Purchase events need custom_data.currency as a 3-letter ISO 4217 code"]
    assert validate_event({**good, "user_data": {"client_user_agent": "UA"}}, now) == [
        "user_data needs em, ph, or client_ip_address with client_user_agent for Snapchat"]
    assert validate_event({**good, "action_source": "app", "event_source_url": ""}, now) == [
        "app events need app_data.extinfo for Snapchat"]
    assert SNAPCHAT.expires(good) == good["event_time"] + 37 * 86400


async def test_an_event_snap_cannot_take_still_reaches_meta(
    tmp_path: Path, fake_snap: FakeSnap, fake_graph: FakeGraph, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("meta", fake_graph.url, pixel_id=PIXEL_A),
        snap_yaml("snap", fake_snap.url)), env={})
    client = await start_gateway(settings)
    await hit(client, "Contact", eid="c1")  # Snap has no such event
    await fake_graph.wait_for_events(1)
    await wait_until(lambda: sorted((r["destination"], r["state"]) for r in rows(settings)) == [
        ("meta", "delivered"), ("snap", "invalid")])
    [snap_row] = [r for r in rows(settings) if r["destination"] == "snap"]
    assert "event_name has no Snapchat equivalent" in snap_row["last_error"]
    assert fake_snap.requests == []


# The _scid cookie


async def test_scid_is_kept_and_renewed_when_valid_and_minted_otherwise(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, snap_yaml("snap", fake_snap.url)), env={})
    client = await start_gateway(settings)
    scid = "5F2A1C3E-8B7D-4E6F-9A0B-1C2D3E4F5A6B"
    kept = await hit(client, eid="kept", cookie=f"_scid={scid}")
    assert kept.cookies["_scid"].value == scid  # set again: its lifetime renewed
    assert kept.cookies["_scid"]["domain"] == "example.com"  # the gateway's cookie domain
    fresh = await hit(client, eid="fresh")
    replaced = await hit(client, eid="replaced", cookie="_scid=not-a-uuid")
    minted = [fresh.cookies["_scid"].value, replaced.cookies["_scid"].value]
    assert all(UUID.fullmatch(value) for value in minted) and minted[0] != minted[1]
    await wait_until(lambda: len(fake_snap.events) == 3)
    by_id = {e["event_id"]: e["user_data"]["sc_cookie1"] for e in fake_snap.events}
    assert by_id == {"kept": scid, "fresh": minted[0], "replaced": minted[1]}
    assert all("sc_click_id" not in e["user_data"] for e in fake_snap.events)


def test_the_type_declares_its_cookie_and_keeps_meta_hashes() -> None:
    assert SNAPCHAT.cookie_names == frozenset({"_scid"})
    assert SNAPCHAT.identities({"em": "Person@Example.com"}, None) == {}
    assert SNAPCHAT.default_consent == "ads"
    assert TYPES["snapchat"] is SNAPCHAT and SNAPCHAT.max_batch_size == 2000


# Test mode


async def test_test_mode_posts_to_snaps_validate_endpoint(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, snap_yaml("snap", fake_snap.url, test_mode=True)), env={})
    client = await start_gateway(settings)
    await hit(client, eid="t1")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    [request] = fake_snap.requests
    assert request.validate and request.pixel_id == SNAP_PIXEL
    assert [e["event_id"] for e in request.events] == ["t1"]
    status = await (await client.get("/status")).json()
    assert "validate only" in str(status) and "SNAP-TOKEN" not in str(status)


async def test_test_mode_refusals_in_a_2xx_answer_are_dead_letters() -> None:
    answer = {"status": "INVALID", "test_event": True, "event_logs": [
        {"event": 0, "status": "INVALID",
         "errors": {"codes": ["E1"], "error_msgs": ["event_time is too old"]}}]}
    error = classify(200, orjson.dumps(answer))
    assert isinstance(error, Permanent)
    assert error.reason == "HTTP 200, INVALID: event_time is too old"
    assert classify(200, b'{"status": "VALID", "reason": "ok"}') is None


# Snap's answers


def test_answers_are_classified_and_the_token_never_shows() -> None:
    token = "SeCrEt+/="
    refused = classify(400, orjson.dumps({"status": "INVALID", "reason": f"bad {token}",
                                          "errors": {"error_msgs": ["x"]}}), token)
    assert isinstance(refused, Permanent) and refused.reason == "HTTP 400, INVALID: bad ***; x"
    assert isinstance(classify(401, b'{"status": "INVALID"}', token), TokenRejected)
    assert isinstance(classify(403, b"", token), TokenRejected)
    limited = classify(429, b"", token, retry_after="7")
    assert isinstance(limited, RateLimited) and limited.min_delay == 7
    limited = classify(429, b"", token, retry_after="soon")
    assert isinstance(limited, RateLimited) and limited.min_delay == 60
    for status in (500, 502, 503):
        error = classify(status, b"<html>", token)
        assert isinstance(error, Retryable) and not isinstance(error, RateLimited)
    lost = classify(404, b"not found", token)
    assert isinstance(lost, Retryable) and lost.min_delay == 300  # the address, not the events
    moved = classify(302, b"", token)
    assert isinstance(moved, Retryable) and moved.min_delay == 300


async def test_a_server_error_is_retried(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, snap_yaml("snap", fake_snap.url)), env={})
    fake_snap.script(503, {"status": "INVALID", "reason": "Service unavailable"}, times=2)
    client = await start_gateway(settings)
    await hit(client, eid="r1")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert len(fake_snap.requests) == 3 and [e["event_id"] for e in fake_snap.events] == ["r1"]


async def test_a_rate_limit_backs_off_the_whole_destination(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(tmp_path, snap_yaml("snap", fake_snap.url)), env={})
    fake_snap.script(429, {"status": "INVALID", "reason": "Too many requests"},
                     headers={"Retry-After": "120"})
    client = await start_gateway(settings)
    await hit(client, eid="first")
    await wait_until(lambda: len(fake_snap.requests) == 1
                     and rows(settings)[0]["state"] == "pending")
    await hit(client, eid="second")
    status = await (await client.get("/status")).json()
    [snap] = status["destinations"]
    assert snap["state"] == "backoff" and "Too many requests" in snap["last_error"]
    assert snap["type"] == "snapchat" and "SNAP-TOKEN" not in str(status)
    assert len(fake_snap.requests) == 1


async def test_a_refused_token_pauses_until_a_new_one_is_configured(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = tmp_path / "config.yaml"
    text = settings_yaml(tmp_path, snap_yaml("snap", fake_snap.url, access_token="OLD-TOKEN"))
    config.write_text(text)
    settings = load_settings(config, env={})
    client = await start_gateway(settings)
    await hit(client, eid="p1")
    [worker] = client.server.app[appkeys.RELAYS]
    await wait_until(lambda: worker.state == "paused")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["pending"])
    config.write_text(text.replace("OLD-TOKEN", "SNAP-TOKEN"))
    assert await client.server.app[appkeys.RELOADER].reload()
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["delivered"])
    assert [r.query["access_token"] for r in fake_snap.requests] == ["OLD-TOKEN", "SNAP-TOKEN"]
    assert "OLD-TOKEN" not in caplog.text and "SNAP-TOKEN" not in caplog.text


async def test_a_refused_event_is_bisected_out_and_kept_with_snaps_message(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, snap_yaml("snap", fake_snap.url, linger_ms=300)), env={})
    fake_snap.refuse_event_id = "bad"
    client = await start_gateway(settings)
    for event_id in ("ok1", "bad", "ok2"):
        await hit(client, eid=event_id, **{"ud[em]": "someone@example.com"})
    await wait_until(lambda: sorted(r["state"] for r in rows(settings)) == [
        "dead", "delivered", "delivered"])
    [dead] = [r for r in rows(settings) if r["state"] == "dead"]
    assert dead["event_id"] == "bad" and dead["reason"] == "invalid"
    assert "Event has an invalid currency for PURCHASE" in dead["last_error"]
    assert "SNAP-TOKEN" not in dead["last_error"]
    assert sorted(e["event_id"] for e in fake_snap.events) == ["ok1", "ok2"]
    assert len(fake_snap.requests[0].events) == 3  # one batch first, then halved


# Dry run and options


async def test_without_an_access_token_it_runs_dry(
    tmp_path: Path, fake_snap: FakeSnap, start_gateway: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = parse_settings(settings_yaml(
        tmp_path, snap_yaml("snap", fake_snap.url, access_token="")), env={})
    client = await start_gateway(settings)
    await hit(client, "AddToCart", eid="d1")
    await wait_until(lambda: [r["state"] for r in rows(settings)] == ["dry_run"])
    assert (f"dry run (no access_token): destination snap would POST 1 events (AddToCart x1) "
            f"to {fake_snap.url}/v3/{SNAP_PIXEL}/events") in caplog.text
    assert fake_snap.requests == []


def test_options_are_read_with_defaults(tmp_path: Path) -> None:
    text = settings_yaml(tmp_path, "  - name: snap\n    type: snapchat\n"
                                   f"    pixel_id: {SNAP_PIXEL}\n    access_token: T0k.en")
    [destination] = parse_settings(text, env={}).destinations
    assert destination.options == SnapchatOptions(
        pixel_id=SNAP_PIXEL, access_token="T0k.en", test_mode=False,
        api_url="https://tr.snapchat.com")
    assert destination.batch_size == 2000 and destination.accepts_pixel(PIXEL_A)
    assert "T0k.en" not in repr(destination)
    built = SNAPCHAT.build(destination)
    assert built.endpoint == "https://tr.snapchat.com/v3"
    assert built.events_url(SNAP_PIXEL) == f"https://tr.snapchat.com/v3/{SNAP_PIXEL}/events"


def test_option_mistakes_are_located_and_secrets_hidden(tmp_path: Path) -> None:
    text = settings_yaml(tmp_path, snap_yaml("snap", "ftp://snap", pixel_id="12345",
                                             access_token="bad token!", test_mode="maybe",
                                             batch_size=2001))
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, filename="config.yaml", env={})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert re.search(r"config\.yaml:\d+:\d+: destinations\[0\]\.pixel_id: must be a Snap "
                     r"Pixel id", problems)
    assert "destinations[0].access_token: must be a Conversions API token" in problems
    assert "got (hidden)" in problems and "bad token" not in problems
    assert "destinations[0].test_mode: must be true or false" in problems
    assert "destinations[0].api_url: must be an http(s) base URL" in problems
    assert "destinations[0].batch_size: must be a whole number between 1 and 2000" in problems
    missing = settings_yaml(tmp_path, "  - name: snap\n    type: snapchat")
    with pytest.raises(ConfigError) as caught:
        parse_settings(missing, filename="config.yaml", env={})
    assert any("destinations[0].pixel_id" in str(p) for p in caught.value.problems)
