"""Load every rule file of a folder into one RuleSet, or raise RuleError listing every problem.

Files are `*.yaml` directly in the folder, in name order (`10-bots.yaml` before `20-route.yaml`);
names starting with `.` (editor files) are skipped, and `.yml` files are reported rather than
silently ignored. Lists are read from every file first, so any rule may use any list. Nothing is
half-loaded: one problem anywhere and no RuleSet is returned.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..problems import Problem
from ..yamlsource import Marks, YamlProblem, load_located
from .lists import NamedList, read_lists
from .problems import RuleError, Scope, did_you_mean, show, sort_problems
from .rulereader import read_rule
from .ruleset import Rule, RuleSet, rule_set_hash

__all__ = ["display_name", "load_rule_set", "read_yaml_file"]

TOP_KEYS = ("version", "lists", "rules")


@dataclass(frozen=True)
class _Source:
    data: dict[str, Any]
    scope: Scope


def display_name(folder: Path, file: Path) -> str:
    """`rules/10-bots.yaml`: the file as seen from the rules folder's parent."""
    return f"{folder.resolve().name}/{file.name}"


def read_yaml_file(
    file: Path, display: str, sink: list[Problem]
) -> tuple[bytes, Any, Marks] | None:
    """(raw bytes, data, marks) of one YAML file, or None after reporting why not."""
    try:
        content = file.read_bytes()
    except OSError as exc:
        sink.append(Problem(display, 1, 1, code="R001",
                            message=f"cannot read the file: {exc.strerror or exc}"))
        return None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        sink.append(Problem(display, 1, 1, code="R001", message="the file is not UTF-8 text "
                            f"(byte {exc.start}); save it as UTF-8"))
        return None
    try:
        data, marks = load_located(text, display)
    except YamlProblem as exc:
        sink.append(replace(exc.problem, code="R002",
                            hint="check the indentation and quoting near this line"))
        return None
    return content, data, marks


def load_rule_set(path: Path, destination_names: Collection[str]) -> RuleSet:
    """Every `*.yaml` directly in `path`, compiled; an absent or empty folder: no rules."""
    sink: list[Problem] = []
    files = _rule_files(path, sink)
    sources: list[_Source] = []
    contents: list[tuple[str, bytes]] = []
    for file in files:
        display = display_name(path, file)
        loaded = read_yaml_file(file, display, sink)
        if loaded is None:
            contents.append((file.name, b""))
            continue
        content, data, marks = loaded
        contents.append((file.name, content))
        source = _top_level(data, Scope(marks, sink))
        if source is not None:
            sources.append(source)
    lists: dict[str, NamedList] = {}
    for source in sources:
        read_lists(source.data.get("lists"), source.scope, lists)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for source in sources:
        rules.extend(_rules(source, lists, destination_names, seen))
    if sink:
        raise RuleError(sort_problems(sink))
    return RuleSet(hash=rule_set_hash(contents), rules=tuple(rules),
                   files=tuple(display_name(path, file) for file in files))


def _rule_files(path: Path, sink: list[Problem]) -> list[Path]:
    if not path.exists():
        return []
    if not path.is_dir():
        sink.append(Problem(str(path), 1, 1, code="R004", message="rules.path must be a folder "
                            "of .yaml rule files, not a file"))
        return []
    files = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        if entry.suffix == ".yaml":
            files.append(entry)
        elif entry.suffix.lower() in (".yml", ".yaml"):
            sink.append(Problem(display_name(path, entry), 1, 1, code="R003",
                                message="rule files must end in .yaml (this one is not read); "
                                f"rename it to {entry.stem}.yaml"))
    return files


def _top_level(data: Any, scope: Scope) -> _Source | None:
    if data is None:
        return None  # an empty file (or only comments): no rules
    if not isinstance(data, dict):
        scope.error((), "R010", "a rule file is a mapping with `version: 1` and `rules:`, got "
                    + show(data))
        return None
    for key in data:
        if key not in TOP_KEYS:
            hint = did_you_mean(key, TOP_KEYS)
            scope.error((key,), "R010", f"unknown key '{key}'{hint}; a rule file has "
                        f"{', '.join(TOP_KEYS)} (is a rule indented under `rules:`?)",
                        at_key=True)
    if "version" not in data:
        scope.error((), "R010", "add `version: 1` at the top of the file")
    elif data["version"] != 1 or isinstance(data["version"], bool):
        scope.error(("version",), "R010", f"version must be 1 (the only rule format so far), "
                    f"got {show(data['version'])}")
    return _Source(data, scope)


def _rules(source: _Source, lists: dict[str, NamedList], destinations: Collection[str],
           seen: dict[str, str]) -> list[Rule]:
    nodes = source.data.get("rules")
    if nodes is None:
        return []
    if not isinstance(nodes, list):
        source.scope.error(("rules",), "R011", "`rules` is a list: start each rule with "
                           f"`- name: ...`, got {show(nodes)}")
        return []
    rules = []
    for index, node in enumerate(nodes):
        rule = read_rule(node, ("rules", index), source.scope, lists, destinations, seen)
        if rule is not None:
            rules.append(rule)
    return rules
