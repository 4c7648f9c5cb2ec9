"""`type: pinterest`: Pinterest's Conversions API (API v5), one ad account per destination.

Options (beside the envelope every destination has): `ad_account_id`, `access_token` (the
conversion access token from Ads Manager; empty: dry run), `test` (every request marked
`?test=true`: validated, not recorded) and `api_url`. docs/destinations.md has the
facts this module relies on and what it chose where Pinterest's documentation is silent.

The wire format is Pinterest's, built at send time from the stored event (Meta's shape) and
its context: Pinterest's event names, `action_source` `web`/`offline`, user_data hashes as
lists, the `epik` click id (URL or `_epik` cookie) as `click_id`, custom_data with `value` and
`item_price` as text. Pinterest refuses any property it does not define (its schema has
`additionalProperties: false`), so only the fields below are ever sent.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import aiohttp
import orjson

from ..errors import Permanent, RateLimited, RelayError, Retryable, TokenRejected
from ..hashing import looks_hashed
from ..model import CURRENCY, Context
from ..normalize import NORMALIZERS
from .base import DestinationBase, summarize
from .checks import FUTURE_SKEW_SECONDS
from .http import masked, post_json, scrubbed
from .http import retry_after as read_retry_after
from .pinterest_check import test_event_body, verdict

if TYPE_CHECKING:
    from ..configreader import Reader
    from ..settings import DestinationSettings
    from ..storage import ClaimedRow

__all__ = ["EVENT_NAMES", "PINTEREST", "Pinterest", "PinterestOptions", "PinterestType",
           "classify", "wire_event"]

MAX_BATCH_SIZE = 1000  # `data`: maxItems 1000 in the Send conversions schema
MAX_AGE_DAYS = 7  # our window (docs/destinations.md: "Backdating")
RATE_LIMIT_DELAY = 60.0  # 5,000 calls per minute per ad account
CONFIG_DELAY = 300.0  # a redirect or an unknown address: the config, not the events
MAX_REASON = 300

# Meta's standard names (and Pinterest's own, passed through) -> Pinterest's event_name enum.
EVENT_NAMES: dict[str, str] = {
    "PageView": "page_visit",
    "ViewContent": "view_content",
    "AddToCart": "add_to_cart",
    "AddToWishlist": "add_to_wishlist",
    "InitiateCheckout": "initiate_checkout",
    "AddPaymentInfo": "add_payment_info",
    "Purchase": "checkout",
    "Lead": "lead",
    "CompleteRegistration": "signup",
    "Search": "search",
    "Subscribe": "subscribe",
    "ViewCategory": "view_category",
    "WatchVideo": "watch_video",
}
PINTEREST_NAMES = frozenset({
    "add_payment_info", "add_to_cart", "add_to_wishlist", "app_install", "checkout", "custom",
    "initiate_checkout", "lead", "page_visit", "search", "signup", "subscribe",
    "view_category", "view_content", "watch_video",
})
# Meta's action_source -> Pinterest's (web, offline, app_android, app_ios).
ACTION_SOURCES = {
    "website": "web", "email": "offline", "phone_call": "offline", "chat": "offline",
    "physical_store": "offline", "system_generated": "offline", "business_messaging": "offline",
    "other": "offline",
    "web": "web", "offline": "offline", "app_android": "app_android", "app_ios": "app_ios",
}
# user_data keys Pinterest takes as lists of SHA-256 hashes (Meta's normalization fits them).
HASHED_KEYS = ("em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country", "external_id")
_SHA256 = re.compile(r"[a-f0-9]{64}")
# The `_epik` cookie / `epik` click id: an opaque token (base64-like); kept as written.
EPIK = re.compile(r"[A-Za-z0-9+/=_.~%-]{1,500}")
_ZIP_PLUS_4 = re.compile(r"(\d{5})-?\d{4}")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_BEARER = re.compile(r"Bearer\s+\S+", re.IGNORECASE)


@dataclass(frozen=True)
class PinterestOptions:
    ad_account_id: str = ""
    access_token: str = field(default="", repr=False)
    test: bool = False
    api_url: str = "https://api.pinterest.com"

    @property
    def credentials(self) -> tuple[str, ...]:
        # The account too: a 403 (the token may not write to that account) is mended by either.
        return (self.access_token, self.ad_account_id)

    @property
    def missing_credentials(self) -> str:
        return "" if self.access_token else "no access_token"

    @property
    def default_accepts(self) -> frozenset[str] | None:
        return None  # every incoming pixel id


class PinterestType:
    name = "pinterest"
    vendor = "Pinterest"
    credentials_name = "conversion access token"
    account_option = "ad_account_id"
    secret_option = "access_token"
    default_consent = "ads"
    takes_test_events = True
    max_batch_size = MAX_BATCH_SIZE
    cookie_names: frozenset[str] = frozenset({"_epik"})

    def first_party_cookies(self, found: Mapping[str, str], *, now: float, labels: int,
                            click_ids: Mapping[str, str]) -> dict[str, str]:
        """`_epik`: a new ad click's `epik` wins; else a valid one the visitor has is kept (and
        renewed). Nothing is minted: only Pinterest issues epik values."""
        for value in (_url_epik(click_ids.get("epik")), found.get("_epik", "")):
            if EPIK.fullmatch(value):
                return {"_epik": value}
        return {}

    def identities(self, user_data: Mapping[str, Any], default_country: str | None
                   ) -> dict[str, Any]:
        """Where Pinterest normalizes differently from Meta: zp, digits only (a postal code
        with letters has no digits-only form: none is sent). Every other key is Meta's
        normalization, reused from the event's hashed user_data at send time."""
        raw = user_data.get("zp")
        if raw is None:
            return {}
        ours: list[str] = []
        metas: list[str] = []
        for value in raw if isinstance(raw, list) else [raw]:
            if isinstance(value, bool) or not isinstance(value, str | int):
                continue
            text = str(value)
            hashed = looks_hashed(text)
            if hashed is not None:  # hashed by the sender: nothing to redo
                ours.append(hashed)
                metas.append(hashed)
                continue
            digits = _zip_digits(text)
            if digits:
                ours.append(_sha256(digits))
            meta = NORMALIZERS["zp"](text)
            if meta:
                metas.append(_sha256(meta))
        return {} if ours == metas else {"zp": list(dict.fromkeys(ours))}

    def validate(self, data: dict[str, Any], now: float) -> list[str]:
        return validate_event(data, now)

    def expires(self, data: dict[str, Any]) -> float:
        event_time = data.get("event_time")
        if isinstance(event_time, bool) or not isinstance(event_time, int | float):
            return 0.0  # an invalid event: never sent
        return float(event_time) + MAX_AGE_DAYS * 86400

    def read_options(self, r: Reader) -> PinterestOptions:
        d = PinterestOptions()
        return PinterestOptions(
            ad_account_id=r.string("ad_account_id", pattern=r"[0-9]{1,30}",
                                   hint="the ad account's numeric id (Ads Manager)"),
            access_token=r.string("access_token", d.access_token, secret=True,
                                  pattern=r"[A-Za-z0-9_.~+/=-]*",
                                  hint="a conversion access token from Ads Manager"),
            test=r.boolean("test", d.test),
            api_url=r.string("api_url", d.api_url, pattern=r"https?://[^\s?#]+",
                             hint="an http(s) base URL such as https://api.pinterest.com"
                             ).rstrip("/"),
        )

    def build(self, settings: DestinationSettings) -> Pinterest:
        return Pinterest(settings, self)


