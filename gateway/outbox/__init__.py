"""The durable outbox: one SQLite row per event x destination, committed before any 2xx."""

from .deadletters import DeadLetter, DeadLetterFilter
from .schema import DEAD_REASONS, FINISHED_STATES
from .store import Claim, ClaimedRow, Outbox, OutboxEntry

__all__ = [
    "DEAD_REASONS", "FINISHED_STATES", "Claim", "ClaimedRow", "DeadLetter", "DeadLetterFilter",
    "Outbox", "OutboxEntry",
]
