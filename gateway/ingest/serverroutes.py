"""Server events from backends: `POST /capi/{pixel_id}/events` (Meta's CAPI Gateway clients,
PHP/Java `CAPIGatewayIngressRequest`) and `POST /{api_version}/{pixel_id}/events` (the official
SDKs with their Graph base URL pointed at the gateway). Wire formats: docs/meta-capi.md.

A request goes: access key from the query or an `Authorization: Bearer` header if it has one,
else a throttle check (per client IP) -> read the body (stream-limited) -> if no key was proved
yet, refuse a body that names no valid key before parsing it (gateway/ingest/keyscan.py) ->
parse it (in a thread when large) -> the body's key and pixel scope -> build, enrich, hash and
validate every event -> commit. Every refusal before a key is proved counts towards the
client's throttle. Nothing is stored before every event has been looked at, so a refused
request leaves nothing behind.

Batches are kinder than Meta's: valid events are accepted even when others are not, and the
answer lists each refused event by index with its reasons (refused events that could be stored
are kept as `invalid` rows for inspection). `strict=true` (query or body) restores Meta's
all-or-nothing: one bad event and nothing is stored. A request whose events are all refused is
answered as an error either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web

from .. import appkeys
from ..accesskeys import AccessDenied, AccessGuard, bearer_token
from ..errors import HitError, OutboxUnavailable
from ..model import PIXEL_ID, Event
from .body import parse_pairs
from .graphanswers import (
    Outcome,
    Rejection,
    capi_error,
    capi_success,
    graph_error,
    graph_success,
    new_trace_id,
)
from .keyscan import MAX_CANDIDATES, MAX_OCCURRENCES, TooManyKeys, candidates
from .serverbody import RawBody, ServerBody, parse_server_body, read_raw_body
from .serverevent import build_server_event, keep_invalid, request_fields

__all__ = ["INGRESS", "ServerIngress", "add_server_routes"]

log = logging.getLogger(__name__)

# Parsing a body this large holds the event loop for milliseconds: done in a thread, so hits
# keep being answered meanwhile.
OFF_LOOP_BYTES = 256 * 1024
SMALL_BODY_BYTES = 64 * 1024  # read without a reservation: a typical request is far smaller
# An upload without a proved key may take 10 s plus one per 256 KB (32 s more for 8 MB).
UPLOAD_GRACE_SECONDS = 10.0
MIN_UPLOAD_BYTES_PER_SECOND = 256 * 1024
Failure = Callable[[int, str, Mapping[str, str], Sequence[Rejection]], web.Response]


class ServerIngress:
    """Per-application state of the server routes."""

    def __init__(self, guard: AccessGuard, *, max_body_bytes: int, truncate_ip: bool,
                 clock: Callable[[], float]) -> None:
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.truncate_ip = truncate_ip
        self.unproven = UnprovenReads(max_body_bytes, clock)


@dataclass(frozen=True)
class Reservation:
    bytes: int = 0  # reserved in memory and taken from the byte budget
    deadline: float | None = None  # seconds the body may take to arrive


class UnprovenReads:
    """What reading large bodies before their key is proved may cost: at most two full-size
    bodies in memory at once, two full-size bodies' worth of bytes a second (a token bucket,
    charged for the bytes read), and a deadline for the upload (a client trickling bytes would
    otherwise hold its share for ever), so clients without a key can neither fill memory nor
    keep the event loop reading. Bodies up to SMALL_BODY_BYTES as sent, and not compressed
    (nearly every request), need no reservation."""

    def __init__(self, max_body_bytes: int, clock: Callable[[], float]) -> None:
        self.max_body_bytes = max_body_bytes
        self.in_memory = 0
        self._memory_budget = 2 * max_body_bytes
        self._rate = 2 * max_body_bytes  # bytes a second
        self._tokens = float(self._rate)
        self._clock = clock
        self._filled_at = clock()

    def reserve(self, request: web.Request, guard: AccessGuard) -> Reservation:
        """Room for one body (given back with `release`), or AccessDenied (503, busy)."""
        size = request.content_length
        compressed = hdrs.CONTENT_ENCODING in request.headers  # it may grow up to the limit
        if size is not None and (size > self.max_body_bytes  # refused unread: 413
                                 or (size <= SMALL_BODY_BYTES and not compressed)):
            return Reservation()
        wanted = self.max_body_bytes if size is None or compressed else size
        self._refill()
        if self.in_memory + wanted > self._memory_budget or wanted > self._tokens:
            raise guard.busy()
        self._tokens -= wanted
        self.in_memory += wanted
        return Reservation(wanted, UPLOAD_GRACE_SECONDS + wanted / MIN_UPLOAD_BYTES_PER_SECOND)

    def release(self, reservation: Reservation, read: int | None) -> None:
        """Give back the memory, and the bytes reserved but not read (`read`: None if
        unknown, e.g. a multipart form or a failed read)."""
        self.in_memory -= reservation.bytes
        if read is not None and read < reservation.bytes:
            self._refill()
            self._tokens = min(float(self._rate), self._tokens + reservation.bytes - read)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self._rate), self._tokens + (now - self._filled_at) * self._rate)
        self._filled_at = now


INGRESS = web.AppKey("server_ingress", ServerIngress)


class EventsRefused(HitError):
    """Events were refused and, by `strict=true` or because none was fine, so is the request."""

    def __init__(self, rejected: list[Rejection], *, strict: bool) -> None:
        first = rejected[0].describe()
        more = f" (and {len(rejected) - 1} more refused events)" if len(rejected) > 1 else ""
        if strict:
            message = f"{first}{more}; with strict=true no event of this request was accepted"
        else:
            message = f"no event was accepted: {first}{more}"
        super().__init__(message)
        self.rejected = rejected


def add_server_routes(app: web.Application, prefix: str) -> None:
    """Register both server-event routes (POST only); a second call does nothing."""
    if INGRESS in app:
        return
    settings = app[appkeys.SETTINGS]
    # A limit of its own (the body is read through a request clone with this client_max_size):
    # the app-wide one is sized for browser hits.
    app[INGRESS] = ServerIngress(
        AccessGuard(app[appkeys.ACCESS_KEYS], app[appkeys.METRICS].registry, app[appkeys.CLOCK]),
        max_body_bytes=settings.server.max_server_body_bytes,
        truncate_ip=settings.identity.truncate_ip,
        clock=app[appkeys.CLOCK],
    )
    if not settings.access_keys:
        log.info("no access_keys configured: server events routes refuse every request (401) "
                 "until a key is added (config.yaml, or the console's access keys)")
    app.router.add_post(f"{prefix}/capi/{{pixel_id}}/events", handle_capi)
    app.router.add_post(prefix + r"/{api_version:v[0-9]+\.[0-9]+}/{pixel_id}/events",
                        handle_graph)


async def handle_capi(request: web.Request) -> web.Response:
    """CAPI Gateway ingress: JSON whatever the Content-Type; 202 on success."""
    trace = new_trace_id()

    def failure(status: int, message: str, headers: Mapping[str, str],
                rejected: Sequence[Rejection]) -> web.Response:
        return capi_error(status, message, headers, rejected)

    return await _answer(request, trace, json_only=True, success=capi_success,
                         failure=failure)


async def handle_graph(request: web.Request) -> web.Response:
    """Graph-shaped ingress: answers like `graph.facebook.com/{version}/{pixel}/events`."""
    trace = new_trace_id()

    def failure(status: int, message: str, headers: Mapping[str, str],
                rejected: Sequence[Rejection]) -> web.Response:
        return graph_error(status, message, trace, headers)

    return await _answer(request, trace, json_only=False,
                         success=lambda outcome: graph_success(outcome, trace), failure=failure)


async def _answer(
    request: web.Request,
    trace: str,
    *,
    json_only: bool,
    success: Callable[[Outcome], web.Response],
    failure: Failure,
) -> web.Response:
    try:
        return success(await _ingest(request, trace, json_only=json_only))
    except AccessDenied as exc:
        _tell_refused(request, exc.reason)
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return failure(exc.status, exc.reason, retry, ())
    except EventsRefused as exc:
        _tell_refused(request, exc.reason)
        return failure(400, exc.reason, {}, exc.rejected)
    except HitError as exc:
        _tell_refused(request, exc.reason)
        return failure(exc.status, exc.reason, {}, ())
    except OutboxUnavailable as exc:
        _tell_refused(request, exc.answer)
        return failure(503, exc.answer, {"Retry-After": str(exc.retry_after)}, ())


def _tell_refused(request: web.Request, reason: str) -> None:
    """A refused request, for whoever watches the live events."""
    bus = request.app[appkeys.EVENTS]
    if bus.listening:
        pixel = request.match_info["pixel_id"]
        bus.refused("server", reason, request.app[appkeys.CLOCK](),
                    pixel if PIXEL_ID.fullmatch(pixel) else "")


async def _ingest(request: web.Request, trace: str, *, json_only: bool) -> Outcome:
    app = request.app
    state = app[INGRESS]
    guard = state.guard
    client = app[appkeys.PROXIES].client_ip(request.remote, request.headers) or "unknown"
    pixel_id = request.match_info["pixel_id"]
    outside = _key_outside_body(request)
    # A valid key in the header or query is checked before a byte of the body is read. A wrong
    # one there does not hide a valid key in the body (a proxy may add its own header).
    proved = bool(outside) and guard.keys.match(outside) is not None
    screened = False  # the body names a valid key: a bad body is no longer a key guess
    try:
        if not PIXEL_ID.fullmatch(pixel_id):
            raise HitError("the pixel id in the path must be numeric (up to 20 digits)")
        if proved:
            guard.authorize(outside, pixel_id, client, trace)
        else:
            guard.admit(client, trace)
        raw = await _read(request, state, json_only=json_only, proved=proved)
        if not proved:
            guard.screen(_candidates(raw), pixel_id, client, trace)
            screened = True
        body = (await asyncio.to_thread(parse_server_body, raw) if len(raw) > OFF_LOOP_BYTES
                else parse_server_body(raw))
    except AccessDenied:
        raise
    except HitError as exc:
        if not (proved or screened):
            guard.failed(client, pixel_id, trace, exc.reason)
        raise
    except asyncio.CancelledError:
        # The client went away mid-upload (with handler cancellation on; without it the read
        # fails with a HitError above): a failure like any other before a key is proved.
        if not (proved or screened):
            guard.failed(client, pixel_id, trace, "the connection was lost")
        raise
    presented = body.access_key or outside  # the body's key wins, as it always did
    if presented != outside or not proved:
        guard.authorize(presented, pixel_id, client, trace)
    # Before enriching and running rules on up to 1000 events that could not be stored.
    app[appkeys.PIPELINE].check_room()
    return await _commit(app, state, body, pixel_id)


async def _read(request: web.Request, state: ServerIngress, *, json_only: bool,
                proved: bool) -> RawBody:
    """The request's body; without a proved key, within the unproven budget and deadline."""
    if proved:
        return await read_raw_body(request, limit=state.max_body_bytes, json_only=json_only)
    reservation = state.unproven.reserve(request, state.guard)
    raw: RawBody | None = None
    try:
        async with asyncio.timeout(reservation.deadline):
            raw = await read_raw_body(request, limit=state.max_body_bytes, json_only=json_only)
    except TimeoutError:
        raise HitError("the body arrived too slowly; send the key in an Authorization header "
                       "to be exempt", status=408) from None
    finally:
        read = len(raw) if raw is not None and raw.form is None else None
        state.unproven.release(reservation, read)
    return raw