class Pinterest(DestinationBase[PinterestOptions]):
    """A `pinterest` destination."""

    options_type = PinterestOptions

    def address(self, context: Context) -> tuple[str, str]:
        # A server event sent with Meta's test_event_code is a test: Pinterest gets it as one.
        return self.options.ad_account_id, context.test_event_code

    def batch_key(self, row: ClaimedRow) -> tuple[str, ...]:
        return (self._test_param(row),)

    def _test_param(self, row: ClaimedRow) -> str:
        return "true" if self.options.test or row.test_event_code else ""

    @property
    def events_url(self) -> str:
        return f"{self.options.api_url}/v5/ad_accounts/{self.options.ad_account_id}/events"

    @property
    def endpoint(self) -> str:
        return self.events_url

    @property
    def target(self) -> str:
        return f"ad account {self.options.ad_account_id}"

    def describe_batch(self, rows: Sequence[ClaimedRow]) -> str:
        test = " with test=true" if self._test_param(rows[0]) else ""
        return f"POST {len(rows)} events ({summarize(rows)}) to {self.events_url}{test}"

    async def send(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow]) -> None:
        status, raw, retry_after = await self._post(session, rows,
                                                    test=bool(self._test_param(rows[0])))
        error = classify(status, raw, retry_after, self.options.access_token)
        if error is not None:
            raise error

    async def validate_remotely(self, session: aiohttp.ClientSession,
                                rows: Sequence[ClaimedRow]) -> list[str]:
        """`check --validate`: send these rows with `?test=true` (Pinterest checks them and
        records nothing); each event it reports failed, or a refused request, as a line."""
        if self.options.missing_credentials:
            raise Retryable(self.options.missing_credentials)
        messages: list[str] = []
        for start in range(0, len(rows), MAX_BATCH_SIZE):
            chunk = rows[start:start + MAX_BATCH_SIZE]
            status, raw, retry_after = await self._post(session, chunk, test=True)
            error = classify(status, raw, retry_after, self.options.access_token)
            if error is None:
                continue
            if not isinstance(error, Permanent):
                raise error  # credentials, rate limit, unreachable: nothing learnt
            body = _json(_safe(raw.decode("utf-8", "replace"), self.options.access_token)
                         .encode())
            failed = _failed_events(body) or _failed_events(body.get("details"))
            if not failed or failed[0][0] < 0:
                messages.append(f"events {chunk[0].event_id} .. {chunk[-1].event_id} "
                                f"({len(chunk)}): {error.reason}")
            messages += [f"event {chunk[i].event_id} ({chunk[i].event_name}): {message}"
                         for i, message in failed if 0 <= i < len(chunk)]
        return messages

    async def check_token(self, session: aiohttp.ClientSession) -> str:
        """One test event (pinterest_check.py): Pinterest validates it and records nothing."""
        answer = await self.send_test_event(session)
        return f"the token may send to {self.target}: {answer}"

    async def send_test_event(self, session: aiohttp.ClientSession) -> str:
        """One page_visit with `?test=true` (pinterest_check.py); a refusal raised."""
        status, raw, retry_after = await self._post_body(session, test_event_body(time.time()),
                                                         test=True)
        error = classify(status, raw, retry_after, self.options.access_token)
        if error is not None:
            raise error
        return verdict(raw)

    async def _post(self, session: aiohttp.ClientSession, rows: Sequence[ClaimedRow], *,
                    test: bool) -> tuple[int, bytes, str]:
        body = orjson.dumps({"data": [wire_event(orjson.loads(row.payload), _context(row))
                                      for row in rows]})
        return await self._post_body(session, body, test=test)

    async def _post_body(self, session: aiohttp.ClientSession, body: bytes, *,
                         test: bool) -> tuple[int, bytes, str]:
        """POST one request: (status, body, Retry-After); network trouble raised as Retryable
        with a reason free of the token."""
        token = self.options.access_token
        return await post_json(session, self.events_url, body, timeout=self.settings.timeout,
                               params={"test": "true"} if test else {},
                               headers={"Authorization": f"Bearer {token}"}, secrets=(token,))


