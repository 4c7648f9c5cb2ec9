"""The one internal event model: a Conversions API event plus a context never sent upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .identity.geo import GeoInfo
    from .identity.useragent import UserAgentInfo
    from .rules import Decision

__all__ = ["ACCESS_KEY_NAME", "PIXEL_ID", "Context", "Event"]

# The one definition of each, for config, ingress and the key tool alike.
PIXEL_ID = re.compile(r"[0-9]{1,20}")  # ASCII digits only (str.isdigit also takes "²")
ACCESS_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

Source = Literal["browser", "server"]


@dataclass(slots=True)
class Context:
    """What the gateway knows about an event besides the event itself (never sent upstream)."""

    source: Source
    pixel_id: str  # the pixel id the event was received for
    received_at: float  # Unix seconds, server clock
    ip: str | None = None
    user_agent: str | None = None
    test_event_code: str = ""
    request_fields: str = ""  # other top-level fields to forward (JSON object, sorted keys)
    ua: UserAgentInfo | None = None  # parsed user agent (enrichment)
    geo: GeoInfo | None = None  # from the client IP (enrichment)
    warnings: list[str] = field(default_factory=list)  # values dropped on the way, by field name
    decision: Decision | None = None  # what the rules decided (drop, route)
    rule_set: str = ""  # hash of the rule set that decided it


@dataclass(slots=True)
class Event:
    """`data` is the CAPI event exactly as it will be relayed (event_name, event_time, ...)."""

    data: dict[str, Any]
    context: Context

    @property
    def name(self) -> str:
        return str(self.data["event_name"])

    @property
    def id(self) -> str:
        return str(self.data["event_id"])
