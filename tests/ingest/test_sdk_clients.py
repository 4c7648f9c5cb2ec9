"""Meta's own Python SDK (facebook-business) as a client of the Graph-shaped route: its sync
EventRequest (form body, double-encoded `data`, key in the query) and its EventRequestAsync
(aiohttp, form body, `data` as a JSON array of objects) both succeed, parse our answers, and
their events reach the fake Graph hashed exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from facebook_business.adobjects.serverside.action_source import ActionSource
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.event_request_async import EventRequestAsync
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from gateway.settings import Settings

from ..conftest import PIXEL_A
from ..fake_graph import FakeGraph
from .test_server_ingress import KEY, KEY_B, ServerFactory, server_settings, start_server

__all__ = ["start_server"]  # the fixture, shared with the ingress tests

EMAIL = "Joe.Smith@Example.com"
EMAIL_HASH = hashlib.sha256(b"joe.smith@example.com").hexdigest()
PHONE_HASH = hashlib.sha256(b"16505551212").hexdigest()
UA = "Mozilla/5.0 (X11; Linux x86_64) SDK-Test/1.0"


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    return server_settings(tmp_path, fake_graph.url)


@pytest.fixture
def graph_at() -> Iterator[Any]:
    """Point the SDK's Graph base URL at a gateway; restore it afterwards."""
    original = FacebookSession.GRAPH

    def point(client: TestClient[Any, Any], key: str = KEY) -> None:
        FacebookSession.GRAPH = str(client.make_url("")).rstrip("/")
        FacebookAdsApi.init(access_token=key)

    yield point
    FacebookSession.GRAPH = original


def sdk_event(event_id: str, name: str = "Purchase", **fields: Any) -> Event:
    user_data = UserData(email=EMAIL, phone="+1 (650) 555-1212", client_user_agent=UA,
                         client_ip_address="203.0.113.9", fbp="fb.1.1700000000000.42")
    return Event(
        event_name=name, event_time=int(time.time()) - 30, event_id=event_id,
        event_source_url="https://shop.example.com/thanks",
        action_source=ActionSource.WEBSITE, user_data=user_data,
        custom_data=CustomData(value=19.99, currency="eur"), **fields,
    )


async def test_sync_event_request_succeeds_and_hashes_once(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph, graph_at: Any
) -> None:
    seen: list[tuple[str, list[str]]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append((request.content_type, sorted(request.query)))

    client = await start_server(settings, on_app=lambda app: app.on_response_prepare.append(
        record))
    graph_at(client)
    request = EventRequest(pixel_id=PIXEL_A, events=[sdk_event("sync-1"), sdk_event("sync-2")],
                           test_event_code="TEST4242")
    response = await asyncio.get_running_loop().run_in_executor(None, request.execute)
    assert seen == [("application/x-www-form-urlencoded", ["access_token"])]
    assert response.events_received == 2
    assert response.messages == []
    assert response.fbtrace_id

    first, second = await fake_graph.wait_for_events(2)
    assert [first["event_id"], second["event_id"]] == ["sync-1", "sync-2"]
    assert first["user_data"]["em"] == [EMAIL_HASH]  # the SDK sends lists; hashed once
    assert first["user_data"]["ph"] == [PHONE_HASH]
    assert first["user_data"]["client_user_agent"] == UA
    assert first["custom_data"] == {"value": 19.99, "currency": "eur"}
    [upstream] = fake_graph.accepted
    assert upstream.body["test_event_code"] == "TEST4242"


async def test_async_event_request_succeeds_and_hashes_once(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph, graph_at: Any
) -> None:
    client = await start_server(settings)
    graph_at(client)
    request = EventRequestAsync(pixel_id=PIXEL_A, events=[sdk_event("async-1", "Lead")],
                                test_event_code="TEST77", partner_agent="sdk-test")
    response = await request.execute()
    assert response.events_received == 1
    [arrived] = await fake_graph.wait_for_events(1)
    assert arrived["event_id"] == "async-1"
    assert arrived["user_data"]["em"] == [EMAIL_HASH]
    [upstream] = fake_graph.accepted
    assert upstream.body["test_event_code"] == "TEST77"
    assert upstream.body["partner_agent"] == "sdk-test"


async def test_sdk_reads_refused_events_from_messages(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph, graph_at: Any
) -> None:
    client = await start_server(settings)
    graph_at(client)
    stale = sdk_event("stale-1")
    stale.event_time = int(time.time()) - 10 * 86400
    request = EventRequestAsync(pixel_id=PIXEL_A, events=[sdk_event("fresh-1"), stale])
    response = await request.execute()
    assert response.events_received == 1
    assert response.messages == ["data[1]: event_time is more than 7 days old (not accepted)"]
    assert [e["event_id"] for e in await fake_graph.wait_for_events(1)] == ["fresh-1"]


@pytest.mark.parametrize(("key", "status", "code"), [
    ("not-a-configured-key", 401, 190),
    (KEY_B, 403, 200),  # a real key, but for another pixel
])
async def test_sdk_raises_graph_errors_for_refused_keys(
    key: str, status: int, code: int, start_server: ServerFactory, tmp_path: Path,
    fake_graph: FakeGraph, graph_at: Any,
) -> None:
    client = await start_server(server_settings(tmp_path, fake_graph.url))
    graph_at(client, key)
    request = EventRequest(pixel_id=PIXEL_A, events=[sdk_event("nope-1")])
    with pytest.raises(FacebookRequestError) as raised:
        await asyncio.get_running_loop().run_in_executor(None, request.execute)
    error = raised.value
    assert error.http_status() == status
    assert error.api_error_code() == code
    assert error.api_error_type() == "OAuthException"
    assert key not in str(error.body())
    assert fake_graph.requests == []


async def test_sdk_strict_mode_is_meta_all_or_nothing(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph, graph_at: Any
) -> None:
    """`strict=true` as one more form field (EventRequest has no such parameter, so through the
    SDK's own FacebookAdsApi.call): the SDK gets Graph's code 100 naming the event and field."""
    client = await start_server(settings)
    graph_at(client)
    bad = sdk_event("bad-1")
    bad.custom_data = CustomData(currency="eur")  # a Purchase without value
    api = FacebookAdsApi.get_default_api()
    url = f"{FacebookSession.GRAPH}/v26.0/{PIXEL_A}/events"
    params = EventRequest(pixel_id=PIXEL_A, events=[sdk_event("ok-1"), bad]).get_params()
    params["strict"] = "true"
    loop = asyncio.get_running_loop()
    with pytest.raises(FacebookRequestError) as raised:
        await loop.run_in_executor(None, lambda: api.call("POST", url, params=params))
    assert raised.value.api_error_code() == 100
    assert raised.value.body()["error"]["error_user_msg"] == (
        "data[1]: Purchase events need custom_data.value as a number; with strict=true no "
        "event of this request was accepted")
    assert fake_graph.requests == []
