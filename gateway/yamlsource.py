"""Load YAML into plain values while remembering where each value stood (file:line:col).

Config and rule files are edited by people; every message about them must point at the line.
`load_located` returns the plain data plus a `Marks` index from paths such as
``("destinations", 0, "pixel_id")`` to positions. Duplicate keys are errors here, where PyYAML
would silently keep the last one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .problems import Problem

__all__ = ["KeyPath", "Marks", "YamlProblem", "format_path", "load_located"]

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Marks:
    """Where each value (and each mapping key) of a document stood."""

    filename: str
    values: dict[KeyPath, Position] = field(default_factory=dict)
    keys: dict[KeyPath, Position] = field(default_factory=dict)
    # The text of unquoted scalars YAML turned into numbers or booleans (`0123` became 83).
    plain: dict[KeyPath, str] = field(default_factory=dict)

    def written(self, path: KeyPath, value: object) -> str:
        """`value` as the person typed it (`0123`, `NO`), or its plain text form."""
        text = self.plain.get(path)
        if text is not None:
            return text
        return value if isinstance(value, str) else str(value)

    def position(self, path: KeyPath, *, key: bool = False) -> Position:
        """Where the value at `path` (or its key) is, falling back to its parents."""
        table = self.keys if key else self.values
        probe = path
        while probe not in table and probe:
            probe = probe[:-1]
        return table.get(probe) or self.values.get(probe) or Position(1, 1)

    def locate(self, path: KeyPath, *, key: bool = False) -> str:
        """`file:line:col` of the value at `path` (or of its key), for messages."""
        pos = self.position(path, key=key)
        return f"{self.filename}:{pos.line}:{pos.column}"

    def problem(self, path: KeyPath, message: str, *, subject: str | None = None,
                code: str = "", key: bool = False) -> Problem:
        """A Problem at `path`; its subject is the key path unless given."""
        pos = self.position(path, key=key)
        return Problem(self.filename, pos.line, pos.column,
                       format_path(path) if subject is None else subject, code, message)


class YamlProblem(Exception):
    """The text is not YAML we accept."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def format_path(path: KeyPath) -> str:
    """("destinations", 0, "pixel_id") -> "destinations[0].pixel_id"."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def load_located(text: str, filename: str) -> tuple[Any, Marks]:
    """Parse one YAML document; raise YamlProblem with a located message on bad syntax."""
    marks = Marks(filename)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(_marked(filename, exc, "YAML syntax error: " + (
            exc.problem or exc.context or "invalid YAML"))) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(Problem(filename, 1, 1, message=f"YAML error: {exc}")) from None
    if node is None:
        return None, marks
    try:
        return _build(node, (), marks, SafeConstructor()), marks
    except yaml.MarkedYAMLError as exc:  # an unknown tag such as `!env`
        raise YamlProblem(_marked(filename, exc, f"YAML error: {exc.problem or exc.context}")
                          ) from None


def _marked(filename: str, exc: yaml.MarkedYAMLError, message: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return Problem(filename, 1, 1, message=message)
    return Problem(filename, mark.line + 1, mark.column + 1, message=message)



def _position(node: Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: Node, path: KeyPath, marks: Marks, constructor: SafeConstructor) -> Any:
    marks.values[path] = _position(node)
    if isinstance(node, MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem(marks.problem(path, "keys must be plain words"))
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                pos = _position(key_node)
                raise YamlProblem(Problem(marks.filename, pos.line, pos.column,
                                          format_path(child), message="this key appears twice "
                                          "in the same block; keep one"))
            marks.keys[child] = _position(key_node)
            result[key] = _build(value_node, child, marks, constructor)
        return result
    if isinstance(node, SequenceNode):
        return [
            _build(item, (*path, index), marks, constructor)
            for index, item in enumerate(node.value)
        ]
    try:
        value = constructor.construct_object(node, deep=True)
    except ValueError as exc:  # a date-like value that is no date, such as 2024-02-30
        pos = _position(node)
        raise YamlProblem(Problem(marks.filename, pos.line, pos.column, format_path(path),
                                  message=f"{exc}; quote the value to keep it as text")) from None
    if isinstance(node, ScalarNode) and not isinstance(value, str) and value is not None:
        marks.plain[path] = str(node.value)
    return value
