"""`type: ga4`: Google Analytics 4 through the Measurement Protocol, one web data stream (a
measurement id and its API secret) per destination.

Options (beside the envelope every destination has): `measurement_id`, `api_secret` (empty:
dry run), `api_url`, `debug_mode`, `user_id_from_external_id`. events.py turns an event into
GA4's and checks GA4's limits; identity.py holds the `_ga` cookie, the client and session ids
and the user-provided data; sender.py the request and the answers. docs/destinations.md
has the facts they rely on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from ...errors import Permanent
from ..base import CannotTest, DestinationBase, summarize
from . import identity
from .check import NO_SECRET_CHECK, test_event_body, validate_test_event
from .events import build_event, expiry, validate_event
from .sender import post, validation_messages

if TYPE_CHECKING:
    from ...configreader import Reader
    from ...model import Context
    from ...settings import DestinationSettings
    from ...storage import ClaimedRow

__all__ = ["GA4", "Ga4", "Ga4Options", "Ga4Type"]

MAX_BATCH_SIZE = 25  # "Requests can have a maximum of 25 events"
ENGAGEMENT_TIME_MSEC = 1  # not measured by a gateway; non-zero so events show in Realtime
MEASUREMENT_ID = r"G-[A-Z0-9]{4,20}"


@dataclass(frozen=True)
class Ga4Options:
    measurement_id: str = ""
    api_secret: str = field(default="", repr=False)
    api_url: str = "https://www.google-analytics.com"
    debug_mode: bool = False  # every event gets debug_mode, to show in GA4's DebugView
    user_id_from_external_id: bool = False  # send the hashed external_id as user_id

    @property
    def credentials(self) -> tuple[str, ...]:
        return (self.api_secret,)

    @property
    def missing_credentials(self) -> str:
        return "" if self.api_secret else "no api_secret"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None  # every incoming pixel id


class Ga4Type:
    name = "ga4"
    vendor = "Google"
    credentials_name = "API secret"
    account_option = "measurement_id"
    secret_option = "api_secret"
    default_consent = "analytics"
    takes_test_events = False
    max_batch_size = MAX_BATCH_SIZE
    cookie_names = frozenset({identity.COOKIE})

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        return {identity.COOKIE: identity.ga_cookie(found, now, labels)}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        return identity.user_data(user_data, default_country)

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return validate_event(data, now)

    def expires(self, data: dict[str, Any]) -> float:
        return expiry(data)

    def read_options(self, r: Reader) -> Ga4Options:
        d = Ga4Options()
        return Ga4Options(
            measurement_id=r.string("measurement_id", pattern=MEASUREMENT_ID,
                                    hint="a web stream's measurement ID such as G-ABC123XYZ "
                                         "(Admin > Data streams)"),
            api_secret=r.string("api_secret", d.api_secret, secret=True,
                                pattern=r"[A-Za-z0-9_-]*",
                                hint="a Measurement Protocol API secret (letters, digits, "
                                     "'_' and '-')"),
            api_url=r.string("api_url", d.api_url, pattern=r"https?://[^\s?#]+",
                             hint="an http(s) base URL such as "
                                  "https://www.google-analytics.com").rstrip("/"),
            debug_mode=r.boolean("debug_mode", d.debug_mode),
            user_id_from_external_id=r.boolean("user_id_from_external_id",
                                               d.user_id_from_external_id),
        )

    def build(self, settings: DestinationSettings) -> Ga4:
        return Ga4(settings, self)


class Ga4(DestinationBase[Ga4Options]):
    """A `ga4` destination."""

    options_type = Ga4Options

    def address(self, context: Context) -> tuple[str, str]:
        # A server event's test_event_code marks it as a test: it goes with debug_mode.
        return self.options.measurement_id, context.test_event_code

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        # One client (and one set of user-level fields) per request.
        request = _Row(row, self.options)
        return request.client_id, request.user_key

    @property
    def endpoint(self) -> str:
        return f"{self.options.api_url}/mp/collect"

    @property
    def target(self) -> str:
        return f"measurement id {self.options.measurement_id}"

    @property
    def validation_url(self) -> str:
        """GA4's validation server: checks requests, records nothing."""
        return f"{self.options.api_url}/debug/mp/collect"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        debug = " with debug_mode" if self.options.debug_mode or rows[0].test_event_code else ""
        return (f"POST {len(rows)} events ({summarize(rows)}) to {self.endpoint} for "
                f"measurement_id {self.options.measurement_id}{debug}")

    def body(self, rows: Sequence[ClaimedRow], *, validation: bool = False) -> bytes:
        """The request for rows sharing a batch key; Permanent when an event cannot be sent
        (refused by GA4's rules since it was stored, e.g. after an upgrade)."""
        first = _Row(rows[0], self.options)
        events = []
        for row in rows:
            request = first if row is rows[0] else _Row(row, self.options)
            built = build_event(
                request.payload, session_id=identity.session_id(request.payload.get(
                    "event_time")), engagement_time_msec=ENGAGEMENT_TIME_MSEC,
                debug_mode=self.options.debug_mode or bool(row.test_event_code))
            if built.reasons:
                raise Permanent("GA4 would drop this event: " + "; ".join(built.reasons))
            events.append(built.event)
        body: dict[str, Any] = {"client_id": first.client_id}
        if first.user_id:
            body["user_id"] = first.user_id
        if first.user_data:
            body["user_data"] = first.user_data
        if validation:
            body["validation_behavior"] = "ENFORCE_RECOMMENDATIONS"
        body["events"] = events
        return orjson.dumps(body)

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        await post(session, self.endpoint, self.options.measurement_id,
                   self.options.api_secret, self.body(rows), self.settings.timeout)

    async def validate_remotely(self, session: aiohttp.ClientSession,
                                rows: Sequence[ClaimedRow]) -> list[str]:
        """Ask GA4's validation server (`/debug/mp/collect`, strict) about these rows; its
        validationMessages as readable lines (empty: all fine). Nothing is recorded by GA4."""
        messages: list[str] = []
        groups: dict[tuple[str, ...], list[ClaimedRow]] = {}
        for row in rows:
            try:
                self.body([row])
            except Permanent as exc:  # refused here already: not worth asking
                messages.append(f"events {row.event_id}: {exc.reason}")
                continue
            groups.setdefault(self.batch_key(row), []).append(row)
        url = self.validation_url
        for group in groups.values():
            for start in range(0, len(group), MAX_BATCH_SIZE):
                chunk = group[start:start + MAX_BATCH_SIZE]
                ids = ", ".join(row.event_id for row in chunk)
                _, raw = await post(session, url, self.options.measurement_id,
                                    self.options.api_secret, self.body(chunk, validation=True),
                                    self.settings.timeout)
                messages += [f"events {ids}: {line}" for line in validation_messages(raw)]
        return messages

    async def check_token(self, session: aiohttp.ClientSession) -> str:
        """GA4 has no call that refuses a wrong api_secret (check.py): nothing to ask."""
        raise CannotTest(NO_SECRET_CHECK)

    async def send_test_event(self, session: aiohttp.ClientSession) -> str:
        """One page_view to the validation server (check.py): the payload's verdict only."""
        return await validate_test_event(
            session, self.validation_url, self.options.measurement_id, self.options.api_secret,
            test_event_body(time.time(), ENGAGEMENT_TIME_MSEC), self.settings.timeout)


