"""Located problems in rule files and rule-test files, collected so a person fixes them all at once.

Each is a Problem rendered as `rules/file.yaml:LINE:COL: rule 'name': [Rnnn] what is wrong; the
fix`. The codes are stable (docs/rules.md lists them), so tools and people can search for them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ProblemsError
from ..problems import Problem
from ..yamlsource import KeyPath, Marks

__all__ = ["RuleError", "Scope", "did_you_mean", "show", "sort_problems", "written"]


class RuleError(ProblemsError):
    """Rule or rule-test files are unusable; `problems` holds one Problem per mistake."""


@dataclass(frozen=True)
class Scope:
    """Where problems go: one file's marks and what is being read there (`rule 'x'`, ...)."""

    marks: Marks
    sink: list[Problem]
    subject: str = ""

    def error(self, path: KeyPath, code: str, message: str, *, at_key: bool = False) -> None:
        self.sink.append(self.marks.problem(path, message, subject=self.subject, code=code,
                                            key=at_key))

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


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """File order, then line and column: the order a person reads and fixes them in."""
    return sorted(problems, key=Problem.sort_key)
