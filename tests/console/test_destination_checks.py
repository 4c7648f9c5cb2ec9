"""The console's token check on save and "Send test event" for the types other than Meta, each
against its fake platform: the documented request that records nothing, and the verdict for a
good and a refused token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..destinations.fake_ga4 import FakeGa4
from ..destinations.fake_pinterest import FakePinterest
from ..destinations.fake_snapchat import FakeSnap
from ..destinations.fake_tiktok import FakeTikTok
from ..fake_graph import FakeGraph
from .conftest import BEARER
from .test_destinations import Client, add, listed, put_token, secret_key, start

__all__ = ["secret_key"]  # the fixture, used by name

ACCOUNT = "549755885175"
PINTEREST_TOKEN = "pina_CONSOLE-TOKEN"
SNAP_PIXEL = "0b3e6e5c-1f2a-4c3d-9e8f-0123456789ab"
SNAP_TOKEN = "SNAP-CONSOLE-TOKEN"
TIKTOK_PIXEL = "C4TIKTOKPIXEL0CODE"
TIKTOK_TOKEN = "TT-CONSOLE-TOKEN"


async def send_test(client: Client, name: str) -> dict[str, Any]:
    answer = await client.post(f"/admin/api/destinations/{name}/test-event", headers=BEARER)
    assert answer.status == 200, await answer.text()
    verdict = await answer.json()
    assert isinstance(verdict, dict)
    return verdict


async def test_pinterest_checks_the_token_and_sends_a_test_event_with_test_true(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, aiohttp_server: Any,
    secret_key: str,
) -> None:
    fake = FakePinterest(PINTEREST_TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("")).rstrip("/")
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, {"name": "pins", "type": "pinterest", "ad_account_id": ACCOUNT,
                       "api_url": fake.url, "access_token": PINTEREST_TOKEN})
    check = (await listed(client))["pins"]["token_check"]
    assert check["ok"] is True and f"ad account {ACCOUNT}" in check["message"]
    assert "num_events_processed 1" in check["message"]
    verdict = await send_test(client, "pins")
    assert verdict["ok"] is True and "num_events_received 1" in verdict["message"]
    # Both went as Pinterest's test requests: validated, nothing recorded.
    assert len(fake.requests) == 2
    for request in fake.requests:
        assert request["query"] == {"test": "true"} and request["account"] == ACCOUNT
        assert request["authorization"] == f"Bearer {PINTEREST_TOKEN}"
        assert [e["event_name"] for e in request["body"]["data"]] == ["page_visit"]

    await put_token(client, "pins", "pina_WRONG")
    check = (await listed(client))["pins"]["token_check"]
    assert check["ok"] is False and "HTTP 401, code 2" in check["message"]
    assert "pina_WRONG" not in check["message"]
    verdict = await send_test(client, "pins")
    assert verdict["ok"] is False and "HTTP 401, code 2" in verdict["message"]
    assert all(r["query"] == {"test": "true"} for r in fake.requests)


async def test_snapchat_checks_the_token_and_sends_a_test_event_to_the_validate_endpoint(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, aiohttp_server: Any,
    secret_key: str,
) -> None:
    fake = FakeSnap(SNAP_TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("")).rstrip("/")
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, {"name": "snap", "type": "snapchat", "pixel_id": SNAP_PIXEL,
                       "api_url": fake.url, "access_token": SNAP_TOKEN})
    check = (await listed(client))["snap"]["token_check"]
    assert check["ok"] is True and f"Snap Pixel {SNAP_PIXEL}" in check["message"]
    assert "VALID" in check["message"]
    verdict = await send_test(client, "snap")
    assert verdict["ok"] is True and verdict["message"].startswith("VALID")
    # Both went to the validate endpoint only: checked, never counted.
    assert len(fake.requests) == 2
    for request in fake.requests:
        assert request.validate and request.pixel_id == SNAP_PIXEL
        assert request.query == {"access_token": SNAP_TOKEN}
        assert [e["event_name"] for e in request.events] == ["PAGE_VIEW"]

    await put_token(client, "snap", "SNAP-WRONG")
    check = (await listed(client))["snap"]["token_check"]
    assert check["ok"] is False and "HTTP 401" in check["message"]
    assert "SNAP-WRONG" not in check["message"]
    verdict = await send_test(client, "snap")
    assert verdict["ok"] is False and "HTTP 401, INVALID: Unauthorized" == verdict["message"]
    assert all(r.validate for r in fake.requests)


async def test_tiktok_sends_a_test_event_only_with_its_test_event_code_and_checks_no_token(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, aiohttp_server: Any,
    secret_key: str,
) -> None:
    fake = FakeTikTok(TIKTOK_TOKEN)
    fake.url = str((await aiohttp_server(fake.app)).make_url("")).rstrip("/")
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, {"name": "tt", "type": "tiktok", "pixel_code": TIKTOK_PIXEL,
                       "api_url": fake.url, "access_token": TIKTOK_TOKEN,
                       "test_event_code": "TEST12345"})
    # TikTok documents no read a destination's ids allow: the check says so, sends nothing.
    check = (await listed(client))["tt"]["token_check"]
    assert check["ok"] is None and "no check" in check["message"]
    assert fake.requests == []
    verdict = await send_test(client, "tt")
    assert verdict["ok"] is True and "code 0: OK" in verdict["message"]
    [request] = fake.requests
    assert request.headers["Access-Token"] == TIKTOK_TOKEN
    assert request.body["test_event_code"] == "TEST12345"
    assert request.body["event_source_id"] == TIKTOK_PIXEL
    assert [e["event"] for e in request.events] == ["Pageview"]

    await put_token(client, "tt", "TT-WRONG")
    verdict = await send_test(client, "tt")
    assert verdict["ok"] is False and "code 40105" in verdict["message"]
    assert "TT-WRONG" not in verdict["message"]

    # Without a test_event_code nothing is sent: it would count as a real event.
    await add(client, {"name": "real", "type": "tiktok", "pixel_code": TIKTOK_PIXEL,
                       "api_url": fake.url, "access_token": TIKTOK_TOKEN})
    answer = await client.post("/admin/api/destinations/real/test-event", headers=BEARER)
    assert answer.status == 409 and "test_event_code" in (await answer.json())["error"]
    assert len(fake.requests) == 2


async def test_ga4_sends_a_test_event_to_the_validation_server_and_says_it_cannot_check_the_secret(
    tmp_path: Path, fake_graph: FakeGraph, aiohttp_client: Any, aiohttp_server: Any,
    secret_key: str,
) -> None:
    fake = FakeGa4()
    fake.url = str((await aiohttp_server(fake.app)).make_url("")).rstrip("/")
    client = await start(tmp_path, fake_graph, aiohttp_client)
    await add(client, {"name": "ga", "type": "ga4", "measurement_id": "G-ABC123",
                       "api_url": fake.url, "api_secret": "ga4Secret"})
    check = (await listed(client))["ga"]["token_check"]
    assert check["ok"] is None and "no check of its api_secret" in check["message"]
    verdict = await send_test(client, "ga")
    assert verdict["ok"] is True and "does not check the api_secret" in verdict["message"]
    [request] = fake.validations
    assert request.query == {"measurement_id": "G-ABC123", "api_secret": "ga4Secret"}
    assert request.body["validation_behavior"] == "ENFORCE_RECOMMENDATIONS"
    assert [e["name"] for e in request.events] == ["page_view"] and request.problems == []

    # A wrong secret gets the same verdict: GA4 documents that the validation server does not
    # check it, and the answer says so rather than claim the secret works.
    await put_token(client, "ga", "ga4Wrong")
    assert (await listed(client))["ga"]["token_check"]["ok"] is None
    verdict = await send_test(client, "ga")
    assert verdict["ok"] is True and "does not check the api_secret" in verdict["message"]
    fake.messages.append({"fieldPath": "events", "validationCode": "VALUE_INVALID",
                          "description": "Event at index: [0] has an invalid value."})
    verdict = await send_test(client, "ga")
    assert verdict["ok"] is False
    assert verdict["message"] == ("the validation server refuses the event: VALUE_INVALID at "
                                  "events: Event at index: [0] has an invalid value.")
    assert len(fake.validations) == 3 and fake.requests == []  # nothing went to /mp/collect
