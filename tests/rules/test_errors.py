# ruff: noqa: E501  (the exact messages marketers read, one per line, are longer than code lines)
"""Every load error: exact located message, stable code, did-you-mean; all reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.problems import Problem
from gateway.rules import RuleError, load_rule_set

from .helpers import problems, write_rules

DESTINATIONS = ("main", "sales")


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(
        '- a\n- b\n',
        [
            'rules/10-x.yaml:1:1: [R010] a rule file is a mapping with `version: 1` and `rules:`, got a list of 2',
        ],
        id='top_not_mapping',
    ),
    pytest.param(
        'version: 1\nrule:\n  - {name: r, drop: true}\n',
        [
            "rules/10-x.yaml:2:1: [R010] unknown key 'rule' (did you mean 'rules'?); a rule file has version, lists, rules (is a rule indented under `rules:`?)",
        ],
        id='unknown_top',
    ),
    pytest.param(
        'rules:\n  - {name: r, drop: true}\n',
        [
            'rules/10-x.yaml:1:1: [R010] add `version: 1` at the top of the file',
        ],
        id='no_version',
    ),
    pytest.param(
        'version: 2\nrules: []\n',
        [
            'rules/10-x.yaml:1:10: [R010] version must be 1 (the only rule format so far), got 2',
        ],
        id='bad_version',
    ),
    pytest.param(
        'version: 1\nrules: {name: r}\n',
        [
            'rules/10-x.yaml:2:8: [R011] `rules` is a list: start each rule with `- name: ...`, got a mapping {name}',
        ],
        id='rules_not_list',
    ),
    pytest.param(
        'version: 1\nrules:\n  - drop bots\n',
        [
            "rules/10-x.yaml:3:5: rule '#1': [R011] each rule is a mapping that starts with `name:`, e.g. - name: drop bots, got 'drop bots'",
        ],
        id='rule_not_mapping',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {drop: true}\n',
        [
            "rules/10-x.yaml:3:5: rule '#1': [R012] every rule needs a name (it appears in test results and metrics): add e.g. `name: drop bots`",
        ],
        id='no_name',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: [a], drop: true}\n',
        [
            "rules/10-x.yaml:3:12: rule '#1': [R012] a rule name is text, got a list of 1",
        ],
        id='name_list',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, drop: true}\n  - {name: r, drop: true}\n',
        [
            "rules/10-x.yaml:4:12: rule 'r': [R012] another rule has this name (at rules/10-x.yaml:3:5); names must be unique across all rule files, so rename one",
        ],
        id='dup_name',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, if: {event_name: Lead}, drop: true}\n',
        [
            "rules/10-x.yaml:3:15: rule 'r': [R011] unknown key 'if' (did you mean 'when'?); a rule has name, enabled, description, when, drop, send_to_destination_only, set, remove, rename_event",
        ],
        id='unknown_rule_key',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_name: Lead}}\n',
        [
            "rules/10-x.yaml:3:5: rule 'r': [R013] the rule does nothing: add an action (drop: true, send_to_destination_only, set, remove or rename_event)",
        ],
        id='no_action',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, drop: true, set: {custom_data.a: 1}}\n',
        [
            "rules/10-x.yaml:3:15: rule 'r': [R013] a rule that drops the event cannot also use set: a dropped event goes nowhere; split it into two rules",
        ],
        id='drop_plus',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, rename_event: Lead, set: {event_name: Purchase}}\n',
        [
            "rules/10-x.yaml:3:15: rule 'r': [R013] rename_event and set: {event_name: ...} both change the event name; keep one",
        ],
        id='rename_and_set',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, enabled: maybe, drop: true}\n',
        [
            "rules/10-x.yaml:3:24: rule 'r': [R014] enabled is true or false, got 'maybe'",
        ],
        id='enabled_type',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, description: [a], drop: true}\n',
        [
            "rules/10-x.yaml:3:28: rule 'r': [R014] description is text; put it in quotes, got a list of 1",
        ],
        id='description_type',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, drop: yes please}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R014] drop is true or false, got 'yes please'",
        ],
        id='drop_type',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_nam: Lead}, drop: true}\n',
        [
            "rules/10-x.yaml:3:22: rule 'r': [R020] unknown field 'event_nam' (did you mean 'event_name'?); see docs/rules.md for the fields rules can read",
        ],
        id='unknown_field',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {custom_data: {exists: true}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:22: rule 'r': [R020] 'custom_data' needs a key after it, such as custom_data.value",
        ],
        id='bare_custom_data',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {custom_data..x: 1}, drop: true}\n',
        [
            "rules/10-x.yaml:3:22: rule 'r': [R020] 'custom_data..x' has an empty part; write names separated by single dots",
        ],
        id='empty_part',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {user_data.client_ip_address: 1.2.3.4}, drop: true}\n',
        [
            "rules/10-x.yaml:3:51: rule 'r': [R021] user_data.client_ip_address can only be tested with `exists: true` or `exists: false`: user_data values are hashed before rules run, so 'equals' could never match a clear value; use context.ip instead (e.g. context.ip: {in_cidr: [10.0.0.0/8]})",
        ],
        id='user_data_op',
    ),
    pytest.param(
        'version: 1\nrules:\n  - name: r\n    when:\n    drop: true\n',
        [
            "rules/10-x.yaml:4:10: rule 'r': [R030] `when` is empty; give a condition, or leave `when` out to match every event",
        ],
        id='empty_when',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: Purchase, drop: true}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R030] a condition is a mapping such as `event_name: Purchase`, got 'Purchase'",
        ],
        id='when_scalar',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: [], drop: true}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R030] an empty list of conditions; write at least one, or leave out `when` to match every event",
        ],
        id='empty_list_when',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {any: {event_name: Lead}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:27: rule 'r': [R030] `any` takes a list of conditions, e.g. any: [{event_name: Lead}, {event_name: Purchase}], got a mapping {event_name}",
        ],
        id='any_not_list',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_name: {startswith: Pur}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:35: rule 'r': [R031] unknown operator 'startswith' for event_name (did you mean 'starts_with'?); operators: equals, not_equals, in, not_in, in_list, not_in_list, contains, starts_with, ends_with, matches, exists, gt, gte, lt, lte, in_cidr, not_in_cidr",
        ],
        id='unknown_op',
    ),
    pytest.param(
        "version: 1\nrules:\n  - {name: r, when: {custom_data.value: {'>=': 5}}, drop: true}\n",
        [
            "rules/10-x.yaml:3:42: rule 'r': [R031] unknown operator '>=' for custom_data.value (did you mean 'gte'?); operators: equals, not_equals, in, not_in, in_list, not_in_list, contains, starts_with, ends_with, matches, exists, gt, gte, lt, lte, in_cidr, not_in_cidr",
        ],
        id='op_hint',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {equals: Lead}, drop: true}\n',
        [
            "rules/10-x.yaml:3:22: rule 'r': [R031] 'equals' is an operator; it goes under a field, e.g. event_name: {equals: ...}",
        ],
        id='op_as_field',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_name: {}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:34: rule 'r': [R031] no operator for event_name; write e.g. event_name: {equals: ...}",
        ],
        id='empty_ops',
    ),
    pytest.param(
        'version: 1\nrules:\n  - name: r\n    when:\n      event_name: Lead\n      drop: true\n',
        [
            "rules/10-x.yaml:6:7: rule 'r': [R011] 'drop' belongs to the rule, not inside `when`; indent it at the level of `when`",
        ],
        id='action_in_when',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {custom_data.x: null}, drop: true}\n',
        [
            "rules/10-x.yaml:3:37: rule 'r': [R033] custom_data.x: no value; to match events without it, write custom_data.x: {exists: false}",
        ],
        id='null_value',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {context.ua.is_bot: {contains: x}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:42: rule 'r': [R032] context.ua.is_bot is true or false, so 'contains' does not apply; use one of equals, not_equals, in, not_in, exists",
        ],
        id='bool_op',
    ),
    pytest.param(
        "version: 1\nrules:\n  - {name: r, when: {context.ua.is_bot: 'yes'}, drop: true}\n",
        [
            "rules/10-x.yaml:3:41: rule 'r': [R032] context.ua.is_bot: is true or false (without quotes), got 'yes'",
        ],
        id='bool_value',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {custom_data.value: {gt: ten}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:46: rule 'r': [R032] custom_data.value gt: compares numbers; write a number without quotes, got 'ten'",
        ],
        id='gt_text',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_name: {in: Lead}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:39: rule 'r': [R032] event_name in: needs a list of values such as [a, b], got 'Lead'",
        ],
        id='in_scalar',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {custom_data.x: {exists: sure}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:46: rule 'r': [R032] custom_data.x exists: is true or false, got 'sure'",
        ],
        id='exists_text',
    ),
    pytest.param(
        "version: 1\nrules:\n  - {name: r, when: {url.path: {matches: '(a'}}, drop: true}\n",
        [
            "rules/10-x.yaml:3:42: rule 'r': [R034] url.path matches: invalid regular expression '(a': missing ): (a; RE2 syntax, no backreferences or lookarounds (docs/rules.md)",
        ],
        id='regex',
    ),
    pytest.param(
        "version: 1\nrules:\n  - {name: r, when: {url.path: {matches: '(a)\\1'}}, drop: true}\n",
        [
            "rules/10-x.yaml:3:42: rule 'r': [R034] url.path matches: invalid regular expression '(a)\\\\1': invalid escape sequence: \\1; RE2 syntax, no backreferences or lookarounds (docs/rules.md)",
        ],
        id='regex_backref',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {context.ip: {in_cidr: [10.0.0.0/33]}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:44: rule 'r': [R035] context.ip in_cidr: '10.0.0.0/33' is neither an IP network (like 10.0.0.0/8) nor the name of a list",
        ],
        id='cidr',
    ),
    pytest.param(
        'version: 1\nlists:\n  internal_networks: [10.0.0.0/8]\nrules:\n  - {name: r, when: {context.ip: {in_cidr: internal_network}}, drop: true}\n',
        [
            "rules/10-x.yaml:5:44: rule 'r': [R036] context.ip in_cidr: 'internal_network' is neither an IP network (like 10.0.0.0/8) nor the name of a list (did you mean 'internal_networks'?)",
        ],
        id='unknown_list',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, when: {event_name: {in_list: bots}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:44: rule 'r': [R036] event_name in_list: no list named 'bots'; lists: none yet; define one under `lists:`",
        ],
        id='unknown_in_list',
    ),
    pytest.param(
        'version: 1\nlists: [a, b]\n',
        [
            'rules/10-x.yaml:2:8: [R040] `lists` is a mapping of list names to lists, e.g. lists: {internal_networks: [10.0.0.0/8]}, got a list of 2',
        ],
        id='lists_not_mapping',
    ),
    pytest.param(
        'version: 1\nlists:\n  1st: [a]\n',
        [
            "rules/10-x.yaml:3:3: list '1st': [R041] a list name is a word of letters, digits, '_' or '-' starting with a letter, e.g. internal_networks",
        ],
        id='list_bad_name',
    ),
    pytest.param(
        'version: 1\nlists:\n  a: []\n',
        [
            "rules/10-x.yaml:3:6: list 'a': [R043] a list holds one or more values, e.g. [a, b], got a list of 0",
        ],
        id='list_empty',
    ),
    pytest.param(
        'version: 1\nlists:\n  a: [x, {y: 1}]\n',
        [
            "rules/10-x.yaml:3:10: list 'a': [R043] list entries are text or numbers, got a mapping {y}",
        ],
        id='list_item',
    ),
    pytest.param(
        'version: 1\nlists:\n  nets: [10.0.0.0/8, office]\nrules:\n  - {name: r, when: {context.ip: {in_cidr: nets}}, drop: true}\n',
        [
            "rules/10-x.yaml:3:22: list 'nets': [R044] 'office' is not an IP network; a rule uses this list with in_cidr, so write each entry like 10.0.0.0/8, 2001:db8::/32 or 203.0.113.7",
            "rules/10-x.yaml:5:44: rule 'r': [R035] context.ip in_cidr: list 'nets' has entries that are not IP networks (reported on the list)",
        ],
        id='list_bad_cidr',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {user_data.em: a@b.c}}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R050] cannot set user_data: its values are hashed before rules run, so a value set here would reach Meta unhashed; rules may remove user_data keys instead",
        ],
        id='set_user_data',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {context.ip: 1.2.3.4}}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R050] cannot set context: it is what the gateway observed about the hit; rules read it but do not change it",
        ],
        id='set_context',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {custom.value: 1}}\n',
        [
            "rules/10-x.yaml:3:21: rule 'r': [R050] cannot set 'custom.value' (did you mean 'custom_data.value'?); set takes event_name, event_source_url, action_source, custom_data.<key>",
        ],
        id='set_unknown',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: [a]}\n',
        [
            "rules/10-x.yaml:3:20: rule 'r': [R050] `set` maps fields to new values, e.g. set: {custom_data.currency: EUR}, got a list of 1",
        ],
        id='set_not_mapping',
    ),
    pytest.param(
        "version: 1\nrules:\n  - {name: r, set: {custom_data.value: '12.5'}}\n",
        [
            "rules/10-x.yaml:3:40: rule 'r': [R050] custom_data.value is a number such as 19.99, without quotes, got '12.5'",
        ],
        id='set_value',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {custom_data.currency: euro}}\n',
        [
            "rules/10-x.yaml:3:43: rule 'r': [R050] custom_data.currency is a 3-letter ISO 4217 code such as EUR, got 'euro'",
        ],
        id='set_currency',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {action_source: web}}\n',
        [
            "rules/10-x.yaml:3:36: rule 'r': [R050] action_source is one of website, app, email, phone_call, chat, physical_store, system_generated, business_messaging, other (did you mean 'website'?), got 'web'",
        ],
        id='set_action_source',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {event_source_url: www.example.com}}\n',
        [
            "rules/10-x.yaml:3:39: rule 'r': [R050] event_source_url is an http(s) address, got 'www.example.com'",
        ],
        id='set_url',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {custom_data.x: null}}\n',
        [
            "rules/10-x.yaml:3:36: rule 'r': [R050] no value; to take custom_data.x out use remove: [custom_data.x]",
        ],
        id='set_null',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, set: {custom_data.day: 2024-01-31}}\n',
        [
            "rules/10-x.yaml:3:38: rule 'r': [R050] YAML read 2024-01-31 as a date, which cannot be sent to Meta; put the value in quotes",
        ],
        id='set_date',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, remove: [event_name]}\n',
        [
            "rules/10-x.yaml:3:24: rule 'r': [R051] cannot remove event_name: Meta requires it (to change the name, use rename_event)",
        ],
        id='remove_bad',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, remove: [custom.note]}\n',
        [
            "rules/10-x.yaml:3:24: rule 'r': [R051] cannot remove 'custom.note' (did you mean 'custom_data.note'?); remove takes custom_data.<key>, user_data.<key>, event_source_url, referrer_url",
        ],
        id='remove_unknown',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, remove: []}\n',
        [
            "rules/10-x.yaml:3:23: rule 'r': [R051] `remove` lists fields to take out, e.g. remove: [custom_data.coupon], got a list of 0",
        ],
        id='remove_empty',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, rename_event: purchase}\n',
        [
            "rules/10-x.yaml:3:29: rule 'r': [R052] standard event names are case-sensitive: write 'Purchase', not 'purchase'",
        ],
        id='rename_case',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, rename_event: 42}\n',
        [
            "rules/10-x.yaml:3:29: rule 'r': [R052] an event name is text such as Purchase, got 42",
        ],
        id='rename_type',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, send_to_destination_only: [mian]}\n',
        [
            "rules/10-x.yaml:3:42: rule 'r': [R053] no destination named 'mian' (did you mean 'main'?); configured destinations (config.yaml): main, sales",
        ],
        id='route_unknown',
    ),
    pytest.param(
        'version: 1\nrules:\n  - {name: r, send_to_destination_only: []}\n',
        [
            "rules/10-x.yaml:3:41: rule 'r': [R053] send_to_destination_only lists destination names, e.g. [main]; configured destinations: main, sales; to send an event nowhere use drop: true (got a list of 0)",
        ],
        id='route_empty',
    ),
])
def test_error_message(tmp_path: Path, text: str, expected: list[str]) -> None:
    assert problems(tmp_path, {"10-x.yaml": text}, DESTINATIONS) == expected


def test_every_problem_is_reported_at_once_in_reading_order(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "20-b.yaml": """\
            version: 1
            rules:
              - name: shared
                when: {event_nme: Lead}
                drop: true
              - name: two
                when: {custom_data.value: {gt: ten}}
                send_to_destination_only: [mian]
            """,
        "10-a.yaml": """\
            version: 1
            lists:
              nets: [10.0.0.0/8]
            rules:
              - name: shared
                when: {context.ip: {in_cidr: net}}
                drop: true
            """,
    }, DESTINATIONS)
    assert found == [
        "rules/10-a.yaml:6:34: rule 'shared': [R036] context.ip in_cidr: 'net' is neither an IP network (like 10.0.0.0/8) nor the name of a list (did you mean 'nets'?)",
        "rules/20-b.yaml:3:11: rule 'shared': [R012] another rule has this name (at rules/10-a.yaml:5:5); names must be unique across all rule files, so rename one",
        "rules/20-b.yaml:4:12: rule 'shared': [R020] unknown field 'event_nme' (did you mean 'event_name'?); see docs/rules.md for the fields rules can read",
        "rules/20-b.yaml:7:36: rule 'two': [R032] custom_data.value gt: compares numbers; write a number without quotes, got 'ten'",
        "rules/20-b.yaml:8:32: rule 'two': [R053] no destination named 'mian' (did you mean 'main'?); configured destinations (config.yaml): main, sales",
    ]


def test_lists_are_global_and_names_unique_across_files(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "10-a.yaml": "version: 1\nlists:\n  nets: [10.0.0.0/8]\n",
        "20-b.yaml": "version: 1\nlists:\n  nets: [192.168.0.0/16]\nrules:\n"
                     "  - {name: r, when: {context.ip: {in_cidr: nets}}, drop: true}\n",
    }, DESTINATIONS)
    assert found == [
        "rules/20-b.yaml:3:3: list 'nets': [R042] another list has this name (at rules/10-a.yaml:3:3); list names are shared by every rule file, so rename one",
    ]


def test_yaml_syntax_errors_are_located(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "10-ok.yaml": "version: 1\nrules:\n  - {name: fine, drop: true}\n",
        "20-broken.yaml": "version: 1\nrules:\n  - name: x\n     when: {event_name: Lead}\n",
        "30-dup.yaml": "version: 1\nrules:\n  - name: x\n    drop: true\n    drop: false\n",
        "40-tab.yaml": "version: 1\nrules:\n\t- name: y\n",
    }, DESTINATIONS)
    assert found == [
        "rules/20-broken.yaml:4:10: [R002] YAML syntax error: mapping values are not allowed here; check the indentation and quoting near this line",
        "rules/30-dup.yaml:5:5: rules[0].drop: [R002] this key appears twice in the same block; keep one; check the indentation and quoting near this line",
        "rules/40-tab.yaml:3:1: [R002] YAML syntax error: found character '\\t' that cannot start any token; check the indentation and quoting near this line",
    ]


def test_file_problems(tmp_path: Path) -> None:
    folder = write_rules(tmp_path, {"10-a.yml": "version: 1\n", ".#20-lock.yaml": "garbage: ["})
    (folder / "30-latin1.yaml").write_bytes("version: 1\n# caf\xe9\n".encode("latin-1"))
    (folder / "tests").mkdir()
    with pytest.raises(RuleError) as caught:
        load_rule_set(folder, DESTINATIONS)
    assert [str(problem) for problem in caught.value.problems] == [
        "rules/10-a.yml:1:1: [R003] rule files must end in .yaml (this one is not read); rename it to 10-a.yaml",
        "rules/30-latin1.yaml:1:1: [R001] the file is not UTF-8 text (byte 16); save it as UTF-8",
    ]
    assert str(caught.value) == "\n".join(str(p) for p in caught.value.problems)


def test_a_file_where_the_folder_should_be(tmp_path: Path) -> None:
    (tmp_path / "rules").write_text("version: 1\n")
    with pytest.raises(RuleError) as caught:
        load_rule_set(tmp_path / "rules", DESTINATIONS)
    assert [str(problem) for problem in caught.value.problems] == [
        f"{tmp_path / 'rules'}:1:1: [R004] rules.path must be a folder of .yaml rule files, not a file",
    ]


def test_a_misspelt_action_is_not_also_reported_as_no_action(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\nrules:\n  - {name: r, when: {event_name: Lead}, rename: Purchase}\n", DESTINATIONS)
    assert found == [
        "rules/10-rules.yaml:3:41: rule 'r': [R011] unknown key 'rename' (did you mean 'rename_event'?); a rule has name, enabled, description, when, drop, send_to_destination_only, set, remove, rename_event",
    ]


@pytest.mark.parametrize(("when", "suggestion"), [
    ("{context.ua.isbot: true}", "context.ua.is_bot"),
    ("{context.geo.contry: FR}", "context.geo.country"),
    ("{Event_Name: Lead}", "event_name"),
    ("{customdata.value: 1}", "custom_data.value"),
    ("{url.querry.utm_source: x}", "url.query.utm_source"),
    ("{event_name: {not_equal: Lead}}", "not_equals"),
    ("{event_name: {ends: x}}", "ends_with"),
    ("{event_name: {zzz: x}}", None),
    ("{event_name: {regex: x}}", "matches"),
    ("{anyy: [{event_name: Lead}]}", "any"),
])
def test_did_you_mean(tmp_path: Path, when: str, suggestion: str | None) -> None:
    (found,) = problems(tmp_path, f"version: 1\nrules:\n  - {{name: r, when: {when}, drop: true}}\n", DESTINATIONS)
    if suggestion is None:
        assert "did you mean" not in found
    else:
        assert f"(did you mean '{suggestion}'?)" in found


def test_a_rule_with_problems_is_never_half_loaded(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        version: 1
        rules:
          - {name: good, drop: true}
          - {name: bad, when: {event_name: {in: Lead}}, drop: true}
        """, DESTINATIONS)
    assert len(found) == 1 and "rule 'bad'" in found[0]


def test_problems_are_values_with_fields_for_json_output(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load_rule_set(write_rules(tmp_path, {"10-rules.yaml": (
            "version: 1\nrules:\n  - {name: it's, when: {event_nam: Lead}, drop: true}\n")}),
            DESTINATIONS)
    (found,) = caught.value.problems
    assert found.as_dict() == {
        "file": "rules/10-rules.yaml", "line": 3, "column": 25, "subject": "rule 'it's'",
        "code": "R020",
        "message": "unknown field 'event_nam' (did you mean 'event_name'?); see docs/rules.md "
                   "for the fields rules can read",
        "hint": "",
    }
    assert str(found) == f"rules/10-rules.yaml:3:25: rule 'it's': [R020] {found.message}"
    whole_file = Problem("rules/x.yaml", code="R001", message="cannot read the file",
                         hint="check its permissions")
    assert str(whole_file) == "rules/x.yaml: [R001] cannot read the file; check its permissions"
