"""rules/schema.json: a valid JSON Schema, in step with the engine, accepting the shipped files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.rules.actions import ACTION_SOURCES
from gateway.rules.fields import field_candidates
from gateway.rules.operators import OPERATORS

RULES = Path(__file__).resolve().parents[2] / "rules"
SCHEMA = json.loads((RULES / "schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SHIPPED = sorted(RULES.glob("*.yaml"))


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_rule_files_validate(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=./schema.json")
    errors = [error.message for error in VALIDATOR.iter_errors(yaml.safe_load(text))]
    assert errors == []


def test_every_rule_feature_is_shipped() -> None:
    assert len(SHIPPED) >= 4


def test_the_schema_knows_every_operator_field_and_action_source() -> None:
    defs = SCHEMA["$defs"]
    assert list(defs["test"]["anyOf"][2]["properties"]) == list(OPERATORS)
    fixed = [name for name in field_candidates() if "<key>" not in name]
    assert set(fixed) <= set(defs["conditions"]["properties"])
    assert defs["set"]["properties"]["action_source"]["enum"] == list(ACTION_SOURCES)


def _valid(document: dict[str, Any]) -> bool:
    return VALIDATOR.is_valid(document)


@pytest.mark.parametrize(("rule", "valid"), [
    ({"name": "r", "when": {"event_name": "Lead"}, "drop": True}, True),
    ({"name": "r", "when": {"custom_data.value": {"gte": 5}}, "set": {"custom_data.x": [1]}},
     True),
    ({"name": "r", "when": [{"url.query.utm_source": "x"}], "remove": "custom_data.a"}, True),
    ({"name": "r", "when": {"event_name": {"equal": "Lead"}}, "drop": True}, False),
    ({"name": "r", "when": {"event_nam": "Lead"}, "drop": True}, False),
    ({"name": "r", "when": {"user_data.em": "x"}, "drop": True}, False),
    ({"name": "r", "when": {"event_name": "Lead"}}, False),  # no action
    ({"when": {"event_name": "Lead"}, "drop": True}, False),  # no name
    ({"name": "r", "set": {"user_data.em": "x"}}, False),
    ({"name": "r", "sett": {"custom_data.a": 1}, "drop": True}, False),
    ({"name": "r", "remove": ["event_name"]}, False),
])
def test_the_schema_flags_what_the_loader_refuses(rule: dict[str, Any], valid: bool) -> None:
    assert _valid({"version": 1, "rules": [rule]}) is valid
