"""Rule files written to a real folder, and events built the way the pipeline builds them."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.identity.consent import Consent
from gateway.identity.geo import GeoInfo
from gateway.identity.useragent import UserAgentInfo
from gateway.model import Context, Decision, Event
from gateway.rules import RuleError, RuleSet, load_rule_set

DESTINATIONS = ("main", "sales", "brand")
CHROME = UserAgentInfo("Chrome", "131.0", "Windows", "10", "Other", False)
BOT = UserAgentInfo("Googlebot", "2.1", "Other", "", "Spider", True)


def write_rules(tmp_path: Path, files: dict[str, str]) -> Path:
    """A `rules/` folder under tmp_path holding the given files (text dedented)."""
    folder = tmp_path / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def load(tmp_path: Path, text: str, *, name: str = "10-rules.yaml",
         destinations: tuple[str, ...] = DESTINATIONS) -> RuleSet:
    return load_rule_set(write_rules(tmp_path, {name: text}), destinations)


def problems(tmp_path: Path, files: dict[str, str] | str,
             destinations: tuple[str, ...] = DESTINATIONS) -> list[str]:
    """The located problems loading these files reports (the test fails if it loads)."""
    if isinstance(files, str):
        files = {"10-rules.yaml": files}
    with pytest.raises(RuleError) as caught:
        load_rule_set(write_rules(tmp_path, files), destinations)
    return [str(problem) for problem in caught.value.problems]


def rule(when: str, action: str = "drop: true") -> str:
    """A one-rule file whose `when` is the given flow-style YAML."""
    return f"version: 1\nrules:\n  - name: r\n    when: {when}\n    {action}\n"


def event(data: dict[str, Any] | None = None, *, ip: str | None = "81.2.69.142",
          ua: UserAgentInfo | None = CHROME, geo: GeoInfo | None = None,
          source: str = "browser", pixel_id: str = "111",
          consent: Consent | None = None) -> Event:
    base: dict[str, Any] = {
        "event_name": "PageView", "event_time": 1_800_000_000, "event_id": "e1",
        "action_source": "website", "event_source_url": "https://www.example.com/",
        "user_data": {"client_ip_address": ip, "em": "a" * 64},
    }
    if data is not None:
        base.update(data)
    context = Context(source=source, pixel_id=pixel_id,  # type: ignore[arg-type]
                      ip=ip, ua=ua, geo=geo, consent=consent)
    return Event(base, context)


def decide(rule_set: RuleSet, data: dict[str, Any] | None = None, **context: Any) -> Decision:
    return rule_set.apply(event(data, **context))


def matches(tmp_path: Path, when: str, data: dict[str, Any] | None = None,
            **context: Any) -> bool:
    """Does a rule with this `when` match an event with this data and context?"""
    return decide(load(tmp_path, rule(when)), data, **context).dropped
