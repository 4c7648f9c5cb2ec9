"""The gateway's exception tree.

    GatewayError
    ├── ProblemsError        files people edit are unusable (`problems`: located Problems)
    │   ├── ConfigError      config.yaml
    │   └── RuleError        rule files and rule tests [gateway.rules]
    ├── HitError             a browser hit is malformed (answered with a 4xx and the reason)
    ├── OutboxUnavailable    the outbox could not commit (answered with 503 + Retry-After)
    │   └── OutboxFull       the outbox is over its bounds (backpressure)
    ├── OutboxIncompatible   the store is from a newer gateway (start-up stops; no retry)
    └── RelayError           a delivery attempt failed
        ├── Retryable        try again later (network, timeout, 5xx)
        │   └── RateLimited  the destination asks us to slow down: back off as a whole
        ├── DestinationRefused  the platform refuses the destination itself (its id, the app,
        │   │                   the token's permissions), not an event: pause, alert
        │   └── TokenRejected   the access token is invalid, expired or revoked: pause, alert
        └── Permanent        the destination refused these events for good (bisect, dead-letter)
"""

from __future__ import annotations

from .problems import Problem

__all__ = [
    "ConfigError",
    "DestinationRefused",
    "GatewayError",
    "HitError",
    "OutboxFull",
    "OutboxIncompatible",
    "OutboxUnavailable",
    "Permanent",
    "ProblemsError",
    "RateLimited",
    "RelayError",
    "Retryable",
    "TokenRejected",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ProblemsError(GatewayError):
    """Files people edit are unusable; `problems` holds one located Problem per mistake."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


class ConfigError(ProblemsError):
    """The configuration is invalid."""


class HitError(GatewayError):
    """A hit cannot be accepted; the message is safe to show the sender (no values echoed)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class OutboxUnavailable(GatewayError):
    """The outbox could not commit; the sender should retry later. `answer` and `retry_after`
    are what every ingress route tells the sender (503 + Retry-After)."""

    retry_after = 5

    @property
    def answer(self) -> str:
        return "the gateway cannot store events right now; retry later"


class OutboxFull(OutboxUnavailable):
    """The outbox is over `storage.max_queue_rows` / `max_queue_mb`; the sender should wait."""

    retry_after = 30

    @property
    def answer(self) -> str:
        return f"the gateway is busy: {self}; retry later"


class OutboxIncompatible(GatewayError):
    """The store was written by a newer gateway: waiting cannot cure that, so start-up stops
    (an OutboxUnavailable at start is retried in the background instead)."""


class RelayError(GatewayError):
    """A delivery attempt failed; `reason` is safe to log and store (no token, no PII)."""

    def __init__(self, reason: str, fbtrace_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fbtrace_id = fbtrace_id


class Retryable(RelayError):
    """The attempt may succeed later; `min_delay` asks for a longer wait."""

    def __init__(self, reason: str, min_delay: float = 0.0,
                 fbtrace_id: str | None = None) -> None:
        super().__init__(reason, fbtrace_id)
        self.min_delay = min_delay


class RateLimited(Retryable):
    """Too many calls: the whole destination waits `min_delay` before its next request."""


class DestinationRefused(RelayError):
    """The platform refuses the destination as configured, whatever the events: its pixel or
    account does not exist or is out of the token's reach, the app or the token lacks a
    permission. Splitting the batch would only repeat the refusal per event."""


class TokenRejected(DestinationRefused):
    """The access token is invalid, expired or revoked (Graph codes 190, 102)."""


class Permanent(RelayError):
    """The destination will never accept these events as they are."""
