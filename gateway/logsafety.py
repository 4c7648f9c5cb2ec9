"""What aiohttp itself says about requests it cannot parse: no request bytes, anywhere.

aiohttp answers a request it cannot parse (a request line or header over 8 KB, a bad method,
a header without a colon, an undecodable gzip body) itself, before any handler runs: by default
with a text body quoting the offending bytes, and a log line, often a 30-line traceback,
quoting them too. Hit URLs carry personal data (`ud[em]=...`). Installed once per process:
- its error answers become JSON `{"error": ...}` naming the kind of problem, never its bytes
  (aiohttp offers no hook for these answers, so its handler's method is replaced);
- its log lines about such requests become one WARNING line with the kind of error, without
  the exception's text or traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from aiohttp import http_exceptions, web, web_protocol
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

__all__ = ["describe", "install"]

# What a sender can act on, by parser error (the first that matches the exception's class).
_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (http_exceptions.LineTooLong, "a request line or header is too long"),
    (http_exceptions.BadHttpMethod, "not an HTTP request"),
    (http_exceptions.ContentEncodingError, "the body cannot be decoded (Content-Encoding)"),
    (http_exceptions.TransferEncodingError, "the body is not validly chunked"),
    (http_exceptions.BadStatusLine, "malformed request line"),
    (http_exceptions.InvalidHeader, "malformed header"),
    (http_exceptions.HttpProcessingError, "malformed HTTP request"),
    (RequestPayloadError, "the body cannot be read"),
)


def describe(exc: BaseException | None) -> str | None:
    """The reason for a malformed request's refusal, or None if `exc` is not about one."""
    seen = 0
    while exc is not None and seen < 4:  # the parser's error may be the cause of another
        for kind, reason in _REASONS:
            if isinstance(exc, kind):
                return reason
        exc, seen = exc.__cause__, seen + 1
    return None


class _WithholdRequestDetails(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        reason = describe(exc)
        if reason is not None:
            record.msg = "rejected a malformed HTTP request: %s (%s); details withheld"
            record.args = (reason, type(exc).__name__)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _WithholdRequestDetails()


def _handle_error(self: RequestHandler, request: web.BaseRequest, status: int = 500,
                  exc: BaseException | None = None, message: str | None = None
                  ) -> web.StreamResponse:
    """RequestHandler.handle_error, answering JSON without the request's bytes."""
    reason = describe(exc) if status != HTTPStatus.INTERNAL_SERVER_ERROR else None
    if reason is None:
        self.log_exception("Error handling request", exc_info=exc)
        reason = "internal error" if status >= 500 else HTTPStatus(status).phrase.lower()
    else:
        # Not HTTP at all on a connection's first request (TLS to the plain port, scanners):
        # internet noise, at DEBUG as aiohttp has it; anything else at WARNING.
        noise = isinstance(exc, http_exceptions.BadHttpMethod) and self._request_count <= 1
        self.logger.log(logging.DEBUG if noise else logging.WARNING,
                        "rejected a malformed HTTP request: %s (%s); details withheld",
                        reason, type(exc).__name__)
    if request.writer.output_size > 0:  # as aiohttp: too late for an answer
        raise ConnectionError("Response is sent already, cannot send another response "
                              "with the error message")
    response = web.json_response({"error": reason}, status=status)
    response.force_close()
    return response


def install() -> None:
    """Replace aiohttp's error answers and filter its server log (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    handler: Any = web_protocol.RequestHandler
    handler.handle_error = _handle_error
