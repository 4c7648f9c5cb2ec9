"""The gateway's exception tree.

    GatewayError
    ├── ConfigError          config.yaml is unusable (located messages, one per problem)
    ├── HitError             a browser hit is malformed (answered with a 4xx and the reason)
    ├── OutboxUnavailable    the outbox could not commit (answered with 503 + Retry-After)
    │   └── OutboxFull       the outbox is over its bounds (backpressure)
    ├── RuleError            a rule file is unusable (located messages) [gateway.rules]
    └── RelayError           a delivery attempt failed
        ├── Retryable        try again later (network, timeout, 5xx)
        │   └── RateLimited  the destination asks us to slow down: back off as a whole
        ├── TokenRejected    the access token is invalid, expired or revoked: pause, alert
        └── Permanent        the destination refused these events for good (bisect, dead-letter)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GatewayError",
    "HitError",
    "OutboxFull",
    "OutboxUnavailable",
    "Permanent",
    "RateLimited",
    "RelayError",
    "Retryable",
    "TokenRejected",
]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; `problems` holds one located message per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class HitError(GatewayError):
    """A hit cannot be accepted; the message is safe to show the sender (no values echoed)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class OutboxUnavailable(GatewayError):
    """The outbox could not commit; the sender should retry later."""


class OutboxFull(OutboxUnavailable):
    """The outbox is over `storage.max_queue_rows` / `max_queue_mb`; the sender should wait."""


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


class TokenRejected(RelayError):
    """The access token is invalid, expired or revoked (Graph codes 190, 102)."""


class Permanent(RelayError):
    """The destination will never accept these events as they are."""
