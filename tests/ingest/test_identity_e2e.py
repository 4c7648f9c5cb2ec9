"""A hit from a visitor behind a trusted proxy arrives upstream with Meta-ready identity:
hashed personal data, the real client IP, first-party fbp/fbc, and geo-derived fields."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gateway.config import parse_settings

from ..conftest import PIXEL_A, GatewayFactory, destination_yaml, settings_yaml, stored_rows
from ..fake_graph import FakeGraph

DATA = Path(__file__).resolve().parent.parent / "data" / "maxmind"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def identity_settings(tmp_path: Path, graph_url: str, extra: str = ""):  # type: ignore[no-untyped-def]
    return parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", graph_url, pixel_id=PIXEL_A),
        extra=(f"server: {{trusted_proxies: [loopback]}}\n"
               f"geo: {{database: {DATA / 'GeoIP2-City-Test.mmdb'}}}\n{extra}"),
    ), env={})


async def test_identity_and_enrichment_end_to_end(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    client = await start_gateway(identity_settings(tmp_path, fake_graph.url))
    response = await client.get("/tr", params={
        "id": PIXEL_A, "ev": "Lead", "eid": "lead-1",
        "dl": "https://shop.example.co.uk/landing?utm_source=fb&fbclid=IwAR3xYz_-Ab",
        "ud[em]": " Joe.Smith@Example.COM ", "ud[ph]": "(253) 555-0100", "ud[fn]": "Valéry",
    }, headers={
        "User-Agent": CHROME,
        "X-Forwarded-For": "216.160.83.56, 127.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "shop.example.co.uk",
    })
    assert response.status == 200

    fbp = response.cookies["_fbp"]
    fbc = response.cookies["_fbc"]
    assert fbp["domain"] == "example.co.uk" and fbc["domain"] == "example.co.uk"
    for cookie in (fbp, fbc):
        assert cookie["max-age"] == "7776000"
        assert cookie["path"] == "/"
        assert cookie["samesite"] == "Lax"
        assert cookie["secure"] is True
        assert not cookie["httponly"]  # Meta's own pixel must be able to read them
    assert fbc.value.startswith("fb.2.") and fbc.value.endswith(".IwAR3xYz_-Ab")
    assert fbp.value.startswith("fb.2.")

    [event] = await fake_graph.wait_for_events(1)
    user_data = event["user_data"]
    assert user_data == {
        "em": sha("joe.smith@example.com"),
        "ph": sha("12535550100"),  # US number from the geo country gets its +1
        "fn": sha("valéry"),
        "client_ip_address": "216.160.83.56",
        "client_user_agent": CHROME,
        "fbp": fbp.value,
        "fbc": fbc.value,
        "country": sha("us"),
        "st": sha("wa"),
        "ct": sha("milton"),
        "zp": sha("98354"),
    }


async def test_values_the_event_carries_are_not_overwritten_by_geo(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    client = await start_gateway(identity_settings(tmp_path, fake_graph.url))
    response = await client.get("/tr", params={
        "id": PIXEL_A, "ev": "PageView", "dl": "https://www.example.com/",
        "ud[country]": "Germany", "ud[ct]": "Berlin",
    }, headers={"X-Forwarded-For": "81.2.69.142"})
    assert response.status == 200
    [event] = await fake_graph.wait_for_events(1)
    assert event["user_data"]["country"] == sha("de")
    assert event["user_data"]["ct"] == sha("berlin")
    assert event["user_data"]["st"] == sha("eng")  # filled: the event had none


async def test_returning_visitor_keeps_cookies_and_untrusted_peers_cannot_claim_an_ip(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A)), env={})
    client = await start_gateway(settings)  # trusts no proxy
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "PageView", "dl": "http://localhost/"},
        headers={"X-Forwarded-For": "216.160.83.56",
                 "Cookie": "_fbp=fb.1.1700000000000.42; _fbc=fb.1.1700000000000.Old"},
    )
    assert response.status == 200
    assert response.cookies["_fbp"].value == "fb.1.1700000000000.42"
    assert response.cookies["_fbp"]["secure"] == ""  # plain http
    assert response.cookies["_fbp"]["domain"] == ""  # localhost: host-only
    [event] = await fake_graph.wait_for_events(1)
    assert event["user_data"]["client_ip_address"] == "127.0.0.1"
    assert event["user_data"]["fbc"] == "fb.1.1700000000000.Old"


async def test_truncated_ip_is_what_gets_stored(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = identity_settings(tmp_path, fake_graph.url, "identity: {truncate_ip: true}\n")
    client = await start_gateway(settings)
    response = await client.get(
        "/tr", params={"id": PIXEL_A, "ev": "PageView", "dl": "https://www.example.com/"},
        headers={"X-Forwarded-For": "216.160.83.56"},
    )
    assert response.status == 200
    [payload] = [row.payload or b"" for row in stored_rows(settings)]
    assert b"216.160.83.0" in payload and b"216.160.83.56" not in payload


async def test_invalid_event_is_kept_with_reasons_and_answered_400(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = identity_settings(tmp_path, fake_graph.url)
    client = await start_gateway(settings)
    response = await client.get("/tr", params={
        "id": PIXEL_A, "ev": "Purchase", "dl": "https://www.example.com/",
        "ud[em]": "buyer@example.com",
    })
    assert response.status == 400
    body = await response.json()
    assert body["reasons"] == [
        "Purchase events need custom_data.value as a number",
        "Purchase events need custom_data.currency as a 3-letter ISO 4217 code",
    ]
    assert "_fbp" in response.cookies
    [(state, error, payload)] = [(row.state, row.last_error or "", row.payload or b"")
                                 for row in stored_rows(settings)]
    assert state == "invalid"
    assert "custom_data.value" in error
    assert b"buyer@example.com" not in payload  # hashed before it is stored
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_events_invalid_total{source="browser"} 1.0' in metrics
    assert fake_graph.requests == []
