"""Problems in the files people edit (config.yaml, rule files, rule tests), as values.

Every reader collects `Problem`s (where, what, which stable code) so a person fixes them all in
one pass; they are rendered only at the edge: `str(problem)` for a terminal or a log
(`rules/10-bots.yaml:4:5: rule 'x': [R101] what is wrong; what to do`), `as_dict()` for
`tag-gateway check --format json`. Nothing parses a rendered problem back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int = 0  # 0: the file as a whole
    column: int = 0
    subject: str = ""  # the key (`destinations[0].pixel_id`) or what was being read (`rule 'x'`)
    code: str = ""  # stable code, e.g. R101 (rule files)
    message: str = ""  # what is wrong, with the bad value where it is safe to show
    hint: str = ""  # what would be valid, when it is not already said in the message

    def location(self) -> str:
        """`file:line:column`, `file:line` or `file`."""
        where = self.file
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        text = self.location() + ": "
        if self.subject:
            text += f"{self.subject}: "
        if self.code:
            text += f"[{self.code}] "
        return text + self.message + (f"; {self.hint}" if self.hint else "")

    def as_dict(self) -> dict[str, str | int]:
        return asdict(self)

    def sort_key(self) -> tuple[str, int, int]:
        """File order, then line and column: the order a person reads and fixes them in."""
        return self.file, self.line, self.column

