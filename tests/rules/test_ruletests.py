# ruff: noqa: E501  (exact messages)
"""Rule tests next to the rules: defaults, pass/fail with a readable diff, located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.destinations.meta_capi import MetaCapiOptions
from gateway.enrich import Enricher
from gateway.identity.useragent import shared_parser
from gateway.model import Event
from gateway.rules import (
    CaseResult,
    RuleError,
    format_results,
    load_rule_set,
    run_rule_tests,
)
from gateway.settings import DestinationSettings

from .helpers import write_rules

REPO = Path(__file__).resolve().parents[2]
MAIN = DestinationSettings(name="main", options=MetaCapiOptions(pixel_id="111"),
                           accepts=frozenset({"111"}))
SALES = DestinationSettings(name="sales", options=MetaCapiOptions(pixel_id="222"),
                            accepts=frozenset({"222"}))
RULES = """\
    version: 1
    rules:
      - {name: bots, when: {context.ua.is_bot: true}, drop: true}
      - {name: rename, when: {event_name: checkout_complete}, rename_event: Purchase}
      - {name: purchases, when: {event_name: Purchase}, send_to_destination_only: [sales]}
      - {name: french, when: {context.geo.country: FR}, set: {custom_data.market: fr}}
    """


def enrich() -> Enricher:
    return Enricher(shared_parser())


def run(tmp_path: Path, cases: str, rules: str = RULES,
        destinations: tuple[DestinationSettings, ...] = (MAIN, SALES)) -> list[CaseResult]:
    folder = write_rules(tmp_path, {"10-rules.yaml": rules})
    (folder / "tests").mkdir(exist_ok=True)
    (folder / "tests" / "cases.yaml").write_text(textwrap.dedent(cases))
    rule_set = load_rule_set(folder, [d.name for d in destinations])
    return run_rule_tests(rule_set, folder / "tests", destinations, enrich().enrich,
                          clock=lambda: 1_800_000_000.0)


def test_the_shipped_rules_load_and_their_tests_pass() -> None:
    settings = load_settings(REPO / "config.yaml", env={})
    rule_set = load_rule_set(settings.rules_path, [d.name for d in settings.destinations])
    assert len(rule_set.rules) >= 5
    results = run_rule_tests(rule_set, settings.rules_path / "tests", settings.destinations,
                             enrich().enrich)
    assert len(results) >= 10
    assert all(result.passed for result in results), format_results(results)
    features = {"drop bots", "drop internal traffic", "checkout_complete is a Purchase",
                "purchases go to the main pixel only", "purchases without a currency are in euros",
                "keep internal fields out of Meta"}
    assert features <= {rule.name for rule in rule_set.rules}


def test_defaults_fill_the_event(tmp_path: Path) -> None:
    (result,) = run(tmp_path, """\
        cases:
          - name: an empty event is a desktop Chrome PageView on the site's home page
            event: {}
            expect:
              dropped: false
              destinations: [main]
              fields:
                event_name: PageView
                action_source: website
                event_id: rule-test-1
                event_time: 1800000000
                url.host: www.example.com
                url.path: /
                user_data.client_ip_address: 203.0.113.10
                context.ip: 203.0.113.10
                context.ua.browser: Chrome
                context.ua.is_bot: false
                context.pixel_id: "111"
                context.source: browser
                custom_data.market: null
        """)
    assert result == CaseResult(
        file="rules/tests/cases.yaml",
        name="an empty event is a desktop Chrome PageView on the site's home page",
        passed=True, message="", line=2)


def test_case_values_override_and_null_removes_defaults(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        cases:
          - name: a bot user agent, prepared as in production
            event:
              user_data: {client_user_agent: "Mozilla/5.0 (compatible; Googlebot/2.1)"}
            expect: {dropped: true, destinations: [], matched: [bots]}
          - name: no user agent at all counts as a bot
            event:
              user_data: {client_user_agent: null}
            expect: {dropped: true}
          - name: hashed on the way, as in production
            event:
              user_data: {em: " Person@Example.com "}
              event_source_url: null
            expect:
              fields:
                user_data.em: 542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345
                url.host: null
          - name: context from the test
            event:
              event_name: checkout_complete
              context: {ip: 10.0.0.1, pixel_id: "222", source: server, geo: {country: FR}}
            expect:
              destinations: [sales]
              matched: [rename, purchases, french]
              fields: {context.ip: 10.0.0.1, context.source: server, custom_data.market: fr}
        """)
    assert [(r.name, r.passed, r.message) for r in results if not r.passed] == []
    assert len(results) == 4


