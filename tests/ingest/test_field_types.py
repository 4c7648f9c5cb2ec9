"""Documented Conversions API fields of the wrong type: each such event is refused by name (never
by value) and kept as an `invalid` row, while the batch's other events go through; tolerated
forms (numbers as text, flags as 1/0) arrive upstream with the documented type; custom
properties pass untouched. A property test mutates valid events into wrong types."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path
from typing import Any

import hypothesis
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from gateway.config import parse_settings
from gateway.hashing import CLEAR_KEYS, HASHED_KEYS
from gateway.ingest.fieldtypes import CLEAR_TYPES, MAX_REASONS, USER_DATA, check_fields
from gateway.settings import Settings

from ..conftest import PIXEL_A, destination_yaml, settings_yaml, stored_rows, type_yaml
from ..fake_graph import FakeGraph
from .test_server_ingress import (
    KEY,
    ServerFactory,
    access_keys_yaml,
    capi_body,
    event,
    post_raw,
    server_settings,
    start_server,
)

__all__ = ["start_server"]  # the fixture, shared with the ingress tests

Path_ = tuple[str | int, ...]


@pytest.fixture
def settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    return server_settings(tmp_path, fake_graph.url)


def rich_event(**fields: Any) -> dict[str, Any]:
    """A valid event carrying every family of documented field (contents, app_data, ...)."""
    now = int(time.time())
    data = event(
        custom_data={"value": 42.5, "currency": "EUR", "content_ids": ["sku-1"],
                     "contents": [{"id": "sku-1", "quantity": 1, "item_price": 42.5}],
                     "num_items": 1, "order_id": "order-1"},
        opt_out=False, referrer_url="https://shop.example.com/cart",
        data_processing_options=["LDU"], data_processing_options_country=0,
        data_processing_options_state=0, app_data={"advertiser_tracking_enabled": True},
        original_event_data={"event_name": "Purchase", "event_time": now - 120},
        attribution_data={"attribution_share": 0.5, "visit_time": now - 600},
    )
    data.update(fields)
    return data


def mutate(data: dict[str, Any], path: Path_, value: Any) -> dict[str, Any]:
    target: Any = data
    for step in path[:-1]:
        target = target.setdefault(step, {}) if isinstance(step, str) else target[step]
    target[path[-1]] = value
    return data


def dotted(path: Path_) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)[1:]


# (path, wrong value): each event is refused with a reason starting with the dotted path.
WRONG: list[tuple[Path_, Any]] = [
    (("user_data", "fbp"), {}),  # issue 19's four
    (("referrer_url",), 1.5),
    (("opt_out",), "NaN"),
    (("user_data", "client_ip_address"), 0),
    (("event_source_url",), ["https://shop.example.com/thanks"]),
    (("messaging_channel",), 3),
    (("data_processing_options",), "LDU-7777"),
    (("data_processing_options", 0), 7777),
    (("data_processing_options_country",), "US-7777"),
    (("data_processing_options_state",), 1000.5),
    (("user_data", "em"), {"address": "x@example.com"}),
    (("user_data", "ph"), [["16505557777"]]),
    (("user_data", "client_user_agent"), 77777),
    (("user_data", "fbc"), ["fb.1.7777"]),
    (("user_data", "external_id"), True),
    (("user_data", "lead_id"), 7777.25),
    (("user_data", "client_ip_address"), "not-an-ip-7777"),
    (("custom_data", "value"), "twelve-7777"),
    (("custom_data", "value"), True),
    (("custom_data", "net_revenue"), "NaN"),
    (("custom_data", "currency"), 978),
    (("custom_data", "content_name"), 7777),
    (("custom_data", "content_ids"), "sku-7777"),
    (("custom_data", "content_ids", 0), {"id": "sku-7777"}),
    (("custom_data", "contents"), {"id": "sku-7777"}),
    (("custom_data", "contents", 0), ["sku-7777", 2]),
    (("custom_data", "contents", 0, "quantity"), "two-7777"),
    (("custom_data", "contents", 0, "item_price"), "free-7777"),
    (("custom_data", "contents", 0, "id"), {"sku": 7777}),
    (("custom_data", "num_items"), 2.5),
    (("custom_data", "predicted_ltv"), [7777]),
    (("custom_data", "order_id"), {"n": 7777}),
    (("custom_data", "status"), 7777),
    (("custom_data", "search_string"), ["shoes-7777"]),
    (("custom_data", "delivery_category"), 7777),
    (("app_data", "advertiser_tracking_enabled"), "yes-7777"),
    (("app_data", "extinfo"), "i2,com.example"),
    (("original_event_data", "event_time"), "yesterday-7777"),
    (("attribution_data", "attribution_share"), "half-7777"),
    (("attribution_data", "attribution_setting"), 7777),
]
# The shape every later step relies on: refused, never stored.
UNSTORABLE: list[tuple[Path_, Any]] = [
    (("event_name",), 7777),
    (("event_time",), "yesterday-7777"),
    (("event_id",), {"id": 7777}),
    (("action_source",), ["website"]),
    (("user_data",), ["x-7777@example.com"]),
    (("custom_data",), "cart-7777"),
    (("app_data",), ["i2"]),
    (("original_event_data",), "Purchase-7777"),
    (("attribution_data",), 7777),
]


async def test_each_wrongly_typed_field_is_refused_by_name_and_kept_invalid(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    client = await start_server(settings)
    cases = WRONG + UNSTORABLE
    events = [rich_event(event_id="good-1")] + [
        mutate(rich_event(event_id=f"bad-{n}"), path, copy.deepcopy(value))
        for n, (path, value) in enumerate(cases)]
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(*events))
    assert response.status == 202
    text = await response.text()
    answer = orjson.loads(text)
    assert answer["events_received"] == 1
    reasons = {r["index"]: r["reasons"] for r in answer["events_rejected"]}
    for n, (path, value) in enumerate(cases, start=1):
        named = [reason for reason in reasons.get(n, []) if reason.startswith(dotted(path))]
        assert named, f"{dotted(path)} = {value!r} was not refused by name: {reasons.get(n)}"
    assert "7777" not in text  # reasons name fields, never values
    assert [e["event_id"] for e in await fake_graph.wait_for_events(1)] == ["good-1"]

    # Kept as `invalid` rows with their reasons (hashed like any other), unless unstorable.
    rows = {row.event_id: row for row in stored_rows(settings)}
    assert rows.pop("good-1").state in {"pending", "inflight", "delivered"}
    assert set(rows) == {f"bad-{n}" for n in range(len(WRONG))}
    for n, (path, _) in enumerate(WRONG):
        row = rows[f"bad-{n}"]
        assert row.state == "invalid" and dotted(path) in (row.last_error or "")
        assert b"x@example.com" not in (row.payload or b"")  # hashed or dropped, never raw

    # The Graph route lists the same refusals in `messages`, one per event.
    response = await client.post(f"/v26.0/{PIXEL_A}/events",
                                 json={"data": events[1:4], "access_token": KEY})
    assert response.status == 400  # none accepted: an error, as for any other refusal
    message = (await response.json())["error"]["error_user_msg"]
    assert message.startswith("no event was accepted: data[0]: user_data.fbp must be text")
    assert "(and 2 more refused events)" in message


async def test_tolerated_forms_arrive_with_the_documented_types(
    start_server: ServerFactory, settings: Settings, fake_graph: FakeGraph
) -> None:
    """Numbers as text (PHP from a database), flags as 1/"true", a fractional time: accepted
    and relayed as the documented type; custom properties and nulls pass untouched."""
    client = await start_server(settings)
    now = time.time()
    sent = rich_event(
        event_time=str(int(now) - 60), opt_out="false", data_processing_options=["LDU"],
        data_processing_options_country="1", data_processing_options_state=1000.0,
        custom_data={"value": "12.50", "currency": "EUR", "num_items": "3",
                     "content_ids": [123, "sku-2"], "predicted_ltv": "99",
                     "contents": [{"id": 123, "quantity": "2", "item_price": "6.25"}],
                     "tier": {"gold": [1, None]}, "coupon": None, "status": True},
        app_data={"advertiser_tracking_enabled": 1, "application_tracking_enabled": "true",
                  "extinfo": ["i2", "com.example", None, 1080]},
        user_data={"em": "joe@example.com", "zp": 94025, "client_user_agent": "UA/1.0",
                   "fbp": None, "client_ip_address": "203.0.113.9"},
    )
    fractional = rich_event(event_name="Lead", event_time=now - 30.75)
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(sent, fractional))
    assert await response.json() == {"events_received": 2, "events_rejected": []}
    first, second = await fake_graph.wait_for_events(2)
    assert first["event_time"] == int(now) - 60
    assert first["opt_out"] is False
    assert (first["data_processing_options_country"],
            first["data_processing_options_state"]) == (1, 1000)
    assert first["custom_data"] == {
        "value": 12.5, "currency": "EUR", "num_items": 3, "content_ids": [123, "sku-2"],
        "predicted_ltv": 99, "contents": [{"id": 123, "quantity": 2, "item_price": 6.25}],
        "tier": {"gold": [1, None]}, "coupon": None, "status": True}
    assert first["app_data"] == {"advertiser_tracking_enabled": True,
                                 "application_tracking_enabled": True,
                                 "extinfo": ["i2", "com.example", None, 1080]}
    assert second["event_time"] == int(now - 30.75)


async def test_a_wrongly_typed_event_is_kept_even_when_a_rule_would_drop_it(
    start_server: ServerFactory, tmp_path: Path, fake_graph: FakeGraph
) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "drop.yaml").write_text(
        "version: 1\nrules:\n  - name: no-leads\n    when: {event_name: Lead}\n    drop: true\n")
    settings = server_settings(tmp_path, fake_graph.url, extra=f"rules: {{path: {rules}}}\n")
    client = await start_server(settings)
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(
        event(event_id="kept"), event("Lead", event_id="dropped"),
        event("Lead", event_id="wrong", opt_out="NaN")))
    assert await response.json() == {"events_received": 2, "events_rejected": [
        {"index": 2, "reasons": ["opt_out must be true or false"]}]}
    rows = {row.event_id: row.state for row in stored_rows(settings)}
    assert rows["wrong"] == "invalid" and "dropped" not in rows


async def test_an_address_that_is_no_ip_is_not_stored_when_ips_are_truncated(
    start_server: ServerFactory, tmp_path: Path, fake_graph: FakeGraph
) -> None:
    settings = server_settings(tmp_path, fake_graph.url, extra="identity: {truncate_ip: true}\n")
    client = await start_server(settings)
    bad = event(event_id="bad-ip", user_data={"em": "joe@example.com", "client_user_agent": "UA",
                                              "client_ip_address": "203.0.113.9/8"})
    response = await post_raw(client, f"/capi/{PIXEL_A}/events", capi_body(event(), bad))
    assert (await response.json())["events_rejected"] == [
        {"index": 1, "reasons": ["user_data.client_ip_address must be an IPv4 or IPv6 address"]}]
    [row] = [row for row in stored_rows(settings) if row.event_id == "bad-ip"]
    assert row.state == "invalid" and b"203.0.113" not in (row.payload or b"")


def test_every_user_data_key_hashing_knows_has_a_type() -> None:
    assert set(CLEAR_TYPES) == CLEAR_KEYS
    assert set(USER_DATA.fields) == CLEAR_KEYS | HASHED_KEYS


def test_reasons_are_capped_per_event() -> None:
    data = rich_event(custom_data={"contents": [{"quantity": "x"}] * 50})
    reasons = check_fields(data)
    assert len(reasons) == MAX_REASONS
    assert reasons[-1] == f"and {50 - MAX_REASONS + 1} more fields of the wrong type"


# -- property: a valid event's documented fields mutated into wrong types ---------------------
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**60), 2**60),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
containers = st.one_of(st.lists(json_scalars, max_size=2),
                       st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))
booleans = st.booleans()
not_numeric = st.text(max_size=8).filter(lambda s: not _numeric(s))
fractions = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not f.is_integer())


def _numeric(text: str) -> bool:
    """Text that reads as a number (kept out of the wrong values: numeric text is tolerated)."""
    return re.fullmatch(r"\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*", text) \
        is not None


# What a field of each documented type must never be accepted as.
whole_numbers = st.integers(-(2**63), 2**63 - 1)  # what JSON carries between programs
finite = st.floats(allow_nan=False, allow_infinity=False)  # NaN would be sent as null
NOT_TEXT = st.one_of(booleans, whole_numbers, finite, containers)
NOT_ID = st.one_of(booleans, fractions, containers)
NOT_NUMBER = st.one_of(booleans, not_numeric, containers)
NOT_WHOLE = st.one_of(booleans, fractions, not_numeric, containers)
NOT_FLAG = st.one_of(whole_numbers.filter(lambda n: n not in (0, 1)), finite,
                     st.text(max_size=8).filter(
                         lambda s: s.lower() not in {"true", "false", "1", "0"}), containers)
NOT_OBJECT = st.one_of(booleans, whole_numbers, st.text(max_size=8), st.lists(json_scalars))
NOT_LIST = st.one_of(booleans, whole_numbers, st.text(max_size=8),
                     st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))
NOT_HASHABLE = st.one_of(booleans, st.dictionaries(st.text(max_size=4), json_scalars,
                                                   min_size=1, max_size=2),
                         st.lists(st.one_of(booleans, st.lists(st.text())), min_size=1))
DOCUMENTED: list[tuple[Path_, st.SearchStrategy[Any]]] = [
    (("event_source_url",), NOT_TEXT), (("referrer_url",), NOT_TEXT),
    (("action_source",), NOT_TEXT), (("messaging_channel",), NOT_TEXT),
    (("opt_out",), NOT_FLAG), (("event_id",), NOT_ID),
    (("data_processing_options",), NOT_LIST), (("data_processing_options", 0), NOT_TEXT),
    (("data_processing_options_country",), NOT_WHOLE),
    (("data_processing_options_state",), NOT_WHOLE),
    (("user_data", "fbp"), NOT_TEXT), (("user_data", "fbc"), NOT_TEXT),
    (("user_data", "client_ip_address"), NOT_TEXT),
    (("user_data", "client_user_agent"), NOT_TEXT),
    (("user_data", "em"), NOT_HASHABLE), (("user_data", "external_id"), NOT_HASHABLE),
    (("custom_data",), NOT_OBJECT), (("custom_data", "value"), NOT_NUMBER),
    (("custom_data", "currency"), NOT_TEXT), (("custom_data", "content_ids"), NOT_LIST),
    (("custom_data", "contents"), NOT_LIST), (("custom_data", "contents", 0), NOT_OBJECT),
    (("custom_data", "contents", 0, "quantity"), NOT_WHOLE),
    (("custom_data", "contents", 0, "item_price"), NOT_NUMBER),
    (("custom_data", "num_items"), NOT_WHOLE), (("custom_data", "predicted_ltv"), NOT_NUMBER),
    (("custom_data", "order_id"), NOT_ID), (("app_data",), NOT_OBJECT),
    (("app_data", "advertiser_tracking_enabled"), NOT_FLAG),
    (("original_event_data", "event_time"), NOT_NUMBER),
    (("attribution_data", "attribution_share"), NOT_NUMBER),
]
wrong_fields = st.sampled_from(DOCUMENTED).flatmap(
    lambda case: case[1].map(lambda value: (case[0], value)))
# Anything at all, anywhere: documented fields, custom properties, unknown keys.
ANY_PATHS: list[Path_] = [path for path, _ in DOCUMENTED] + [
    ("custom_data", "my_property"), ("custom_data", "contents", 0, "colour"), ("extra",),
    ("user_data", "ge"), ("event_time",), ("event_name",), ("user_data",)]
any_fields = st.tuples(st.sampled_from(ANY_PATHS), json_values)


@pytest.fixture
def gateway_box() -> dict[str, Any]:
    """Holds one gateway for all of a property test's examples (a fixture lives that long)."""
    return {}


