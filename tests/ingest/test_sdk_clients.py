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
from facebook_business.adobjects.serverside.app_data import AppData
from facebook_business.adobjects.serverside.attribution_data import AttributionData
from facebook_business.adobjects.serverside.attribution_setting import AttributionSetting
from facebook_business.adobjects.serverside.content import Content
from facebook_business.adobjects.serverside.custom_data import CustomData
from facebook_business.adobjects.serverside.delivery_category import DeliveryCategory
from facebook_business.adobjects.serverside.event import Event
from facebook_business.adobjects.serverside.event_request import EventRequest
from facebook_business.adobjects.serverside.event_request_async import EventRequestAsync
from facebook_business.adobjects.serverside.extended_device_info import ExtendedDeviceInfo
from facebook_business.adobjects.serverside.gender import Gender
from facebook_business.adobjects.serverside.messaging_channel import MessagingChannel
from facebook_business.adobjects.serverside.original_event_data import OriginalEventData
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


def every_field_event(event_id: str) -> Event:
    """An app event with every documented field the SDK can set (enum-valued attribution
    fields aside: the SDK leaves them as objects it cannot encode)."""
    now = int(time.time())
    user_data = UserData(
        emails=[EMAIL], phones=["+16505551212"], genders=[Gender.FEMALE],
        dates_of_birth=["19900102"], last_names=["Smith"], first_names=["Joe"],
        cities=["Menlo Park"], states=["CA"], country_codes=["US"], zip_codes=["94025"],
        external_ids=["crm-7"], client_ip_address="203.0.113.9", client_user_agent=UA,
        fbc="fb.1.1700000000000.AbCd", fbp="fb.1.1700000000000.42", subscription_id="sub-1",
        fb_login_id="1234567890", lead_id="9876543210", f5first="joeyy", f5last="smith",
        fi="j", dobd="02", dobm="01", doby="1990", madid="ad-id", anon_id="anon-1",
        ctwa_clid="ctwa-1", page_id="page-1")
    custom_data = CustomData(
        value=19.99, net_revenue=15.0, currency="eur", content_name="Shoe",
        content_category="Shoes", content_ids=["sku-1"], content_type="product",
        contents=[Content(product_id="sku-1", quantity=2, item_price=9.995, title="Shoe",
                          description="Red", brand="Acme", category="Shoes",
                          delivery_category=DeliveryCategory.HOME_DELIVERY)],
        order_id="order-1", predicted_ltv=120.0, num_items=2, status="done",
        search_string="red shoe", delivery_category=DeliveryCategory.CURBSIDE,
        item_number="item-1", custom_properties={"tier": "gold", "tags": {"a": [1, 2]}})
    extinfo = ExtendedDeviceInfo(
        ext_info_version="i2", app_package_name="com.example", short_version="1",
        long_version="1.0", os_version="17.0", device_model_name="iPhone", locale="en_US",
        timezone_abbreviation="PST", carrier="Carrier", screen_width=1170,
        screen_height=2532, screen_density="3.0", cpu_core_count=6, total_disk_space_gb=128,
        free_disk_space_gb=64, device_time_zone="America/Los_Angeles")
    app_data = AppData(
        application_tracking_enabled=True, advertiser_tracking_enabled=False,
        campaign_ids="c-1", consider_views=True, extinfo=extinfo, include_dwell_data=True,
        include_video_data=False, install_referrer="ref", installer_package="store",
        receipt_data="receipt", url_schemes="example://", windows_attribution_id="win-1")
    attribution = AttributionData(
        scope="click", visit_time=now - 600, ad_id="1", adset_id="2", campaign_id="3",
        attribution_share=0.5, attr_window=7, attribution_value=9.5,
        attribution_source="meta", touchpoint_type="click", touchpoint_ts=now - 700,
        auditing_token="t", linkage_key="k", touchpoint_id="tp-1", total_credit=1.0,
        partner_client_id="p-1", attribution_setting=AttributionSetting(
            inactivity_window_hours=24, reattribution_window_hours=48))
    return Event(
        event_name="Purchase", event_time=now - 30, event_id=event_id,
        event_source_url="https://shop.example.com/thanks",
        referrer_url="https://shop.example.com/cart", opt_out=False,
        action_source=ActionSource.APP, messaging_channel=MessagingChannel.WHATSAPP,
        user_data=user_data, custom_data=custom_data, app_data=app_data,
        data_processing_options=["LDU"], data_processing_options_country=1,
        data_processing_options_state=1000, advanced_measurement_table="amt",
        original_event_data=OriginalEventData(event_name="Purchase", event_time=now - 60,
                                              order_id="order-1", event_id="orig-1"),
        attribution_data=attribution)


async def test_every_field_the_sdk_sets_is_accepted_and_relayed_as_sent(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph, graph_at: Any
) -> None:
    """The field-type checks never refuse what the SDK really sends."""
    client = await start_server(settings)
    graph_at(client)
    sent = every_field_event("every-1")
    response = await EventRequestAsync(pixel_id=PIXEL_A, events=[sent]).execute()
    assert response.events_received == 1 and response.messages == []
    [arrived] = await fake_graph.wait_for_events(1)
    expected = sent.normalize()
    # The SDK leaves external_id in the clear; the gateway hashes it like Meta recommends.
    expected["user_data"]["external_id"] = [hashlib.sha256(b"crm-7").hexdigest()]
    for data in (expected, arrived):  # the SDK dedups lists through a set: any order
        data["user_data"] = {key: sorted(value) if isinstance(value, list) else value
                             for key, value in data["user_data"].items()}
    assert arrived == expected  # the SDK's hashes untouched, nothing added or converted


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
