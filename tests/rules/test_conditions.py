"""Combinators (all, any, not), several keys in one mapping, lists of conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .helpers import matches

LEAD_FR = {"event_name": "Lead", "custom_data": {"country": "FR"}}


@pytest.mark.parametrize(("when", "data", "expected"), [
    # several keys in one mapping: all of them
    ("{event_name: Lead, custom_data.country: FR}", LEAD_FR, True),
    ("{event_name: Lead, custom_data.country: BE}", LEAD_FR, False),
    # a list of conditions: all of them
    ("[{event_name: Lead}, {custom_data.country: FR}]", LEAD_FR, True),
    ("[{event_name: Lead}, {custom_data.country: BE}]", LEAD_FR, False),
    # several operators on one field: all of them
    ("{custom_data.value: {gt: 1, lt: 10}}", {"custom_data": {"value": 5}}, True),
    ("{custom_data.value: {gt: 1, lt: 10}}", {"custom_data": {"value": 50}}, False),
    # all
    ("{all: [{event_name: Lead}, {custom_data.country: FR}]}", LEAD_FR, True),
    ("{all: [{event_name: Lead}, {custom_data.country: BE}]}", LEAD_FR, False),
    ("{all: [{event_name: Lead}, {custom_data.country: FR}, {event_id: e1}]}", LEAD_FR, True),
    # any
    ("{any: [{event_name: Purchase}, {custom_data.country: FR}]}", LEAD_FR, True),
    ("{any: [{event_name: Purchase}, {custom_data.country: BE}]}", LEAD_FR, False),
    ("{any: [{event_name: Purchase}, {event_name: Lead}, {event_name: X}]}", LEAD_FR, True),
    # not: true when the inner condition does not hold, including when the field is absent
    ("{not: {event_name: Purchase}}", LEAD_FR, True),
    ("{not: {event_name: Lead}}", LEAD_FR, False),
    ("{not: {custom_data.coupon: X}}", LEAD_FR, True),
    ("{not: [{event_name: Lead}, {custom_data.country: BE}]}", LEAD_FR, True),
    # nesting
    ("{any: [{all: [{event_name: Lead}, {not: {custom_data.country: BE}}]}, {event_id: zz}]}",
     LEAD_FR, True),
    ("{event_name: Lead, not: {any: [{custom_data.country: FR}, {custom_data.country: BE}]}}",
     LEAD_FR, False),
])
def test_combinators(tmp_path: Path, when: str, data: dict[str, Any], expected: bool) -> None:
    assert matches(tmp_path, when, data) is expected


def test_a_rule_without_when_matches_every_event(tmp_path: Path) -> None:
    from .helpers import decide, load

    rule_set = load(tmp_path, "version: 1\nrules:\n  - name: all\n    drop: true\n")
    assert decide(rule_set, {"event_name": "Anything"}).dropped_by == "all"
    assert decide(rule_set, {}, ip=None, ua=None).dropped_by == "all"


def test_block_style_yaml(tmp_path: Path) -> None:
    from .helpers import decide, load

    rule_set = load(tmp_path, """\
        version: 1
        rules:
          - name: paid leads from France
            when:
              event_name: Lead
              any:
                - url.query.utm_medium: cpc
                - url.query.gclid: {exists: true}
              not:
                context.ip:
                  in_cidr: [10.0.0.0/8]
            drop: true
        """)
    paid = {"event_name": "Lead", "event_source_url": "https://s.example/?gclid=1"}
    assert decide(rule_set, paid).dropped
    assert not decide(rule_set, paid, ip="10.0.0.2").dropped
    assert not decide(rule_set, {"event_name": "Lead"}).dropped


def test_consent_signals_are_fields(tmp_path: Path) -> None:
    from gateway.identity.consent import Consent

    denied = Consent(ad_storage=False, analytics_storage=True)
    assert matches(tmp_path, "{context.consent.ad_storage: false}", consent=denied)
    assert matches(tmp_path, "{context.consent.analytics_storage: true}", consent=denied)
    assert not matches(tmp_path, "{context.consent.ad_storage: true}", consent=denied)
    assert matches(tmp_path, "{context.consent.ad_user_data: {exists: false}}", consent=denied)
    assert not matches(tmp_path, "{context.consent.ad_storage: false}")  # no signal: absent