@hypothesis.settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wrong=st.lists(wrong_fields, min_size=1, max_size=4),
       anything=st.lists(any_fields, max_size=3))
async def test_wrongly_typed_documented_fields_are_never_accepted(
    start_server: ServerFactory, tmp_path: Path, fake_graph: FakeGraph,
    gateway_box: dict[str, Any], wrong: list[tuple[Path_, Any]],
    anything: list[tuple[Path_, Any]],
) -> None:
    """Never a 5xx, always JSON, and each wrongly typed event among the refused (on both
    routes); a dry-run destination of every other type validates what reaches it too."""
    if "client" not in gateway_box:
        gateway_box["client"] = await start_server(gateway_settings(tmp_path, fake_graph))
    client = gateway_box["client"]
    run = gateway_box["runs"] = gateway_box.get("runs", 0) + 1
    events = [mutate(rich_event(event_id=f"w{run}-{n}"), path, value)
              for n, (path, value) in enumerate(wrong)]
    events += [mutate(rich_event(event_id=f"a{run}-{n}"), path, value)
               for n, (path, value) in enumerate(anything)]
    # The routes take turns: one request per example keeps the test fast.
    route = f"/capi/{PIXEL_A}/events" if run % 2 else \
        f"/v26.0/{PIXEL_A}/events?access_token={KEY}"
    response = await post_raw(client, route, capi_body(*events), "application/json")
    assert response.status < 500
    answer = orjson.loads(await response.read())  # always JSON
    if route.startswith("/capi"):
        refused = {r["index"] for r in answer.get("events_rejected", [])}
    elif response.status == 200:
        refused = {int(m[5:m.index("]")]) for m in answer["messages"]
                   if m.endswith("(not accepted)")}
    else:  # none accepted: Graph's error names only the first
        assert answer["error"]["code"] == 100
        refused = set(range(len(events)))
    assert set(range(len(wrong))) <= refused, (wrong, answer)


def gateway_settings(tmp_path: Path, fake_graph: FakeGraph) -> Settings:
    others = [
        type_yaml("tiktok", type="tiktok", pixel_code="CTESTPIXEL0123456789",
                  access_token="T", dry_run=True),
        type_yaml("ga4", type="ga4", measurement_id="G-TEST12345", api_secret="S",
                  dry_run=True),
        type_yaml("snap", type="snapchat", pixel_id="0b3e6e5c-1f2a-4c3d-9e8f-0123456789ab",
                  access_token="S", dry_run=True),
        type_yaml("pin", type="pinterest", ad_account_id="549755885175",
                  access_token="P", dry_run=True),
    ]
    return parse_settings(settings_yaml(
        tmp_path, destination_yaml("main", fake_graph.url, pixel_id=PIXEL_A), *others,
        extra=access_keys_yaml(("backend", KEY, [PIXEL_A]))), env={})
