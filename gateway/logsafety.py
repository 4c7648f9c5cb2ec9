"""Keep personal data out of aiohttp's own log lines.

When aiohttp cannot parse a request it logs the parser error, whose text can quote the request
line, and hit URLs carry personal data (`ud[em]=...`). This filter keeps the fact and the kind
of error and drops the details.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["install"]


class _WithholdRequestDetails(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = "rejected a malformed HTTP request (%s); details withheld"
            record.args = (type(exc).__name__,)
            record.exc_info = None
            record.exc_text = None
        return True


_FILTER = _WithholdRequestDetails()


def install() -> None:
    """Attach the filter to aiohttp's server logger (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