def _key_outside_body(request: web.Request) -> str:
    """A key in the query string (`access_token`, as the SDKs may send it) or an
    `Authorization: Bearer` header: checked before the body is read."""
    bearer = bearer_token(request.headers)
    if bearer:
        return bearer
    query = request.raw_path.partition("?")[2]
    if "access_token=" not in query:
        return ""
    return parse_pairs(query, "query string").get("access_token", "")


def _candidates(raw: RawBody) -> list[str]:
    if raw.form is not None:
        return [raw.form[name] for name in ("accessKey", "access_token") if raw.form.get(name)]
    try:
        return candidates(raw.data, json=raw.is_json)
    except TooManyKeys:
        raise HitError(f"the body names an access key more than {MAX_CANDIDATES} times (or its "
                       f"field names more than {MAX_OCCURRENCES} times)") from None


async def _commit(app: web.Application, state: ServerIngress, body: ServerBody,
                  pixel_id: str) -> Outcome:
    pipeline = app[appkeys.PIPELINE]
    now = app[appkeys.CLOCK]()
    fields_json = request_fields(body.forwarded)
    events: list[Event] = []
    positions: list[int] = []
    rejected: list[Rejection] = []
    for index, data in enumerate(body.events):
        built, refused = build_server_event(
            data, pixel_id=pixel_id, now=now, forwarded=body.forwarded,
            fields_json=fields_json, truncate=state.truncate_ip)
        if built is None:
            rejected.append(Rejection(index, refused))  # cannot even be stored faithfully
            continue
        problems = pipeline.prepare(built)
        if refused:  # wrongly typed fields: kept as an `invalid` row
            problems = keep_invalid(built, refused)
        if problems:
            rejected.append(Rejection(index, problems))
        events.append(built)
        positions.append(index)
    if rejected and (body.strict or len(rejected) == len(body.events)):
        if not body.strict and events:
            await pipeline.submit_many(events, prepared=True)  # the `invalid` rows, for inspection
        raise EventsRefused(rejected, strict=body.strict)
    submissions = await pipeline.submit_many(events, prepared=True)
    warnings: list[str] = []
    for index, submission, event in zip(positions, submissions, events, strict=True):
        if submission.unstorable:
            rejected.append(Rejection(index, [submission.unstorable]))
        elif not submission.invalid:
            warnings.extend(f"data[{index}]: {warning}" for warning in event.context.warnings)
    rejected.sort(key=lambda r: r.index)
    return Outcome(received=len(body.events) - len(rejected), rejected=rejected,
                   warnings=warnings)
