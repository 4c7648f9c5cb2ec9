"""Run the rule tests next to the rules (`rules/tests/*.yaml`), like `promtool test rules`.

Each case's partial event is completed with defaults (a desktop Chrome PageView on
https://www.example.com/ from 203.0.113.10), prepared exactly as in production (`prepare`:
user agent and geo parsing, hashing), then the rule set decides; the result is compared with
`expect`. The destinations are the routed ones, else every destination that accepts the
event's pixel id, else none.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..identity.geo import GeoInfo
from ..model import Context, Decision, Event
from ..settings import DestinationSettings
from .fields import Subject
from .problems import show
from .ruleset import RuleSet
from .testcases import Case, read_cases

__all__ = ["DEFAULT_PIXEL_ID", "DEFAULT_USER_AGENT", "CaseResult", "format_results",
           "run_rule_tests"]

DEFAULT_PIXEL_ID = "123456789012345"
DEFAULT_IP = "203.0.113.10"
DEFAULT_USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, "
                      "like Gecko) Chrome/131.0.0.0 Safari/537.36")


@dataclass(frozen=True)
class CaseResult:
    file: str  # rules/tests/bots.yaml
    name: str
    passed: bool
    message: str  # empty when passed; what differed, one line per difference, when failed
    line: int  # where the case starts

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


def run_rule_tests(
    rule_set: RuleSet,
    tests_path: Path,
    destinations: Sequence[DestinationSettings],
    prepare: Callable[[Event], None],
    *,
    clock: Callable[[], float] = time.time,
) -> list[CaseResult]:
    """Run every case of every `*.yaml` in `tests_path`; RuleError if a test file is broken."""
    cases = read_cases(tests_path, [d.name for d in destinations],
                       [rule.name for rule in rule_set.rules])
    accepted = sorted(destinations[0].accepts or ()) if destinations else []
    default_pixel = accepted[0] if accepted else DEFAULT_PIXEL_ID
    return [_run(case, index, rule_set, destinations, prepare, clock(), default_pixel)
            for index, case in enumerate(cases)]


def format_results(results: Sequence[CaseResult]) -> str:
    """One line per case (PASS/FAIL location name), the differences under each failure, then
    `N passed, M failed`."""
    lines = []
    for result in results:
        lines.append(f"{'PASS' if result.passed else 'FAIL'} {result.location} {result.name}")
        if not result.passed:
            lines.extend("    " + line for line in result.message.splitlines())
    failed = sum(not result.passed for result in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)


def build_event(case: Case, index: int, now: float, default_pixel: str) -> Event:
    """The case's event over the defaults; a null in the case removes a default."""
    data: dict[str, Any] = {
        "event_name": "PageView", "event_time": int(now), "event_id": f"rule-test-{index + 1}",
        "action_source": "website", "event_source_url": "https://www.example.com/",
        "user_data": {"client_ip_address": DEFAULT_IP, "client_user_agent": DEFAULT_USER_AGENT},
    }
    for key, value in copy.deepcopy(case.event).items():
        if key == "user_data" and isinstance(value, dict):
            data["user_data"] = {**data["user_data"], **value}
        else:
            data[key] = value
    data = {key: value for key, value in data.items() if value is not None}
    user_data = data.get("user_data")
    if isinstance(user_data, dict):
        data["user_data"] = {key: value for key, value in user_data.items() if value is not None}
        user_data = data["user_data"]
    else:
        user_data = {}
    ip = case.context.get("ip") or user_data.get("client_ip_address")
    agent = user_data.get("client_user_agent")
    context = Context(
        source="server" if case.context.get("source") == "server" else "browser",
        pixel_id=str(case.context.get("pixel_id") or default_pixel),
        ip=ip if isinstance(ip, str) else None,
        user_agent=agent if isinstance(agent, str) else None,
    )
    return Event(data, context)


def _run(case: Case, index: int, rule_set: RuleSet,
         destinations: Sequence[DestinationSettings], prepare: Callable[[Event], None],
         now: float, default_pixel: str) -> CaseResult:
    event = build_event(case, index, now, default_pixel)
    try:
        prepare(event)
    except Exception as exc:  # a test event the enrichment cannot handle: report, go on
        return _result(case, [f"the event could not be prepared: {type(exc).__name__}: {exc}"])
    if "geo" in case.context:
        event.context.geo = GeoInfo(**case.context["geo"])
    decision = rule_set.apply(event)
    differences = _differences(case, event, decision, destinations)
    if differences:
        differences.append("rules matched: " + (", ".join(decision.matched) or "none"))
    return _result(case, differences)


def _result(case: Case, differences: list[str]) -> CaseResult:
    return CaseResult(file=case.file, name=case.name, passed=not differences,
                      message="\n".join(differences), line=case.line)


def _differences(case: Case, event: Event, decision: Decision,
                 destinations: Sequence[DestinationSettings]) -> list[str]:
    out = []
    if case.dropped is not None and decision.dropped != case.dropped:
        out.append(f"dropped: expected {_bool(case.dropped)}, got {_bool(decision.dropped)}"
                   + (f" (by rule '{decision.dropped_by}')" if decision.dropped_by else ""))
    if case.destinations is not None:
        actual = sorted(d.name for d in decision.select(destinations, event.context.pixel_id))
        if actual != sorted(case.destinations):
            why = (f" (dropped by rule '{decision.dropped_by}')" if decision.dropped_by
                   else " (routing rules had no destination in common)"
                   if decision.routed_nowhere else "")
            out.append(f"destinations: expected {_names(case.destinations)}, got "
                       f"{_names(actual)}{why}")
    subject = Subject(event)
    for expected in case.fields:
        actual_value = expected.get(subject)
        if not expected.test(actual_value):
            got = "absent" if actual_value is None else show(actual_value)
            out.append(f"{expected.path}: expected {expected.shown}, got {got}")
    if case.matched is not None and list(case.matched) != decision.matched:
        out.append(f"matched: expected {_names(case.matched)}, got {_names(decision.matched)}")
    return out


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _names(names: Sequence[str]) -> str:
    return "[" + ", ".join(names) + "]"
