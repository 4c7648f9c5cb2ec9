"""The one internal event model: a Conversions API event plus a context never sent upstream."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import orjson

if TYPE_CHECKING:
    from .identity.consent import Consent
    from .identity.geo import GeoInfo
    from .identity.useragent import UserAgentInfo
    from .pipeline import Route

__all__ = ["ACCESS_KEY_NAME", "ACTION_SOURCES", "CURRENCY", "MAX_EVENT_NAME", "PIXEL_ID", "URL",
           "Context", "Decision", "Event"]

# The one definition of each, for config, ingress and the key tool alike.
PIXEL_ID = re.compile(r"[0-9]{1,20}")  # ASCII digits only (str.isdigit also takes "²")
ACCESS_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# The shape of the event model's fields (the Conversions API's), for the hit reader, rule
# actions and destination types alike.
ACTION_SOURCES = ("website", "app", "email", "phone_call", "chat", "physical_store",
                  "system_generated", "business_messaging", "other")
MAX_EVENT_NAME = 100
CURRENCY = re.compile(r"[A-Za-z]{3}")
URL = re.compile(r"https?://[^\s/]+.*", re.IGNORECASE)

Source = Literal["browser", "server"]


class Routable(Protocol):
    """A destination as routing sees it: a name and the pixel ids it receives."""

    @property
    def name(self) -> str: ...

    def accepts_pixel(self, pixel_id: str) -> bool: ...


R = TypeVar("R", bound=Routable)


@dataclass(slots=True)
class Decision:
    """What the rules decided for one event."""

    dropped_by: str | None = None  # the rule that dropped it
    only: frozenset[str] | None = None  # routed to these destinations only; None = not routed
    matched: list[str] = field(default_factory=list)  # rules whose `when` matched, in order

    @property
    def dropped(self) -> bool:
        return self.dropped_by is not None

    @property
    def routed_nowhere(self) -> bool:
        """Routing rules left no destination (their lists had no name in common)."""
        return self.only is not None and not self.only

    def select(self, destinations: Sequence[R], pixel_id: str) -> list[R]:
        """Where the event goes: none if dropped, the routed ones, else all accepting its pixel."""
        if self.dropped_by is not None:
            return []
        if self.only is not None:
            return [d for d in destinations if d.name in self.only]
        return [d for d in destinations if d.accepts_pixel(pixel_id)]


@dataclass(slots=True)
class Context:
    """What the gateway knows about an event besides the event itself (never sent upstream)."""

    source: Source
    pixel_id: str  # the pixel id the event was received for
    ip: str | None = None
    user_agent: str | None = None
    test_event_code: str = ""
    request_fields: str = ""  # other top-level fields to forward (JSON object, sorted keys)
    ua: UserAgentInfo | None = None  # parsed user agent (enrichment)
    geo: GeoInfo | None = None  # from the client IP (enrichment)
    warnings: list[str] = field(default_factory=list)  # values dropped on the way, by field name
    decision: Decision | None = None  # what the rules decided (drop, route)
    rule_set: str = ""  # hash of the rule set that decided it
    route: Route | None = None  # where it goes (pipeline.prepare)
    click_ids: dict[str, str] | None = None  # ad platforms' click ids from the page URL
    cookies: dict[str, str] | None = None  # other platforms' first-party cookies (`_ga`)
    identities: dict[str, dict[str, Any]] | None = None  # per type: its own hashed identifiers
    consent: Consent | None = None  # the visitor's consent signals (None: the hit gave none)

    def stored(self, kind: str) -> bytes:
        """What a destination of type `kind` needs at send time besides the event itself, as
        the JSON object stored with its row: `click_ids`, `cookies`, its own `identities`,
        `consent` (each only when there is any; empty bytes when there is nothing). Another
        type's identifiers never reach its row."""
        own = self.identities.get(kind) if self.identities else None
        stored = {key: value for key, value in (
            ("click_ids", self.click_ids), ("cookies", self.cookies),
            ("identities", {kind: own} if own else None),
            ("consent", self.consent.as_dict() if self.consent else None)) if value}
        return orjson.dumps(stored) if stored else b""


@dataclass(slots=True)
class Event:
    """`data` is the event in the Conversions API's shape (event_name, event_time, ...)."""

    data: dict[str, Any]
    context: Context