# -- the wire format ---------------------------------------------------------------------------

def event_name(name: str) -> str:
    """Pinterest's event_name for a Meta (or Pinterest) name; anything else is `custom`."""
    if name in PINTEREST_NAMES:
        return name
    return EVENT_NAMES.get(name, "custom")


def wire_event(data: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    """One event of the `data` list, from the stored event and its context."""
    event: dict[str, Any] = {
        "event_name": event_name(str(data.get("event_name", ""))),
        "action_source": ACTION_SOURCES.get(str(data.get("action_source")), "web"),
        "event_time": int(data.get("event_time") or 0),
        "event_id": str(data.get("event_id", "")),
    }
    url = data.get("event_source_url")
    if isinstance(url, str) and url:
        event["event_source_url"] = url
    event["user_data"] = _user_data(data.get("user_data"), context)
    custom = _custom_data(data.get("custom_data"))
    if custom:
        event["custom_data"] = custom
    return event


def _context(row: ClaimedRow) -> dict[str, Any]:
    if not row.context:
        return {}
    loaded = orjson.loads(row.context)
    return loaded if isinstance(loaded, dict) else {}


def _user_data(raw: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    user_data: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    identities = context.get("identities")
    ours = identities.get("pinterest") if isinstance(identities, dict) else None
    own: Mapping[str, Any] = ours if isinstance(ours, dict) else {}
    result: dict[str, Any] = {}
    for key in HASHED_KEYS:
        hashes = _hashes(own[key] if key in own else user_data.get(key))
        if hashes:
            result[key] = hashes
    for key in ("client_ip_address", "client_user_agent"):
        value = user_data.get(key)
        if isinstance(value, str) and value:
            result[key] = value
    click_id = _click_id(context)
    if click_id:
        result["click_id"] = click_id
    return result


def _hashes(value: Any) -> list[str]:
    """SHA-256 hex digests only (Pinterest takes no MD5 and no Meta `.appendix`)."""
    hashes: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            head = item.strip().lower().partition(".")[0]
            if _SHA256.fullmatch(head) and head not in hashes:
                hashes.append(head)
    return hashes


def _click_id(context: Mapping[str, Any]) -> str:
    """The `_epik` cookie (set from the latest click), else the page URL's `epik`."""
    cookies = context.get("cookies")
    click_ids = context.get("click_ids")
    cookie = cookies.get("_epik") if isinstance(cookies, dict) else None
    url = _url_epik(click_ids.get("epik") if isinstance(click_ids, dict) else None)
    for value in (cookie, url):
        if isinstance(value, str) and EPIK.fullmatch(value):
            return value
    return ""


def _url_epik(value: Any) -> str:
    """The `epik` click id as the page's URL means it (percent-escapes decoded: `%3D` is `=`),
    the form Pinterest's tag keeps; "" when there is none."""
    return unquote(value) if isinstance(value, str) else ""


def _custom_data(raw: Any) -> dict[str, Any]:
    custom: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    result: dict[str, Any] = {}
    currency = custom.get("currency")
    if isinstance(currency, str) and CURRENCY.fullmatch(currency):
        result["currency"] = currency.upper()
    value = _decimal_text(custom.get("value"))
    if value is not None:
        result["value"] = value
    content_ids = custom.get("content_ids")
    if isinstance(content_ids, list):
        ids = [str(i) for i in content_ids if isinstance(i, str | int) and not isinstance(i, bool)]
        if ids:
            result["content_ids"] = ids
    contents = custom.get("contents")
    if isinstance(contents, list):
        items = [item for item in (_content(c) for c in contents) if item]
        if items:
            result["contents"] = items
    num_items = custom.get("num_items")
    if isinstance(num_items, int) and not isinstance(num_items, bool):
        result["num_items"] = num_items
    elif isinstance(num_items, float) and num_items.is_integer():
        result["num_items"] = int(num_items)
    for key in ("order_id", "search_string", "content_name", "content_category",
                "content_brand"):
        text = custom.get(key)
        if isinstance(text, str | int) and not isinstance(text, bool) and str(text):
            result[key] = str(text)
    return result


def _content(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    item: dict[str, Any] = {}
    if isinstance(raw.get("id"), str | int) and not isinstance(raw.get("id"), bool):
        item["id"] = str(raw["id"])
    price = _decimal_text(raw.get("item_price"))
    if price is not None:
        item["item_price"] = price
    quantity = raw.get("quantity")
    if isinstance(quantity, int) and not isinstance(quantity, bool):
        item["quantity"] = quantity
    elif isinstance(quantity, float) and quantity.is_integer():
        item["quantity"] = int(quantity)
    for ours, theirs in (("title", "item_name"), ("category", "item_category"),
                         ("brand", "item_brand")):
        text = raw.get(ours)
        if isinstance(text, str) and text:
            item[theirs] = text
    return item


def _decimal_text(value: Any) -> str | None:
    """A number as Pinterest takes it: text parsed into a double (`72.39`)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return value.strip()
    return None


# -- Pinterest's rules for an event --------------------------------------------------------------

def validate_event(data: dict[str, Any], now: float) -> list[str]:
    """Every reason Pinterest would refuse this event (fields, never values)."""
    reasons: list[str] = []
    name = data.get("event_name")
    if not isinstance(name, str) or not name.strip():
        reasons.append("event_name is required")
    source = data.get("action_source")
    if source == "app":
        reasons.append("action_source app: Pinterest needs app_android or app_ios")
    elif source not in ACTION_SOURCES:
        reasons.append("action_source must be website, a Meta offline source or one of "
                       "Pinterest's (web, offline, app_android, app_ios)")
    event_time = data.get("event_time")
    if isinstance(event_time, bool) or not isinstance(event_time, int | float):
        reasons.append("event_time must be a Unix timestamp in seconds")
    elif event_time < now - MAX_AGE_DAYS * 86400:
        reasons.append(f"event_time is more than {MAX_AGE_DAYS} days old")
    elif event_time > now + FUTURE_SKEW_SECONDS:
        reasons.append("event_time is in the future")
    event_id = data.get("event_id")
    if not isinstance(event_id, str | int) or isinstance(event_id, bool) or not str(event_id):
        reasons.append("event_id is required")
    raw_user = data.get("user_data")
    user_data: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
    if not (_hashes(user_data.get("em"))
            or (user_data.get("client_ip_address") and user_data.get("client_user_agent"))):
        reasons.append("user_data needs em, or client_ip_address with client_user_agent")
    raw_custom = data.get("custom_data")
    custom: dict[str, Any] = raw_custom if isinstance(raw_custom, dict) else {}
    if custom.get("value") is not None and _decimal_text(custom.get("value")) is None:
        reasons.append("custom_data.value must be a number")
    currency = custom.get("currency")
    if currency is not None and not (isinstance(currency, str) and CURRENCY.fullmatch(currency)):
        reasons.append("custom_data.currency must be a 3-letter ISO 4217 code")
    return reasons


# -- Pinterest's answers ---------------------------------------------------------------------------

def classify(status: int, raw: bytes, retry_after: str = "", token: str = ""
             ) -> RelayError | None:
    """None when every event was processed; else the error the relay acts on, with a reason
    free of the token."""
    body = _json(_safe(raw.decode("utf-8", "replace"), token).encode())
    if 200 <= status < 300:
        failed = _failed_events(body)
        received, processed = body.get("num_events_received"), body.get("num_events_processed")
        if not failed and isinstance(received, int) and isinstance(processed, int) \
                and processed < received:
            failed = [(-1, f"{received - processed} not processed")]
        if not failed:
            return None
        # Some events refused in a 200: refuse the request so the relay bisects down to them.
        return Permanent(_failed_reason(body, failed))
    if 300 <= status < 400:
        return Retryable(f"HTTP {status}: Pinterest answered with a redirect; check api_url "
                         "(https, no trailing path)", min_delay=CONFIG_DELAY)
    reason = _describe(status, body)
    if status == 429:
        return RateLimited(reason, min_delay=max(RATE_LIMIT_DELAY,
                                                 read_retry_after(retry_after) or 0.0))
    if status in (401, 403):
        return TokenRejected(reason)
    if status >= 500 or status in (408, 425):
        return Retryable(reason)
    if status in (404, 405):
        return Retryable(f"{reason}: check api_url and ad_account_id", min_delay=CONFIG_DELAY)
    if status == 422:
        failed = _failed_events(body.get("details"))
        if failed:
            return Permanent(f"{reason}; {_failed_reason(body.get('details'), failed)}")
    return Permanent(reason)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _failed_events(body: Any) -> list[tuple[int, str]]:
    """(index, error_message) of each event Pinterest reports `failed`."""
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return []
    return [(i, str(e.get("error_message") or "no message"))
            for i, e in enumerate(events) if isinstance(e, dict) and e.get("status") == "failed"]


def _failed_reason(body: Any, failed: list[tuple[int, str]]) -> str:
    received = body.get("num_events_received") if isinstance(body, dict) else None
    total = received if isinstance(received, int) else "?"
    index, message = failed[0]
    if index < 0:  # counts only, no per-event results
        return masked(f"{message} of {total} events")[:MAX_REASON]
    return masked(f"{len(failed)} of {total} events failed; event {index}: {message}"
                  )[:MAX_REASON]


def _describe(status: int, body: Mapping[str, Any]) -> str:
    parts = f"HTTP {status}"
    if "code" in body:
        parts += f", code {body['code']}"
    message = masked(str(body.get("message") or ""))[:MAX_REASON]
    return parts + (f": {message}" if message else "")


def _safe(text: str, token: str) -> str:
    return _BEARER.sub("Bearer ***", scrubbed(text, token))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _zip_digits(value: str) -> str:
    """Pinterest's zp: digits only (a US ZIP+4 keeps its five-digit ZIP); "" for a postal
    code with letters (UK, Canada, ...), which has no digits-only form."""
    text = value.strip()
    plus4 = _ZIP_PLUS_4.fullmatch(text.replace(" ", ""))
    if plus4:
        return plus4.group(1)
    if any(ch.isalpha() for ch in text):
        return ""
    return "".join(ch for ch in text if ch.isdigit())


PINTEREST = PinterestType()
