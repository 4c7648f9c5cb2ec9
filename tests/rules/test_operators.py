"""Every operator, on matching, non-matching, absent and wrongly-typed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.identity.geo import GeoInfo

from .helpers import BOT, matches

PARIS = GeoInfo("FR", "IDF", "Paris", "75001")

CASES: list[tuple[str, dict[str, Any], bool]] = [
    # equals (plain value and explicit)
    ("{event_name: Purchase}", {"event_name": "Purchase"}, True),
    ("{event_name: Purchase}", {"event_name": "purchase"}, False),  # case-sensitive
    ("{event_name: {equals: Purchase}}", {"event_name": "Purchase"}, True),
    ("{event_name: {equals: Purchase}}", {"event_name": ["Purchase"]}, False),
    ("{custom_data.value: 10}", {"custom_data": {"value": 10.0}}, True),
    ("{custom_data.value: 10}", {"custom_data": {"value": "10"}}, True),  # digits sent as text
    ("{custom_data.value: 10}", {"custom_data": {"value": True}}, False),
    ("{custom_data.vip: true}", {"custom_data": {"vip": True}}, True),
    ("{custom_data.vip: true}", {"custom_data": {"vip": 1}}, False),
    ("{custom_data.sku: abc}", {"custom_data": {"sku": {"abc": 1}}}, False),
    # not_equals: needs the field present
    ("{event_name: {not_equals: Purchase}}", {"event_name": "Lead"}, True),
    ("{event_name: {not_equals: Purchase}}", {"event_name": "Purchase"}, False),
    ("{custom_data.currency: {not_equals: EUR}}", {}, False),
    # in / not_in (also a plain list)
    ("{event_name: [Lead, Purchase]}", {"event_name": "Lead"}, True),
    ("{event_name: {in: [Lead, Purchase]}}", {"event_name": "PageView"}, False),
    ("{custom_data.value: {in: [1, 2.5]}}", {"custom_data": {"value": 2.5}}, True),
    ("{custom_data.value: {in: [1, 2.5]}}", {"custom_data": {"value": [1]}}, False),
    ("{event_name: {not_in: [Lead, Purchase]}}", {"event_name": "PageView"}, True),
    ("{event_name: {not_in: [Lead, Purchase]}}", {"event_name": "Lead"}, False),
    ("{custom_data.x: {not_in: [a]}}", {}, False),
    # contains: text, or an element of a list
    ("{event_source_url: {contains: /checkout}}",
     {"event_source_url": "https://s.example/checkout/ok"}, True),
    ("{event_source_url: {contains: [/cart, /basket]}}",
     {"event_source_url": "https://s.example/basket"}, True),
    ("{event_source_url: {contains: /checkout}}", {"event_source_url": "https://s.example/"},
     False),
    ("{custom_data.content_ids: {contains: sku-1}}", {"custom_data": {"content_ids": ["sku-1"]}},
     True),
    ("{custom_data.content_ids: {contains: 7}}", {"custom_data": {"content_ids": [7, 8]}}, True),
    ("{custom_data.content_ids: {contains: sku-1}}", {"custom_data": {"content_ids": ["sku-10"]}},
     False),
    ("{custom_data.content_ids: {contains: sku}}", {"custom_data": {"content_ids": 5}}, False),
    # starts_with / ends_with
    ("{url.path: {starts_with: /blog/}}", {"event_source_url": "https://s.example/blog/a"}, True),
    ("{url.path: {starts_with: [/news/, /blog/]}}", {"event_source_url": "https://s.example/blog"},
     False),
    ("{url.host: {ends_with: .example.com}}", {"event_source_url": "https://shop.example.com/"},
     True),
    ("{url.host: {ends_with: .example.com}}", {"event_source_url": "https://example.org/"}, False),
    ("{event_id: {starts_with: test-}}", {"event_id": 12}, False),
    # matches (RE2, searched anywhere)
    ("{url.path: {matches: '^/order/[0-9]+$'}}", {"event_source_url": "https://s.example/order/12"},
     True),
    ("{url.path: {matches: '^/order/[0-9]+$'}}", {"event_source_url": "https://s.example/order/x"},
     False),
    ("{event_name: {matches: '(?i)^purchase$'}}", {"event_name": "PURCHASE"}, True),
    ("{event_name: {matches: chase}}", {"event_name": "Purchase"}, True),
    ("{custom_data.code: {matches: '1'}}", {"custom_data": {"code": 1}}, False),
    # exists
    ("{custom_data.coupon: {exists: true}}", {"custom_data": {"coupon": "X"}}, True),
    ("{custom_data.coupon: {exists: true}}", {"custom_data": {"coupon": None}}, False),
    ("{custom_data.coupon: {exists: false}}", {}, True),
    ("{custom_data.coupon: {exists: false}}", {"custom_data": "not a mapping"}, True),
    ("{user_data.em: {exists: true}}", {}, True),
    ("{user_data.ph: {exists: true}}", {}, False),
    ("{user_data.ph: {exists: false}}", {}, True),
    # gt, gte, lt, lte: numbers, or text that is exactly a number
    ("{custom_data.value: {gt: 100}}", {"custom_data": {"value": 100.5}}, True),
    ("{custom_data.value: {gt: 100}}", {"custom_data": {"value": 100}}, False),
    ("{custom_data.value: {gte: 100}}", {"custom_data": {"value": 100}}, True),
    ("{custom_data.value: {lt: 0}}", {"custom_data": {"value": "-1.5"}}, True),
    ("{custom_data.value: {lte: 5}}", {"custom_data": {"value": "5"}}, True),
    ("{custom_data.value: {lte: 5}}", {"custom_data": {"value": "5 EUR"}}, False),
    ("{custom_data.value: {gt: 0}}", {"custom_data": {"value": True}}, False),
    ("{custom_data.value: {gt: 0}}", {"custom_data": {"value": "nan"}}, False),
    ("{custom_data.value: {gt: 0}}", {}, False),
    ("{event_time: {gte: 1800000000}}", {}, True),
    # nested custom_data paths and list indexes
    ("{custom_data.contents.0.id: a}", {"custom_data": {"contents": [{"id": "a"}]}}, True),
    ("{custom_data.contents.1.id: a}", {"custom_data": {"contents": [{"id": "a"}]}}, False),
    ("{custom_data.a.b: c}", {"custom_data": {"a": "b"}}, False),
    # url.query: first value, decoded
    ("{url.query.utm_source: google}", {"event_source_url": "https://s/?utm_source=google"}, True),
    ("{url.query.q: 'a b'}", {"event_source_url": "https://s/?q=a+b&q=c"}, True),
    ("{url.query.q: c}", {"event_source_url": "https://s/?q=a+b&q=c"}, False),
    ("{url.query.q: {exists: true}}", {"event_source_url": None}, False),
    ("{url.host: www.example.com}", {"event_source_url": "https://WWW.Example.com:8443/x"}, True),
    ("{url.path: /}", {"event_source_url": "https://www.example.com"}, True),
    ("{url.host: {exists: false}}", {"event_source_url": 42}, True),
]


@pytest.mark.parametrize(("when", "data", "expected"), CASES)
def test_operator(tmp_path: Path, when: str, data: dict[str, Any], expected: bool) -> None:
    assert matches(tmp_path, when, data) is expected


@pytest.mark.parametrize(("when", "ip", "expected"), [
    ("{context.ip: {in_cidr: [10.0.0.0/8]}}", "10.1.2.3", True),
    ("{context.ip: {in_cidr: [10.0.0.0/8]}}", "11.1.2.3", False),
    ("{context.ip: {in_cidr: 10.0.0.0/8}}", "10.1.2.3", True),
    ("{context.ip: {in_cidr: [10.0.0.0/8, '2001:db8::/32']}}", "2001:db8::1", True),
    ("{context.ip: {in_cidr: ['2001:db8::/32']}}", "10.1.2.3", False),
    ("{context.ip: {in_cidr: [10.0.0.0/8]}}", "::ffff:10.9.9.9", True),  # IPv4-mapped
    ("{context.ip: {in_cidr: [192.0.2.7]}}", "192.0.2.7", True),  # one address
    ("{context.ip: {in_cidr: [10.0.0.0/8]}}", "not an ip", False),
    ("{context.ip: {in_cidr: [10.0.0.0/8]}}", None, False),
    ("{context.ip: {not_in_cidr: [10.0.0.0/8]}}", "11.1.2.3", True),
    ("{context.ip: {not_in_cidr: [10.0.0.0/8]}}", "10.1.2.3", False),
    ("{context.ip: {not_in_cidr: [10.0.0.0/8]}}", None, False),
    ("{context.ip: 10.1.2.3}", "10.1.2.3", True),
])
def test_in_cidr(tmp_path: Path, when: str, ip: str | None, expected: bool) -> None:
    assert matches(tmp_path, when, ip=ip) is expected


@pytest.mark.parametrize(("when", "expected"), [
    ("{context.ua.is_bot: true}", True),
    ("{context.ua.browser: Googlebot}", True),
    ("{context.ua.device: Spider, context.ua.os: Other}", True),
    ("{context.ua.browser_version: {starts_with: '2.'}}", True),
    ("{context.geo.country: FR}", True),
    ("{context.geo.country: fr}", False),
    ("{context.geo.region: IDF, context.geo.city: Paris}", True),
    ("{context.geo.postal: 75001}", True),  # typed as a number, compared as text
    ("{context.source: browser, context.pixel_id: '111'}", True),
    ("{context.source: server}", False),
])
def test_context_fields(tmp_path: Path, when: str, expected: bool) -> None:
    assert matches(tmp_path, when, ua=BOT, geo=PARIS) is expected


def test_context_fields_absent_without_enrichment(tmp_path: Path) -> None:
    assert not matches(tmp_path, "{context.ua.is_bot: false}", ua=None)
    assert matches(tmp_path, "{context.geo.country: {exists: false}}", geo=None)
    assert not matches(tmp_path, "{context.geo.country: {not_equals: FR}}", geo=None)


def test_text_fields_take_values_as_typed(tmp_path: Path) -> None:
    """YAML reads NO as false and 0123 as 83; a text field means what the person typed."""
    norway = GeoInfo("NO", None, None, "0150")
    assert matches(tmp_path, "{context.geo.country: NO}", geo=norway)
    assert matches(tmp_path, "{context.geo.postal: 0150}", geo=norway)
    assert matches(tmp_path, "{custom_data.zip: 00501}", {"custom_data": {"zip": "00501"}})
    assert not matches(tmp_path, "{custom_data.zip: 00501}", {"custom_data": {"zip": 501}})


def test_named_lists(tmp_path: Path) -> None:
    lists = "lists:\n  vip: [a@x, 7]\n  nets: [10.0.0.0/8]\n"
    text = "version: 1\n" + lists + "rules:\n  - name: r\n    when: {}\n    drop: true\n"
    from .helpers import decide, load  # local: each case loads its own rules

    def run(when: str, data: dict[str, Any], ip: str = "81.2.69.142") -> bool:
        return decide(load(tmp_path, text.replace("{}", when)), data, ip=ip).dropped

    assert run("{custom_data.who: {in_list: vip}}", {"custom_data": {"who": "a@x"}})
    assert run("{custom_data.who: {in_list: vip}}", {"custom_data": {"who": 7}})
    assert not run("{custom_data.who: {in_list: vip}}", {"custom_data": {"who": "b@x"}})
    assert run("{custom_data.who: {not_in_list: vip}}", {"custom_data": {"who": "b@x"}})
    assert not run("{custom_data.who: {not_in_list: vip}}", {})
    assert run("{context.ip: {in_cidr: nets}}", {}, ip="10.0.0.1")
    assert run("{context.ip: {not_in_cidr: nets}}", {}, ip="8.8.8.8")
