"""The log line of a batch a platform accepted: one at INFO per request, shaped like the dry-run
line (destination, what the request carried, where it went) plus the platform's answer in
words (Meta's `events_received`), never an event's values or a credential."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..destinations import Destination
from ..storage import ClaimedRow

__all__ = ["answered", "log_delivered"]

log = logging.getLogger(__name__)


def answered(destination: Destination, answer: str | None) -> str:
    """The platform's answer in words (for the log line and the console's live events)."""
    return f"{destination.kind.vendor} answered {answer or 'with success'}"


def log_delivered(name: str, destination: Destination, rows: Sequence[ClaimedRow],
                  answer: str | None) -> None:
    log.info("delivered: destination %s sent %s; %s", name, destination.describe_batch(rows),
             answered(destination, answer))