def test_a_failing_case_says_what_differs(tmp_path: Path) -> None:
    results = run(tmp_path, """\
        cases:
          - name: purchases reach main
            event: {event_name: Purchase, custom_data: {value: 5}}
            expect:
              dropped: true
              destinations: [main]
              fields: {event_name: Lead, custom_data.value: 6, custom_data.currency: EUR}
              matched: []
          - name: this one passes
            event: {event_name: Lead}
            expect: {destinations: [main]}
        """)
    assert results[0] == CaseResult(
        file="rules/tests/cases.yaml", name="purchases reach main", passed=False,
        line=2,
        message="dropped: expected true, got false\n"
                "destinations: expected [main], got [sales]\n"
                "event_name: expected 'Lead', got 'Purchase'\n"
                "custom_data.value: expected 6, got 5\n"
                "custom_data.currency: expected 'EUR', got absent\n"
                "matched: expected [], got [purchases]\n"
                "rules matched: purchases")
    assert format_results(results) == (
        "FAIL rules/tests/cases.yaml:2 purchases reach main\n"
        "    dropped: expected true, got false\n"
        "    destinations: expected [main], got [sales]\n"
        "    event_name: expected 'Lead', got 'Purchase'\n"
        "    custom_data.value: expected 6, got 5\n"
        "    custom_data.currency: expected 'EUR', got absent\n"
        "    matched: expected [], got [purchases]\n"
        "    rules matched: purchases\n"
        "PASS rules/tests/cases.yaml:9 this one passes\n"
        "1 passed, 1 failed"
    )


def test_routing_to_nowhere_and_drops_are_explained(tmp_path: Path) -> None:
    rules = """\
        version: 1
        rules:
          - {name: a, send_to_destination_only: [main]}
          - {name: b, when: {event_name: Lead}, send_to_destination_only: [sales]}
          - {name: c, when: {event_name: Spam}, drop: true}
        """
    results = run(tmp_path, """\
        cases:
          - name: lead
            event: {event_name: Lead}
            expect: {destinations: [main]}
          - name: spam
            event: {event_name: Spam}
            expect: {destinations: [main]}
        """, rules=rules)
    assert results[0].message == ("destinations: expected [main], got [] (routing rules had no "
                                  "destination in common)\nrules matched: a, b")
    assert results[1].message == ("destinations: expected [main], got [] (dropped by rule 'c')\n"
                                  "rules matched: a, c")


def test_prepare_runs_before_the_rules_and_its_failure_is_reported(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {"10-rules.yaml": RULES})
    (folder / "tests").mkdir()
    (folder / "tests" / "a.yaml").write_text(
        "cases:\n  - {name: one, event: {event_name: X}, expect: {dropped: false}}\n")
    seen: list[str] = []

    def prepare(event: Event) -> None:
        seen.append(event.data["event_name"])
        raise ValueError("boom")

    (result,) = run_rule_tests(load_rule_set(folder, ["main", "sales"]), folder / "tests",
                               [MAIN, SALES], prepare)
    assert seen == ["X"]
    assert not result.passed
    assert result.message == "the event could not be prepared: ValueError: boom"


def test_default_pixel_is_the_first_destinations_or_a_placeholder(tmp_path: Path) -> None:
    # accepts every pixel, has none of its own
    anywhere = DestinationSettings(name="main", options=MetaCapiOptions())
    (result,) = run(tmp_path, """\
        cases:
          - {name: n, event: {}, expect: {fields: {context.pixel_id: "123456789012345"}}}
        """, rules="version: 1\n", destinations=(anywhere,))
    assert result.passed, result.message


