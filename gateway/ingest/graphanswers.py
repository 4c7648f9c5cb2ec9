"""Answers of the server-events routes: Graph-shaped for `/{version}/{pixel}/events` (so the
official SDKs parse them), small JSON for `/capi/{pixel}/events` (the CAPI Gateway clients only
look at the status, 202).

Graph's error codes as the SDKs know them: 190 a bad access token (401), 200 a permissions
problem (403), 100 an invalid parameter (400, 413, 415), 4 too many calls (429), 2 a temporary
problem (503). Messages name fields and event indexes, never values or keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["Outcome", "Rejection", "capi_error", "capi_success", "graph_error",
           "graph_success", "new_trace_id"]

TRACE_HEADER = "X-FB-Trace-ID"
_GRAPH_CODES = {401: 190, 403: 200, 429: 4, 503: 2}
_TITLES = {
    400: "Invalid parameter", 401: "Invalid access key", 403: "Permission denied",
    413: "Request too large", 415: "Unsupported body", 429: "Too many failed attempts",
    503: "Temporarily unavailable",
}
_MESSAGES = {
    2: "Service temporarily unavailable", 4: "Application request limit reached",
    100: "Invalid parameter", 190: "Invalid OAuth access token", 200: "Permissions error",
}


def new_trace_id() -> str:
    """A random id per request, like Graph's fbtrace_id: quoted in answers and our logs."""
    return secrets.token_urlsafe(12)


@dataclass
class Rejection:
    index: int
    reasons: list[str]

    def describe(self) -> str:
        return f"data[{self.index}]: " + "; ".join(self.reasons)


@dataclass
class Outcome:
    """What became of a request's events."""

    received: int
    rejected: list[Rejection] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # values dropped from accepted events


def graph_success(outcome: Outcome, trace: str) -> web.Response:
    messages = [f"{r.describe()} (not accepted)" for r in outcome.rejected] + outcome.warnings
    return web.json_response(
        {"events_received": outcome.received, "messages": messages, "fbtrace_id": trace},
        headers={TRACE_HEADER: trace},
    )


def graph_error(status: int, user_message: str, trace: str,
                headers: Mapping[str, str] | None = None) -> web.Response:
    code = _GRAPH_CODES.get(status, 100)
    title = _TITLES.get(status, "Invalid parameter")
    error = {
        "message": _MESSAGES[code],
        "type": "OAuthException",  # what Graph says for all of these
        "code": code,
        "error_subcode": None,  # the gateway has no subcodes of its own
        "error_user_title": title,
        "error_user_msg": user_message,
        "fbtrace_id": trace,
    }
    return web.json_response({"error": error}, status=status,
                             headers={TRACE_HEADER: trace, **(headers or {})})


def capi_success(outcome: Outcome) -> web.Response:
    return web.json_response(
        {"events_received": outcome.received,
         "events_rejected": _rejections(outcome.rejected)},
        status=202,
    )


def capi_error(status: int, message: str, headers: Mapping[str, str] | None = None,
               rejected: Sequence[Rejection] = ()) -> web.Response:
    body: dict[str, object] = {"error": message}
    if rejected:
        body["events_rejected"] = _rejections(rejected)
    return web.json_response(body, status=status, headers=headers)


def _rejections(rejected: Sequence[Rejection]) -> list[dict[str, object]]:
    return [{"index": r.index, "reasons": r.reasons} for r in rejected]
