"""The marketers' YAML rules: drop, route and transform events before they are stored.

    load_rule_set(folder, destination_names) -> RuleSet      # raises RuleError (all problems)
    RuleSet.apply(event, stats=None) -> Decision             # edits event.data; never raises
    run_rule_tests(rule_set, tests_folder, destinations, prepare) -> [CaseResult]
    format_results(results) -> str

Modules, in the order a rule file flows through them: loader (files, top level) -> lists ->
rulereader (one rule) -> conditions / operators / operands / fields (the `when` closures) and
actions (set, remove, rename_event, send_to_destination_only) -> model (RuleSet.apply,
RuleStats; the Decision it returns lives with the event model), with plans (which rules can
match an event, by its guarded fields).
Errors: problems (RuleError, located Problems with stable codes). Rule tests: testcases
(reading) and ruletests (running). Format and semantics for people: docs/rules.md.
"""

from .loader import load_rule_set
from .problems import RuleError
from .ruleset import EMPTY_HASH, Rule, RuleSet, RuleStats
from .ruletests import CaseResult, format_results, run_rule_tests

__all__ = [
    "EMPTY_HASH",
    "CaseResult",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleStats",
    "format_results",
    "load_rule_set",
    "run_rule_tests",
]
