"""Reading the values written in conditions, and the value tests built from them.

YAML guesses types: `NO` (Norway) becomes false, `0123` becomes 83. For a field that holds text
the value is taken exactly as the person typed it, so `context.geo.country: NO` means "NO".
Comparisons keep types apart otherwise: text equals text, numbers equal numbers (10 equals 10.0),
true/false equal booleans; a number written in a rule also matches the same digits sent as text
(`custom_data.order_id: 123` matches "123"), because browser hits carry most values as text.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .fields import Field

__all__ = [
    "Operand",
    "OperandError",
    "coerce",
    "ip_key",
    "member_test",
    "parse_network",
    "to_number",
]

_NUMERIC = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_LEADING_ZERO = re.compile(r"[+-]?0\d+")


class OperandError(ValueError):
    """A value in a rule cannot be used with its field or operator; the text says why."""


@dataclass(frozen=True)
class Operand:
    value: str | int | float | bool
    text: str  # as written


def coerce(field: Field, value: Any, text: str) -> Operand:
    """Turn a written scalar into what the field's values are compared with."""
    if value is None or isinstance(value, dict | list):
        raise OperandError("needs a single value here (text, a number, true or false)")
    if not isinstance(value, str | int | float | bool):
        raise OperandError(f"cannot use {text!r} here; put it in quotes to mean the text")
    if field.kind == "text":
        return Operand(text, text)
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise OperandError(f"is true or false (without quotes), got {text!r}")
        return Operand(value, text)
    if isinstance(value, float) and not math.isfinite(value):
        raise OperandError("needs a finite number")
    if field.kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OperandError(f"is a number; write one without quotes, got {text!r}")
        return Operand(value, text)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if _LEADING_ZERO.fullmatch(text):  # 00501: a code, not a number
            return Operand(text, text)
    return Operand(value, text)


def member_test(operands: Sequence[Operand]) -> Callable[[Any], bool]:
    """A test `value -> bool`: does the value equal one of the operands?"""
    texts = frozenset(
        op.text for op in operands if isinstance(op.value, str | int | float)
        and not isinstance(op.value, bool)
    )
    numbers = frozenset(
        op.value for op in operands
        if isinstance(op.value, int | float) and not isinstance(op.value, bool)
    )
    bools = frozenset(op.value for op in operands if isinstance(op.value, bool))
    if not numbers and not bools:
        if len(texts) == 1:
            (only,) = texts

            def equals_only(value: Any) -> bool:
                return bool(value == only)  # only text equals text

            return equals_only

        def text_member(value: Any) -> bool:
            return type(value) is str and value in texts

        return text_member

    def member(value: Any) -> bool:
        kind = type(value)
        if kind is str:
            return value in texts
        if kind is int or kind is float:
            return value in numbers
        if kind is bool:
            return value in bools
        return False

    return member


def to_number(value: Any) -> float | int | None:
    """A field value as a number: numbers, or text that is exactly a number; else None."""
    kind = type(value)
    if kind is int or kind is float:
        return value  # type: ignore[no-any-return]
    if kind is str and len(value) < 64 and _NUMERIC.fullmatch(value):
        return float(value)
    return None


Network = tuple[int, int, int]  # version, mask, network address as integers


def parse_network(text: str) -> Network | None:
    """`10.0.0.0/8`, `2001:db8::/32` or a single address; None when it is neither."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
    return network.version, int(network.netmask), int(network.network_address)


@lru_cache(maxsize=8192)
def ip_key(text: str) -> tuple[int, int] | None:
    """(version, integer) of an IP address; IPv4-mapped IPv6 counts as IPv4; None if not an IP."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)
