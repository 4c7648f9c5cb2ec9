"""The gateway's exception tree.

    GatewayError
    ├── ConfigError          config.yaml is unusable (located messages, one per problem)
    ├── HitError             a browser hit is malformed (answered with a 4xx and the reason)
    ├── OutboxUnavailable    the outbox could not commit (answered with 503 + Retry-After)
    └── RelayError           a delivery attempt failed
        ├── Retryable        try again later (network, 5xx, rate limit, token problems for now)
        └── Permanent        the destination refused the events for good
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GatewayError",
    "HitError",
    "OutboxUnavailable",
    "Permanent",
    "RelayError",
    "Retryable",
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


class RelayError(GatewayError):
    """A delivery attempt failed; `reason` is safe to log and store (no token, no PII)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Retryable(RelayError):
    """The attempt may succeed later; `min_delay` asks for a longer wait (rate limits)."""

    def __init__(self, reason: str, min_delay: float = 0.0) -> None:
        super().__init__(reason)
        self.min_delay = min_delay


class Permanent(RelayError):
    """The destination will never accept these events as they are."""
