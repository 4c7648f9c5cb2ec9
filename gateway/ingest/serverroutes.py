"""Server events from backends: `POST /capi/{pixel_id}/events` (Meta's CAPI Gateway clients,
PHP/Java `CAPIGatewayIngressRequest`) and `POST /{api_version}/{pixel_id}/events` (the official
SDKs with their Graph base URL pointed at the gateway). Wire formats: docs/meta-capi.md.

A request goes: throttle check (per client IP) -> read and check the whole body -> access key
and pixel scope -> build, enrich, hash and validate every event -> commit. Nothing is stored
before every event has been looked at, so a refused request leaves nothing behind.

Batches are kinder than Meta's: valid events are accepted even when others are not, and the
answer lists each refused event by index with its reasons (refused events that could be stored
are kept as `invalid` rows for inspection). `strict=true` (query or body) restores Meta's
all-or-nothing: one bad event and nothing is stored. A request whose events are all refused is
answered as an error either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from aiohttp import web

from .. import appkeys
from ..accesskeys import AccessDenied, AccessGuard
from ..errors import HitError, OutboxUnavailable
from ..model import PIXEL_ID, Event
from .graphanswers import (
    Outcome,
    Rejection,
    capi_error,
    capi_success,
    graph_error,
    graph_success,
    new_trace_id,
)
from .serverbody import ServerBody, read_server_body
from .serverevent import build_server_event, keep_invalid, request_fields

__all__ = ["INGRESS", "ServerIngress", "add_server_routes"]

log = logging.getLogger(__name__)

# 1000 events of a few KB each, form- and JSON-encoded twice by the Python SDK, fit with room.
Failure = Callable[[int, str, Mapping[str, str], Sequence[Rejection]], web.Response]


class ServerIngress:
    """Per-application state of the server routes."""

    def __init__(self, guard: AccessGuard, *, max_body_bytes: int, truncate_ip: bool) -> None:
        self.guard = guard
        self.max_body_bytes = max_body_bytes
        self.truncate_ip = truncate_ip


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
        AccessGuard(settings.access_keys, app[appkeys.METRICS].registry, app[appkeys.CLOCK]),
        max_body_bytes=settings.server.max_server_body_bytes,
        truncate_ip=settings.identity.truncate_ip,
    )
    if not settings.access_keys:
        log.info("no access_keys configured: server events routes refuse every request (401)")
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
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return failure(exc.status, exc.reason, retry, ())
    except EventsRefused as exc:
        return failure(400, exc.reason, {}, exc.rejected)
    except HitError as exc:
        return failure(exc.status, exc.reason, {}, ())
    except OutboxUnavailable as exc:
        return failure(503, exc.answer, {"Retry-After": str(exc.retry_after)}, ())


async def _ingest(request: web.Request, trace: str, *, json_only: bool) -> Outcome:
    app = request.app
    state = app[INGRESS]
    client = app[appkeys.PROXIES].client_ip(request.remote, request.headers) or "unknown"
    state.guard.admit(client, trace)
    pixel_id = request.match_info["pixel_id"]
    if not PIXEL_ID.fullmatch(pixel_id):
        raise HitError("the pixel id in the path must be numeric (up to 20 digits)")
    body = await read_server_body(request, limit=state.max_body_bytes, json_only=json_only)
    state.guard.authorize(body.access_key, pixel_id, client, trace)
    # Before enriching and running rules on up to 1000 events that could not be stored.
    app[appkeys.PIPELINE].check_room()
    return await _commit(app, state, body, pixel_id)


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
