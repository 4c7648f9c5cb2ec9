"""The rules in the running gateway: decisions on real hits, the rule-set hash on every row,
hot reload that never half-applies, and the check/test commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway import appkeys
from gateway.__main__ import main
from gateway.config import parse_settings
from gateway.settings import Settings

from .conftest import (
    PIXEL_A,
    PIXEL_B,
    GatewayFactory,
    destination_yaml,
    settings_yaml,
    wait_until,
)
from .conftest import (
    outbox_rows as rows,
)
from .fake_graph import FakeGraph

CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
RULES = """\
version: 1
rules:
  - name: drop bots
    when: {context.ua.is_bot: true}
    drop: true
  - name: internal name
    when: {event_name: checkout_complete}
    rename_event: Purchase
  - name: purchases to shop-b
    when: {event_name: Purchase}
    send_to_destination_only: [shop-b]
"""


def with_rules(tmp_path: Path, graph_url: str, rules: str = RULES) -> Settings:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "10-main.yaml").write_text(rules)
    return parse_settings(settings_yaml(
        tmp_path,
        destination_yaml("shop-a", graph_url, pixel_id=PIXEL_A),
        destination_yaml("shop-b", graph_url, pixel_id=PIXEL_B, accepts=[PIXEL_B]),
        extra=f"rules: {{path: {folder}}}\n",
    ), env={})


async def hit(client: Any, ua: str = CHROME, **params: str) -> Any:
    params = {"id": PIXEL_A, "ev": "PageView", "dl": "https://shop.example.com/", **params}
    return await client.get("/tr", params=params, headers={"User-Agent": ua})


async def test_rules_drop_rename_and_route_real_hits(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = with_rules(tmp_path, fake_graph.url)
    client = await start_gateway(settings)
    assert (await hit(client, ua="Googlebot/2.1 (+http://www.google.com/bot.html)",
                      eid="bot")).status == 200  # the pixel is not told
    assert (await hit(client, eid="page")).status == 200
    assert (await hit(client, ev="checkout_complete", eid="order", **{
        "cd[value]": "10", "cd[currency]": "EUR"})).status == 200
    events = await fake_graph.wait_for_events(2)
    by_id = {e["event_id"]: (e["event_name"], r.pixel_id)
             for r in fake_graph.accepted for e in r.events}
    assert by_id == {"page": ("PageView", PIXEL_A), "order": ("Purchase", PIXEL_B)}
    assert len(events) == 2
    hashes = {r["rule_set"] for r in rows(settings)}
    assert hashes == {client.app[appkeys.RULES].current.hash} and len(hashes.pop()) == 12
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_events_dropped_total{rule="drop bots"} 1.0' in metrics
    assert 'gateway_rule_events{decision="routed",rule="purchases to shop-b"} 1.0' in metrics


async def test_a_renamed_event_is_validated_under_its_new_name(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    client = await start_gateway(with_rules(tmp_path, fake_graph.url))
    response = await hit(client, ev="checkout_complete")  # a Purchase now: needs value
    assert response.status == 400
    assert "Purchase events need custom_data.value as a number" in (await response.json())[
        "reasons"]


async def test_reload_swaps_a_good_rule_set_and_keeps_the_last_good_one_otherwise(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory
) -> None:
    settings = with_rules(tmp_path, fake_graph.url)
    client = await start_gateway(settings)
    live = client.app[appkeys.RULES]
    first = live.current.hash
    rule_file = tmp_path / "rules" / "10-main.yaml"

    rule_file.write_text(RULES.replace("event_name: checkout_complete", "event_nmae: x"))
    assert not await live.reload()
    assert live.current.hash == first
    status = await (await client.get("/status")).json()
    assert "10-main.yaml:7:" in status["rules"]["last_error"]
    assert "event_nmae" in status["rules"]["last_error"]

    tests = tmp_path / "rules" / "tests"
    tests.mkdir()
    (tests / "bots.yaml").write_text(
        "cases:\n  - name: bots are kept (wrong on purpose)\n"
        "    event: {user_data: {client_user_agent: 'Googlebot/2.1'}}\n"
        "    expect: {destinations: [shop-a]}\n")
    rule_file.write_text(RULES.replace("drop bots", "drop bots and crawlers"))
    assert not await live.reload()  # loads, but its own tests fail: not swapped in
    assert "bots are kept (wrong on purpose)" in (live.last_error or "")
    assert live.current.hash == first

    (tests / "bots.yaml").unlink()
    rule_file.write_text(RULES.replace("drop bots", "drop crawlers"))
    assert await live.reload()
    assert live.current.hash != first and live.last_error is None
    assert (await hit(client, eid="after")).status == 200
    await fake_graph.wait_for_events(1)
    assert {r["rule_set"] for r in rows(settings)} == {live.current.hash}


async def test_file_changes_are_picked_up_by_the_watcher(
    tmp_path: Path, fake_graph: FakeGraph, start_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gateway import reload

    monkeypatch.setattr(reload, "POLL_SECONDS", 0.05)
    settings = with_rules(tmp_path, fake_graph.url)
    client = await start_gateway(settings)
    live = client.app[appkeys.RULES]
    first = live.current.hash
    (tmp_path / "rules" / "10-main.yaml").write_text(RULES.replace("drop bots", "drop robots"))
    await wait_until(lambda: live.current.hash != first)


def write_config(tmp_path: Path, rules: str) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "10-main.yaml").write_text(rules)
    config = tmp_path / "config.yaml"
    config.write_text(settings_yaml(
        tmp_path, destination_yaml("shop-a", "http://127.0.0.1:9", pixel_id=PIXEL_A),
        destination_yaml("shop-b", "http://127.0.0.1:9", pixel_id=PIXEL_B),
        extra="rules: {path: rules}\n"))
    return config


def test_check_reports_rule_problems_located_and_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, RULES.replace(
        "event_name: checkout_complete", "event_name: {eqals: checkout_complete}"))
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "10-main.yaml:7:" in err and "did you mean 'equals'" in err
    assert main(["check", "--config", str(config), "--format", "json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    [problem] = report["problems"]
    assert problem["file"].endswith("10-main.yaml") and problem["line"] == 7
    assert problem["subject"] == "rule 'internal name'"


def test_test_command_runs_the_rule_tests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, RULES)
    tests = tmp_path / "rules" / "tests"
    tests.mkdir()
    (tests / "cases.yaml").write_text(
        "cases:\n"
        "  - name: a purchase goes to shop-b\n"
        "    event: {event_name: Purchase, custom_data: {value: 5, currency: EUR}}\n"
        "    expect: {destinations: [shop-b]}\n"
        "  - name: a crawler is dropped\n"
        "    event: {user_data: {client_user_agent: 'Googlebot/2.1'}}\n"
        "    expect: {dropped: true}\n")
    assert main(["test", "--config", str(config)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    (tests / "cases.yaml").write_text(
        "cases:\n  - name: wrong expectation\n"
        "    event: {event_name: Purchase}\n    expect: {destinations: [shop-a]}\n")
    assert main(["test", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "wrong expectation" in out and "0 passed, 1 failed" in out


def test_the_shipped_config_and_rules_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path(__file__).resolve().parent.parent
    assert main(["check", "--config", str(repo / "config.yaml")]) == 0
    assert main(["test", "--config", str(repo / "config.yaml")]) == 0
    assert " 0 failed" in capsys.readouterr().out


def test_check_runs_the_rule_tests_as_the_server_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The server refuses a rule set whose tests fail: `check` must not say OK to it.
    config = write_config(tmp_path, RULES)
    tests = tmp_path / "rules" / "tests"
    tests.mkdir()
    (tests / "bots.yaml").write_text(
        "cases:\n  - name: bots are kept (wrong on purpose)\n"
        "    event: {user_data: {client_user_agent: 'Googlebot/2.1'}}\n"
        "    expect: {destinations: [shop-a]}\n")
    assert main(["check", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "rules/tests/bots.yaml:2: test 'bots are kept (wrong on purpose)' failed" in err
    (tests / "bots.yaml").write_text(
        "cases:\n  - name: bots are dropped\n"
        "    event: {user_data: {client_user_agent: 'Googlebot/2.1'}}\n"
        "    expect: {dropped: true}\n")
    assert main(["check", "--config", str(config)]) == 0
    assert ": OK; rules in" in capsys.readouterr().out
