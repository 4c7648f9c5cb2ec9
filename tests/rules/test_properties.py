"""Hypothesis: any valid rule set, on any event (missing fields, wrong types, odd nesting),
never raises; and skipping rules by index (plans.py) never changes what the rules decide."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.identity.geo import GeoInfo
from gateway.identity.useragent import UserAgentInfo
from gateway.model import Context, Decision, Event
from gateway.rules import RuleSet, load_rule_set
from gateway.rules.fields import Subject

FIELDS = ["event_name", "event_id", "event_time", "action_source", "event_source_url",
          "referrer_url", "custom_data.value", "custom_data.a.b", "custom_data.ids",
          "custom_data.contents.0.id", "context.ip", "context.pixel_id", "context.source",
          "context.ua.browser", "context.ua.is_bot", "context.geo.country", "url.host",
          "url.path", "url.query.q"]
TEXTS = ["Purchase", "Lead", "PageView", "a", "10", "10.0.0.1", "/x", "example.com", ""]
NAMES = ["Purchase", "Lead", "PageView", "checkout"]

scalars = st.one_of(st.sampled_from(TEXTS), st.integers(-5, 5), st.floats(allow_nan=False,
                    allow_infinity=False, width=32), st.booleans())


def field_tests(field: str) -> st.SearchStrategy[Any]:
    if field == "context.ua.is_bot":
        return st.one_of(st.booleans(), st.fixed_dictionaries({"exists": st.booleans()}))
    texts = st.sampled_from(TEXTS)
    ops = st.one_of(
        st.fixed_dictionaries({"equals": texts}), st.fixed_dictionaries({"not_in": st.lists(
            texts, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"contains": texts}), st.fixed_dictionaries({"starts_with": texts}),
        st.fixed_dictionaries({"matches": st.sampled_from(["^a", "x$", "(?i)pur", "[0-9]+"])}),
        st.fixed_dictionaries({"exists": st.booleans()}),
        st.fixed_dictionaries({"gt": st.integers(-3, 3)}),
        st.fixed_dictionaries({"lte": st.floats(-3, 3)}),
        st.fixed_dictionaries({"in_cidr": st.sampled_from(["nets", "10.0.0.0/8", "::/0"])}),
        st.fixed_dictionaries({"in_list": st.just("words")}),
    )
    if field == "event_time":
        return st.one_of(st.integers(-3, 3), st.fixed_dictionaries({"gte": st.integers(-3, 3)}),
                         st.fixed_dictionaries({"exists": st.booleans()}))
    return st.one_of(texts, st.lists(texts, min_size=1, max_size=3), ops)


leaf = st.sampled_from(FIELDS).flatmap(
    lambda field: field_tests(field).map(lambda test: {field: test}))
conditions = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"all": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
        st.lists(inner, min_size=1, max_size=2),
    ),
    max_leaves=6,
)
actions = st.one_of(
    st.just({"drop": True}),
    st.fixed_dictionaries({"send_to_destination_only": st.lists(
        st.sampled_from(["main", "sales", "brand"]), min_size=1, max_size=2)}),
    st.fixed_dictionaries({"rename_event": st.sampled_from(NAMES)}),
    st.fixed_dictionaries({"set": st.fixed_dictionaries({}, optional={
        "custom_data.value": st.integers(0, 9), "custom_data.a.b": st.sampled_from(TEXTS),
        "event_name": st.sampled_from(NAMES),
        "event_source_url": st.sampled_from(["https://example.com/x?q=a", "http://10.0.0.1/"]),
    }).filter(bool)}),
    st.fixed_dictionaries({"remove": st.lists(st.sampled_from(
        ["custom_data.value", "custom_data.a", "user_data.em", "event_source_url"]),
        min_size=1, max_size=2)}),
)
rules = st.lists(st.tuples(st.one_of(st.none(), conditions), actions), min_size=1, max_size=8)

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8,
)
known_values = {
    "event_name": st.one_of(st.sampled_from(NAMES), json_values),
    "event_source_url": st.one_of(st.sampled_from([
        "https://example.com/x?q=a&q=b", "https://[::1]:8/p", "https://[bad/", "/rel?q=%zz",
        "http://a@b:c/d", "mailto:x"]), json_values),
    "custom_data": st.one_of(st.dictionaries(st.sampled_from(["value", "a", "ids", "contents"]),
                                             json_values, max_size=4), json_values),
    "user_data": st.one_of(st.dictionaries(st.sampled_from(["em", "ph"]), json_values),
                           json_values),
    "event_time": json_values, "event_id": json_values, "action_source": json_values,
}
event_data = st.fixed_dictionaries({}, optional=known_values).flatmap(
    lambda known: st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(
        lambda extra: {**extra, **known}))
contexts = st.builds(
    Context,
    source=st.sampled_from(["browser", "server"]),
    pixel_id=st.sampled_from(["111", ""]),
    ip=st.one_of(st.none(), st.sampled_from(["10.1.2.3", "::ffff:10.0.0.1", "2001:db8::1",
                                             "not-an-ip", ""]), st.text(max_size=10)),
    ua=st.one_of(st.none(), st.builds(UserAgentInfo, st.text(max_size=5), st.just(""),
                                      st.text(max_size=5), st.just(""), st.just("Other"),
                                      st.booleans())),
    geo=st.one_of(st.none(), st.builds(GeoInfo, st.one_of(st.none(), st.sampled_from(["FR", "a"]))
                                       )),
)


def load(generated: list[tuple[Any, dict[str, Any]]]) -> RuleSet:
    import yaml

    document = {
        "version": 1,
        "lists": {"nets": ["10.0.0.0/8", "2001:db8::/32"], "words": ["a", "Lead", 10]},
        "rules": [
            {"name": f"r{i}", **({"when": when} if when is not None else {}), **action}
            for i, (when, action) in enumerate(generated)
        ],
    }
    with tempfile.TemporaryDirectory() as folder:
        rules = Path(folder) / "rules"
        rules.mkdir()
        (rules / "10-generated.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
        return load_rule_set(rules, ["main", "sales", "brand"])


def reference(rule_set: RuleSet, event: Event) -> Decision:
    """The documented semantics, rule by rule, without the index: the oracle."""
    decision = Decision()
    subject = Subject(event)
    for rule in rule_set.rules:
        if not rule.enabled or (rule.when is not None and not rule.when(subject)):
            continue
        decision.matched.append(rule.name)
        for transform in rule.transforms:
            transform(subject)
        if rule.only is not None:
            decision.only = rule.only if decision.only is None else decision.only & rule.only
        if rule.drop:
            decision.dropped_by = rule.name
            break
    return decision


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules, st.lists(st.tuples(event_data, contexts), min_size=1, max_size=5))
def test_evaluation_never_raises_and_the_index_changes_nothing(
    generated: list[tuple[Any, dict[str, Any]]], events: list[tuple[dict[str, Any], Context]],
) -> None:
    rule_set = load(generated)
    for data, context in events:
        first, second = Event(copy.deepcopy(data), context), Event(copy.deepcopy(data), context)
        decision = rule_set.apply(first)
        assert decision == reference(rule_set, second)
        assert first.data == second.data
        assert set(decision.matched) <= {rule.name for rule in rule_set.rules}
        assert decision.dropped_by is None or decision.dropped_by == decision.matched[-1]