class _Row:
    """What one stored row means for GA4: its event, client, user-level fields."""

    __slots__ = ("client_id", "payload", "user_data", "user_id", "user_key")

    def __init__(self, row: ClaimedRow, options: Ga4Options) -> None:
        # A row that does not parse has no event name: `body` refuses it (dead letter).
        payload = _json(row.payload)
        context = _json(row.context)
        self.payload: dict[str, Any] = payload if isinstance(payload, dict) else {}
        context = context if isinstance(context, dict) else {}
        cookies = context.get("cookies")
        identities = context.get("identities")
        raw_user = self.payload.get("user_data")
        user = raw_user if isinstance(raw_user, dict) else {}
        self.client_id = identity.client_id(cookies if isinstance(cookies, dict) else {}, user,
                                            row.event_id)
        found = identities.get(GA4.name) if isinstance(identities, dict) else None
        consent = context.get("consent")
        # Consent Mode: ad_user_data governs user-provided data sent to Google.
        shares = not (isinstance(consent, dict) and consent.get("ad_user_data") == "denied")
        self.user_data: dict[str, Any] = found if isinstance(found, dict) and shares else {}
        self.user_id = ""
        if options.user_id_from_external_id and shares:
            external = user.get("external_id")
            if isinstance(external, list):
                external = external[0] if external else ""
            self.user_id = external if isinstance(external, str) else ""
        self.user_key = orjson.dumps([self.user_id, self.user_data],
                                     option=orjson.OPT_SORT_KEYS).decode()


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}


GA4 = Ga4Type()
