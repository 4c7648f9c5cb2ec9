"""Located problems in rule files and rule-test files, collected so a person fixes them all at once.

Every message reads `rules/file.yaml:LINE:COL: rule 'name': [Rnnn] what is wrong; the fix`.
The codes are stable (docs/rules.md lists them), so tools and people can search for them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import GatewayError
from ..yamlsource import KeyPath, Marks

__all__ = ["RuleError", "Scope", "did_you_mean", "problem_fields", "show", "sort_problems",
           "written"]


class RuleError(GatewayError):
    """Rule or rule-test files are unusable; `problems` holds one located message per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Scope:
    """Where problems go: one file's marks and what is being read there (`rule 'x'`, ...)."""

    marks: Marks
    sink: list[str]
    subject: str = ""

    def error(self, path: KeyPath, code: str, message: str, *, at_key: bool = False) -> None:
        where = self.marks.locate(path, key=at_key)
        subject = f"{self.subject}: " if self.subject else ""
        self.sink.append(f"{where}: {subject}[{code}] {message}")

    def about(self, subject: str) -> Scope:
        return Scope(self.marks, self.sink, subject)

    @property
    def count(self) -> int:
        return len(self.sink)


def written(scope: Scope, path: KeyPath, value: Any) -> str:
    """`value` as the person typed it (`0123`, `NO`), or its plain text form."""
    return scope.marks.written(path, value)


def did_you_mean(word: str, candidates: Iterable[str], hints: dict[str, str] | None = None) -> str:
    """` (did you mean 'x'?)` for the closest candidate, ignoring case; empty when none is close."""
    if hints and word.lower() in hints:
        return f" (did you mean '{hints[word.lower()]}'?)"
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


def show(value: Any) -> str:
    """A short, readable rendering of a bad value for a message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "nothing (null)"
    elif isinstance(value, dict):
        text = "a mapping {" + ", ".join(str(key) for key in list(value)[:4]) + "}"
    elif isinstance(value, list):
        text = f"a list of {len(value)}"
    else:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_LOCATION = re.compile(r"(.*?):(\d+):(\d+): ")


def sort_problems(problems: list[str]) -> list[str]:
    """File order, then line and column: the order a person reads and fixes them in."""

    def key(message: str) -> tuple[str, int, int]:
        match = _LOCATION.match(message)
        if match is None:
            return (message, 0, 0)
        return (match.group(1), int(match.group(2)), int(match.group(3)))

    return sorted(problems, key=key)


_PARTS = re.compile(
    r"(?P<file>.*?):(?P<line>\d+):(?P<column>\d+): "
    r"(?:(?P<subject>(?:rule|list|case) '.*?'): )?\[(?P<code>R\d{3})\] (?P<message>.*)",
    re.DOTALL,
)


def problem_fields(problem: str) -> dict[str, str | int]:
    """One located message as fields (file, line, column, subject, code, message), e.g. for
    `tag-gateway check --format json`; a message of another shape is all `message`."""
    match = _PARTS.fullmatch(problem)
    if match is None:
        return {"file": "", "line": 0, "column": 0, "subject": "", "code": "", "message": problem}
    return {"file": match["file"], "line": int(match["line"]), "column": int(match["column"]),
            "subject": match["subject"] or "", "code": match["code"], "message": match["message"]}
