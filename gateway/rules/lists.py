"""Named lists: values written once (`lists:` in any rule file) and used by many rules.

    lists:
      internal_networks: [10.0.0.0/8, 192.168.0.0/16]
      bot_browsers: [HeadlessChrome, PhantomJS]

Rules use them with `in_list: name`, `not_in_list: name`, `in_cidr: name` or `not_in_cidr: name`.
Lists are global: a rule in one file may use a list from another. A list's CIDRs are parsed
once, the first time a rule uses the list with `in_cidr`, and bad entries are reported on the
list's own lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..yamlsource import KeyPath
from .operands import Network, parse_network
from .problems import Scope, show

__all__ = ["NamedList", "read_lists"]

LIST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


@dataclass(eq=False)
class NamedList:
    name: str
    items: tuple[tuple[KeyPath, Any], ...]  # (where in its file, value)
    scope: Scope  # its file, about "list 'name'"
    path: KeyPath
    _networks: tuple[Network, ...] | None = field(default=None, repr=False)
    _networks_read: bool = field(default=False, repr=False)

    @property
    def location(self) -> str:
        return self.scope.marks.locate(self.path, key=True)

    def networks(self) -> tuple[Network, ...] | None:
        """The list as IP networks; None (reported once, on the list) if an entry is not one."""
        if not self._networks_read:
            self._networks_read = True
            parsed, bad = [], False
            for path, value in self.items:
                network = parse_network(value) if isinstance(value, str) else None
                if network is None:
                    bad = True
                    self.scope.error(path, "R044", f"{show(value)} is not an IP network; a "
                                     "rule uses this list with in_cidr, so write each entry "
                                     "like 10.0.0.0/8, 2001:db8::/32 or 203.0.113.7")
                else:
                    parsed.append(network)
            self._networks = None if bad else tuple(parsed)
        return self._networks


def read_lists(data: Any, scope: Scope, into: dict[str, NamedList]) -> None:
    """Add the `lists:` block of one file to `into`, reporting every problem."""
    path: KeyPath = ("lists",)
    if data is None:
        return
    if not isinstance(data, dict):
        scope.error(path, "R040", "`lists` is a mapping of list names to lists, e.g. "
                    "lists: {internal_networks: [10.0.0.0/8]}, got " + show(data))
        return
    for name, values in data.items():
        where = (*path, name)
        about = scope.about(f"list '{name}'")
        if not LIST_NAME.fullmatch(name):
            about.error(where, "R041", "a list name is a word of letters, digits, '_' or '-' "
                        "starting with a letter, e.g. internal_networks", at_key=True)
            continue
        if name in into:
            about.error(where, "R042", "another list has this name (at "
                        f"{into[name].location}); list names are shared by every rule file, so "
                        "rename one", at_key=True)
            continue
        items = _items(values, where, about)
        if items is not None:
            into[name] = NamedList(name, items, about, where)


def _items(values: Any, path: KeyPath, scope: Scope) -> tuple[tuple[KeyPath, Any], ...] | None:
    if not isinstance(values, list) or not values:
        scope.error(path, "R043", "a list holds one or more values, e.g. [a, b], got "
                    + show(values))
        return None
    items, ok = [], True
    for index, value in enumerate(values):
        where = (*path, index)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            scope.error(where, "R043", f"list entries are text or numbers, got {show(value)}")
            ok = False
        else:
            items.append((where, value))
    return tuple(items) if ok else None