def test_no_tests_folder_means_no_results(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {"10-rules.yaml": RULES})
    assert run_rule_tests(load_rule_set(folder, ["main", "sales"]), folder / "tests",
                          [MAIN, SALES], enrich().enrich) == []
    assert format_results([]) == "0 passed, 0 failed"


def test_malformed_test_files_give_located_errors(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {"10-rules.yaml": RULES})
    (folder / "tests").mkdir()
    (folder / "tests" / "a.yaml").write_text(textwrap.dedent("""\
        cases:
          - name: one
            event:
              event_nmae: Lead
              custom_data: [1]
              context: {ip: 999.1.1.1, source: web, pixel_id: abc, geo: {contry: FR}, ua: x}
            expect:
              dropped: maybe
              destinations: [mian]
              fields: {custom.value: 1, context.ua.is_bot: "no"}
              matched: [renam]
              extra: 1
          - name: one
            expect: {}
          - just text
          - name: two
            event: {}
            expect: {destinations: main}
        """))
    (folder / "tests" / "b.yaml").write_text("case:\n  - {}\n")
    (folder / "tests" / "c.yaml").write_text("cases: [\n")
    with pytest.raises(RuleError) as caught:
        run_rule_tests(load_rule_set(folder, ["main", "sales"]), folder / "tests", [MAIN, SALES],
                       enrich().enrich)
    assert [str(problem) for problem in caught.value.problems] == [
        "rules/tests/a.yaml:4:7: case 'one': [R062] unknown key 'event_nmae' (did you mean 'event_name'?); an event has event_name, event_time, event_id, event_source_url, referrer_url, action_source, opt_out, user_data, custom_data, data_processing_options, data_processing_options_country, data_processing_options_state, app_data, original_event_data, attribution_data, messaging_channel, context",
        "rules/tests/a.yaml:5:20: case 'one': [R062] custom_data is a mapping, got a list of 1",
        "rules/tests/a.yaml:6:21: case 'one': [R064] ip is an IP address such as 203.0.113.10, got '999.1.1.1'",
        "rules/tests/a.yaml:6:40: case 'one': [R064] source is browser or server, got 'web'",
        "rules/tests/a.yaml:6:55: case 'one': [R064] pixel_id is the pixel's numeric id, got 'abc'",
        "rules/tests/a.yaml:6:66: case 'one': [R064] unknown key 'contry' (did you mean 'country'?); geo has country, region, city, postal",
        "rules/tests/a.yaml:6:79: case 'one': [R064] unknown key 'ua'; context has ip, pixel_id, source, geo",
        "rules/tests/a.yaml:8:16: case 'one': [R063] dropped is true or false, got 'maybe'",
        "rules/tests/a.yaml:9:22: case 'one': [R063] no destination named 'mian' (did you mean 'main'?); known: main, sales",
        "rules/tests/a.yaml:10:16: case 'one': [R063] unknown field 'custom.value'",
        "rules/tests/a.yaml:10:52: case 'one': [R063] context.ua.is_bot: is true or false (without quotes), got 'no'",
        "rules/tests/a.yaml:11:17: case 'one': [R063] no rule named 'renam' (did you mean 'rename'?); known: bots, french, purchases, rename",
        "rules/tests/a.yaml:12:7: case 'one': [R063] unknown key 'extra'; expect has dropped, destinations, fields, matched",
        "rules/tests/a.yaml:13:11: case 'one': [R061] another case in this file has this name; rename one",
        "rules/tests/a.yaml:14:13: case 'one': [R063] expect says what should happen, e.g. {dropped: true}, {destinations: [main]} or {fields: {event_name: Purchase}}",
        "rules/tests/a.yaml:15:5: case '#3': [R061] each case is a mapping with name, event and expect",
        "rules/tests/a.yaml:18:28: case 'two': [R063] destinations is a list of destination names ([] for none), got 'main'",
        "rules/tests/b.yaml:1:1: [R060] a rule-test file has `cases:`, a list of {name, event, expect}",
        "rules/tests/c.yaml:2:1: [R002] YAML syntax error: expected the node content, but found '<stream end>'; check the indentation and quoting near this line",
    ]
