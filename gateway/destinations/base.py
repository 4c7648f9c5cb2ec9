"""What a destination type provides: the seam every upstream platform plugs into.

A type (registered by its config `type` in `destinations/__init__.py`) reads its own options
from a destination's config block and builds `Destination`s: runtime objects that know their
settings (the envelope every type shares plus the type's options) and do the type's part of the
work, nothing else:

- at ingest (the type's, as they depend on the platform only): the platform's first-party
  cookies a hit carries or it mints (`cookie_names`, `first_party_cookies`), the identifiers it
  matches people by, normalized and hashed its own way from the raw values (`identities`);
  then `validate` an event for the platform (an event one platform refuses can still go to
  another) and say when it `expires`; and the destination's `address` stored on its row;
- at relay: group claimed rows into requests (`batch_key`), `send` one request and classify the
  answer by raising `Retryable` / `RateLimited` / `TokenRejected` / `Permanent` (errors.py); the
  relay worker does everything generic (claims, batching, backoff, bisecting refused batches,
  pauses and alerts, dry run, acknowledgements);
- for people: its `endpoint` and `target` (where events go) and `describe_batch` (what one
  request holds), never a secret;
- optionally, for the console: `async check_token(session) -> str` asks the platform whether
  the credentials work without recording an event, and `async send_test_event(session) -> str`
  sends one event the platform keeps apart as a test; each answers the platform's verdict in
  words, raises a RelayError subclass when the platform refuses, or CannotTest when it cannot
  be done as configured. A type without them says so in the console.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp

if TYPE_CHECKING:
    from ..configreader import Reader
    from ..model import Context
    from ..settings import DestinationSettings
    from ..storage import ClaimedRow

__all__ = ["CannotTest", "Destination", "DestinationBase", "DestinationOptions",
           "DestinationType", "summarize"]


class CannotTest(Exception):
    """A token check or test event that this destination cannot make as configured (the
    message says what to change)."""


class DestinationOptions(Protocol):
    """A type's own options (a frozen dataclass; secrets declared with `repr=False`)."""

    @property
    def credentials(self) -> tuple[str, ...]:
        """The secrets a request needs. A change of any of them counts as new credentials
        (it resumes a destination paused for refused ones)."""

    @property
    def missing_credentials(self) -> str:
        """Why requests cannot be made (`no access_token`: the destination runs dry), or ""."""

    @property
    def default_accepts(self) -> frozenset[str] | None:
        """The incoming pixel ids the destination receives when `accepts` is absent (None:
        every one)."""


class Destination(Protocol):
    """One configured destination at run time (immutable; a reload builds new ones)."""

    @property
    def settings(self) -> DestinationSettings: ...

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> DestinationType:
        """Its type."""

    def accepts_pixel(self, pixel_id: str) -> bool: ...

    def address(self, context: Context) -> tuple[str, str]:
        """What the event's row records for this destination: (pixel or account id, test
        code)."""

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        """Rows with equal keys may share one request."""

    @property
    def endpoint(self) -> str:
        """The platform's address the requests go to, for `check` and start-up logs (no
        secrets)."""

    @property
    def target(self) -> str:
        """Which account, pixel or URL receives the events, in words (`pixel 123`)."""

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        """What one request would carry, for dry-run logs (no personal data, no secrets)."""

    async def send(
        self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]
    ) -> str | None:
        """Deliver rows that share a batch key in one request; raise a RelayError subclass
        with a reason safe to log and store when it did not succeed. May return the
        platform's answer in words for the log (`events_received 3`; no personal data, no
        secrets)."""


class DestinationType(Protocol):
    """A platform: its config options and how to build its destinations."""

    @property
    def name(self) -> str:
        """The config `type`."""

    @property
    def vendor(self) -> str:
        """The platform's owner, as people name it in messages (`Meta`)."""

    @property
    def takes_test_events(self) -> bool:
        """Whether events sent with Meta's `test_event_code` (server events testing in Events
        Manager) may go to this platform: only where they stay test events there. Elsewhere
        they are withheld, never recorded as real conversions."""

    @property
    def default_consent(self) -> str:
        """What a visitor must have granted by default (`ads`, `analytics` or `none`)."""

    @property
    def credentials_name(self) -> str:
        """What its credentials are called in messages (`access token`)."""

    @property
    def account_option(self) -> str:
        """The option naming the pixel, account or address that receives the events
        (`pixel_id`), for the console's add form."""

    @property
    def secret_option(self) -> str:
        """The option holding its secret (`access_token`): write-only in the console, sealed
        at rest there, never shown."""

    @property
    def max_batch_size(self) -> int:
        """The platform's limit of events per request (also the default `batch_size`)."""

    @property
    def cookie_names(self) -> frozenset[str]:
        """The platform's first-party cookies to read from hits (`_ga`), besides Meta's."""

    def first_party_cookies(
        self, found: Mapping[str, str], *, now: float, labels: int,
        click_ids: Mapping[str, str],
    ) -> dict[str, str]:
        """The platform's cookies for this visitor: the valid ones `found` (set again, which
        renews their lifetime) and any it mints for a visitor who has none or clicked an ad.
        Values must be cookie-safe (they go into Set-Cookie as they are). `labels`: the cookie
        domain's labels minus one (`example.com`: 1)."""

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        """What the platform matches people by, from the event's raw user_data before Meta's
        hashing replaces it, normalized and hashed the platform's way; stored with the event
        (never raw values). Empty when the event's own user_data is what it needs."""

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        """Every reason the platform would refuse this event (fields, never values)."""

    def expires(self, data: dict[str, Any]) -> float:
        """When the platform stops accepting this event (Unix seconds)."""

    def read_options(self, reader: Reader) -> DestinationOptions:
        """Read and check the type's keys of one destination block, recording located
        problems on the reader (secret values read with `secret=True`)."""

    def build(self, settings: DestinationSettings) -> Destination: ...


def summarize(rows: Sequence[ClaimedRow]) -> str:
    """'PageView x3, Purchase x1': what a batch holds, with no personal data."""
    counts = Counter(row.event_name for row in rows)
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items()))


OptionsT = TypeVar("OptionsT")


class DestinationBase(Generic[OptionsT]):
    """What every type's Destination shares: its settings, its options (of the type's own
    class, `options_type`), its name and its type."""

    options_type: ClassVar[type[Any]]

    def __init__(self, settings: DestinationSettings, kind: DestinationType) -> None:
        if not isinstance(settings.options, self.options_type):
            raise TypeError(f"destination {settings.name}: options are not {kind.name}'s")
        self.settings = settings
        self.options: OptionsT = settings.options
        self.name = settings.name
        self.kind = kind

    def accepts_pixel(self, pixel_id: str) -> bool:
        return self.settings.accepts_pixel(pixel_id)
